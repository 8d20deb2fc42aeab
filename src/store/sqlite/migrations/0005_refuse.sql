-- 0005_refuse: the database refuses what breaks it, for every writer. Rebuilds agents, events and commands with
-- CHECK constraints (keeping every row and event), and adds one trigger. All times are integer ms since the epoch.
--
-- 1. A new incarnation always writes one event. agents_state_event fires only when `state` changes, so a Start,
--    or a Register by a new process, while the agent was still `initializing` (a crash loop before the first
--    heartbeat) raised the incarnation and restart_count with no event at all. agents_incarnation_event writes it.
-- 2. Times must be integer milliseconds since the Unix epoch, from 2001-01-01 (978307200000) to before the year 3000
--    (32503680000000): a time in seconds (or a fraction) is refused instead of reading as 1970 (a negative silence,
--    offline at once). Rows already holding one are repaired as they are copied: seconds become milliseconds,
--    fractional milliseconds are truncated, anything else becomes NULL (or, where a time is required, the time
--    of the migration).
-- 3. progress, interval_ms and offline_after_ms must be integers (a text or fractional value is refused; stored
--    ones are rounded, a text progress becomes NULL).
-- 4. A process identity is whole or absent: a pid needs its start time, host and boot id, without which crash and
--    pid-reuse detection are silently off. A stored half identity is cleared (pid and pid_start_time NULL).
-- 5. The CHECKs compare with = and OR instead of IN lists: SQLite builds a temporary b-tree for an IN list of
--    three or more constants each time it runs, and a heartbeat evaluates reported_status's CHECK on every beat.
--
-- Foreign keys are off while this runs (agentctl's migrate does that for every migration): dropping a table with
-- them on deletes its children. The generated columns, indexes and triggers of 0001-0004 are recreated as they were.

CREATE TEMP TABLE migration_clock AS SELECT CAST((julianday('now') - 2440587.5) * 86400000 + 0.5 AS INTEGER) AS now;

DROP TRIGGER agents_state_event;
DROP TRIGGER agents_registered_event;
DROP TRIGGER agents_heartbeat_transition;
DROP TRIGGER agents_incarnation_commands;

CREATE TABLE agents_new (
  id                INTEGER PRIMARY KEY,
  name              TEXT    NOT NULL UNIQUE
                    CHECK (length(name) BETWEEN 1 AND 128
                           AND name GLOB '[A-Za-z0-9]*'
                           AND name NOT GLOB '*[^A-Za-z0-9._:@-]*'),
  group_name        TEXT
                    CHECK (group_name IS NULL OR (length(group_name) BETWEEN 1 AND 64
                           AND group_name GLOB '[A-Za-z0-9]*'
                           AND group_name NOT GLOB '*[^A-Za-z0-9._:@-]*')),
  interval_ms       INTEGER NOT NULL DEFAULT 30000  CHECK (typeof(interval_ms) = 'integer' AND interval_ms > 0),
  stale_multiplier  REAL    NOT NULL DEFAULT 3      CHECK (stale_multiplier >= 1),
  offline_after_ms  INTEGER NOT NULL DEFAULT 300000 CHECK (typeof(offline_after_ms) = 'integer' AND offline_after_ms > 0),
  pid               INTEGER CHECK (pid IS NULL OR (typeof(pid) = 'integer' AND pid > 0
                                   AND pid_start_time IS NOT NULL AND host IS NOT NULL AND boot_id IS NOT NULL)),
  pid_start_time    INTEGER CHECK (pid_start_time IS NULL OR typeof(pid_start_time) = 'integer'),
  host              TEXT,
  boot_id           TEXT,
  incarnation       INTEGER NOT NULL DEFAULT 1,
  heartbeat_seq     INTEGER NOT NULL DEFAULT 0,
  last_heartbeat_at INTEGER CHECK (last_heartbeat_at IS NULL OR (typeof(last_heartbeat_at) = 'integer' AND last_heartbeat_at BETWEEN 978307200000 AND 32503680000000)),
  reported_status   TEXT    NOT NULL DEFAULT 'ok'
                    CHECK (reported_status = 'ok' OR reported_status = 'busy' OR reported_status = 'error'),
  message           TEXT    CHECK (message IS NULL OR length(message) <= 1024),
  availability      TEXT    NOT NULL DEFAULT 'available' CHECK (availability = 'available' OR availability = 'busy'),
  metadata          TEXT    NOT NULL DEFAULT '{}'
                    CHECK (json_valid(metadata) AND json_type(metadata) = 'object' AND length(CAST(metadata AS BLOB)) <= 16384),
  progress          INTEGER CHECK (progress IS NULL OR typeof(progress) = 'integer'),
  state             TEXT    NOT NULL DEFAULT 'initializing'
                    CHECK (state = 'initializing' OR state = 'active' OR state = 'stale' OR state = 'offline'
                           OR state = 'error' OR state = 'failed' OR state = 'maintenance'),
  state_since       INTEGER NOT NULL CHECK (typeof(state_since) = 'integer' AND state_since BETWEEN 978307200000 AND 32503680000000),
  state_reason      TEXT,
  state_evidence    TEXT    CHECK (state_evidence IS NULL OR json_valid(state_evidence)),
  maintenance_until INTEGER CHECK (maintenance_until IS NULL OR (typeof(maintenance_until) = 'integer' AND maintenance_until BETWEEN 978307200000 AND 32503680000000)),
  launch_argv       TEXT    CHECK (launch_argv IS NULL OR (json_valid(launch_argv) AND json_type(launch_argv) = 'array')),
  launch_cwd        TEXT,
  restart_count     INTEGER NOT NULL DEFAULT 0,
  created_at        INTEGER NOT NULL CHECK (typeof(created_at) = 'integer' AND created_at BETWEEN 978307200000 AND 32503680000000),
  started_at        INTEGER NOT NULL CHECK (typeof(started_at) = 'integer' AND started_at BETWEEN 978307200000 AND 32503680000000),
  updated_at        INTEGER NOT NULL CHECK (typeof(updated_at) = 'integer' AND updated_at BETWEEN 978307200000 AND 32503680000000),
  deregistered_at   INTEGER CHECK (deregistered_at IS NULL OR (typeof(deregistered_at) = 'integer' AND deregistered_at BETWEEN 978307200000 AND 32503680000000)),
  supervisor_pid    INTEGER CHECK (supervisor_pid IS NULL OR supervisor_pid > 0),
  supervisor_start_time INTEGER,
  restart_policy    TEXT
                    CHECK (restart_policy IS NULL OR restart_policy = 'never' OR restart_policy = 'on-failure' OR restart_policy = 'always'),
  max_restarts      INTEGER CHECK (max_restarts IS NULL OR max_restarts >= 0),
  restart_attempts  INTEGER NOT NULL DEFAULT 0,
  last_restart_at   INTEGER CHECK (last_restart_at IS NULL OR (typeof(last_restart_at) = 'integer' AND last_restart_at BETWEEN 978307200000 AND 32503680000000)),
  due_at            INTEGER GENERATED ALWAYS AS
                    (MAX(COALESCE(last_heartbeat_at, started_at), started_at) + CAST(interval_ms * stale_multiplier AS INTEGER)) VIRTUAL,
  check_at          INTEGER GENERATED ALWAYS AS
                    (CASE state WHEN 'offline' THEN NULL WHEN 'failed' THEN NULL WHEN 'maintenance' THEN NULL
                          ELSE MAX(COALESCE(last_heartbeat_at, started_at), started_at)
                               + MIN(CAST(interval_ms * stale_multiplier AS INTEGER), offline_after_ms) END) VIRTUAL
);

INSERT INTO agents_new (id, name, group_name, interval_ms, stale_multiplier, offline_after_ms, pid, pid_start_time, host, boot_id, incarnation, heartbeat_seq, last_heartbeat_at, reported_status, message, availability, metadata, progress, state, state_since, state_reason, state_evidence, maintenance_until, launch_argv, launch_cwd, restart_count, created_at, started_at, updated_at, deregistered_at, supervisor_pid, supervisor_start_time, restart_policy, max_restarts, restart_attempts, last_restart_at)
SELECT
  id,
  name,
  group_name,
  CASE WHEN typeof(interval_ms) = 'integer' THEN interval_ms ELSE MAX(1, CAST(ROUND(interval_ms) AS INTEGER)) END AS interval_ms,
  stale_multiplier,
  CASE WHEN typeof(offline_after_ms) = 'integer' THEN offline_after_ms ELSE MAX(1, CAST(ROUND(offline_after_ms) AS INTEGER)) END AS offline_after_ms,
  CASE WHEN pid IS NOT NULL AND (pid_start_time IS NULL OR host IS NULL OR boot_id IS NULL) THEN NULL ELSE pid END AS pid,
  CASE WHEN pid IS NOT NULL AND (pid_start_time IS NULL OR host IS NULL OR boot_id IS NULL) THEN NULL ELSE pid_start_time END AS pid_start_time,
  host,
  boot_id,
  incarnation,
  heartbeat_seq,
  CASE WHEN typeof(last_heartbeat_at) = 'integer' AND last_heartbeat_at BETWEEN 978307200000 AND 32503680000000 THEN last_heartbeat_at
         WHEN typeof(last_heartbeat_at) IN ('integer', 'real') AND last_heartbeat_at BETWEEN 978307200000 AND 32503680000000 THEN CAST(last_heartbeat_at AS INTEGER)
         WHEN typeof(last_heartbeat_at) IN ('integer', 'real') AND last_heartbeat_at BETWEEN 978307200 AND 32503680000 THEN CAST(last_heartbeat_at * 1000 AS INTEGER)
         ELSE NULL END AS last_heartbeat_at,
  reported_status,
  message,
  availability,
  metadata,
  CASE typeof(progress) WHEN 'integer' THEN progress WHEN 'real' THEN CAST(progress AS INTEGER) ELSE NULL END AS progress,
  state,
  CASE WHEN typeof(state_since) = 'integer' AND state_since BETWEEN 978307200000 AND 32503680000000 THEN state_since
         WHEN typeof(state_since) IN ('integer', 'real') AND state_since BETWEEN 978307200000 AND 32503680000000 THEN CAST(state_since AS INTEGER)
         WHEN typeof(state_since) IN ('integer', 'real') AND state_since BETWEEN 978307200 AND 32503680000 THEN CAST(state_since * 1000 AS INTEGER)
         ELSE (SELECT now FROM migration_clock) END AS state_since,
  state_reason,
  state_evidence,
  CASE WHEN typeof(maintenance_until) = 'integer' AND maintenance_until BETWEEN 978307200000 AND 32503680000000 THEN maintenance_until
         WHEN typeof(maintenance_until) IN ('integer', 'real') AND maintenance_until BETWEEN 978307200000 AND 32503680000000 THEN CAST(maintenance_until AS INTEGER)
         WHEN typeof(maintenance_until) IN ('integer', 'real') AND maintenance_until BETWEEN 978307200 AND 32503680000 THEN CAST(maintenance_until * 1000 AS INTEGER)
         ELSE NULL END AS maintenance_until,
  launch_argv,
  launch_cwd,
  restart_count,
  CASE WHEN typeof(created_at) = 'integer' AND created_at BETWEEN 978307200000 AND 32503680000000 THEN created_at
         WHEN typeof(created_at) IN ('integer', 'real') AND created_at BETWEEN 978307200000 AND 32503680000000 THEN CAST(created_at AS INTEGER)
         WHEN typeof(created_at) IN ('integer', 'real') AND created_at BETWEEN 978307200 AND 32503680000 THEN CAST(created_at * 1000 AS INTEGER)
         ELSE (SELECT now FROM migration_clock) END AS created_at,
  CASE WHEN typeof(started_at) = 'integer' AND started_at BETWEEN 978307200000 AND 32503680000000 THEN started_at
         WHEN typeof(started_at) IN ('integer', 'real') AND started_at BETWEEN 978307200000 AND 32503680000000 THEN CAST(started_at AS INTEGER)
         WHEN typeof(started_at) IN ('integer', 'real') AND started_at BETWEEN 978307200 AND 32503680000 THEN CAST(started_at * 1000 AS INTEGER)
         ELSE (SELECT now FROM migration_clock) END AS started_at,
  CASE WHEN typeof(updated_at) = 'integer' AND updated_at BETWEEN 978307200000 AND 32503680000000 THEN updated_at
         WHEN typeof(updated_at) IN ('integer', 'real') AND updated_at BETWEEN 978307200000 AND 32503680000000 THEN CAST(updated_at AS INTEGER)
         WHEN typeof(updated_at) IN ('integer', 'real') AND updated_at BETWEEN 978307200 AND 32503680000 THEN CAST(updated_at * 1000 AS INTEGER)
         ELSE (SELECT now FROM migration_clock) END AS updated_at,
  CASE WHEN typeof(deregistered_at) = 'integer' AND deregistered_at BETWEEN 978307200000 AND 32503680000000 THEN deregistered_at
         WHEN typeof(deregistered_at) IN ('integer', 'real') AND deregistered_at BETWEEN 978307200000 AND 32503680000000 THEN CAST(deregistered_at AS INTEGER)
         WHEN typeof(deregistered_at) IN ('integer', 'real') AND deregistered_at BETWEEN 978307200 AND 32503680000 THEN CAST(deregistered_at * 1000 AS INTEGER)
         ELSE NULL END AS deregistered_at,
  supervisor_pid,
  supervisor_start_time,
  restart_policy,
  max_restarts,
  restart_attempts,
  CASE WHEN typeof(last_restart_at) = 'integer' AND last_restart_at BETWEEN 978307200000 AND 32503680000000 THEN last_restart_at
         WHEN typeof(last_restart_at) IN ('integer', 'real') AND last_restart_at BETWEEN 978307200000 AND 32503680000000 THEN CAST(last_restart_at AS INTEGER)
         WHEN typeof(last_restart_at) IN ('integer', 'real') AND last_restart_at BETWEEN 978307200 AND 32503680000 THEN CAST(last_restart_at * 1000 AS INTEGER)
         ELSE NULL END AS last_restart_at
FROM agents ORDER BY id;

DROP TABLE agents;
ALTER TABLE agents_new RENAME TO agents;
CREATE INDEX agents_group ON agents (group_name) WHERE group_name IS NOT NULL;
CREATE INDEX agents_check ON agents (check_at);
CREATE INDEX agents_maintenance_until ON agents (maintenance_until) WHERE state = 'maintenance';
CREATE INDEX agents_local_pid ON agents (host) WHERE pid IS NOT NULL AND state NOT IN ('offline', 'failed', 'maintenance');

CREATE TABLE events_new (
  id          INTEGER PRIMARY KEY,
  agent_id    INTEGER REFERENCES agents (id) ON DELETE CASCADE,
  agent_name  TEXT    NOT NULL,
  at          INTEGER NOT NULL CHECK (typeof(at) = 'integer' AND at BETWEEN 978307200000 AND 32503680000000),
  from_state  TEXT,
  to_state    TEXT    NOT NULL,
  reason      TEXT,
  evidence    TEXT    CHECK (evidence IS NULL OR json_valid(evidence))
);
INSERT INTO events_new (id, agent_id, agent_name, at, from_state, to_state, reason, evidence)
SELECT id, agent_id, agent_name,
  CASE WHEN typeof(at) = 'integer' AND at BETWEEN 978307200000 AND 32503680000000 THEN at
         WHEN typeof(at) IN ('integer', 'real') AND at BETWEEN 978307200000 AND 32503680000000 THEN CAST(at AS INTEGER)
         WHEN typeof(at) IN ('integer', 'real') AND at BETWEEN 978307200 AND 32503680000 THEN CAST(at * 1000 AS INTEGER)
         ELSE (SELECT now FROM migration_clock) END,
  from_state, to_state, reason, evidence
FROM events ORDER BY id;
DROP TABLE events;
ALTER TABLE events_new RENAME TO events;
CREATE INDEX events_agent ON events (agent_id, id);
CREATE INDEX events_at ON events (at);

CREATE TABLE commands_new (
  id           INTEGER PRIMARY KEY,
  agent_id     INTEGER NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
  payload      TEXT    NOT NULL CHECK (length(CAST(payload AS BLOB)) <= 65536),
  state        TEXT    NOT NULL DEFAULT 'queued'
               CHECK (state IN ('queued', 'executing', 'completed', 'failed', 'cancelled')),
  claim_token  TEXT,
  claimed_by_incarnation INTEGER,
  created_at   INTEGER NOT NULL CHECK (typeof(created_at) = 'integer' AND created_at BETWEEN 978307200000 AND 32503680000000),
  deadline_at  INTEGER CHECK (deadline_at IS NULL OR (typeof(deadline_at) = 'integer' AND deadline_at BETWEEN 978307200000 AND 32503680000000)),
  claimed_at   INTEGER CHECK (claimed_at IS NULL OR (typeof(claimed_at) = 'integer' AND claimed_at BETWEEN 978307200000 AND 32503680000000)),
  finished_at  INTEGER CHECK (finished_at IS NULL OR (typeof(finished_at) = 'integer' AND finished_at BETWEEN 978307200000 AND 32503680000000)),
  result       TEXT,
  error        TEXT
);
INSERT INTO commands_new (id, agent_id, payload, state, claim_token, claimed_by_incarnation, created_at, deadline_at, claimed_at, finished_at, result, error)
SELECT id, agent_id, payload, state, claim_token, claimed_by_incarnation,
  CASE WHEN typeof(created_at) = 'integer' AND created_at BETWEEN 978307200000 AND 32503680000000 THEN created_at
         WHEN typeof(created_at) IN ('integer', 'real') AND created_at BETWEEN 978307200000 AND 32503680000000 THEN CAST(created_at AS INTEGER)
         WHEN typeof(created_at) IN ('integer', 'real') AND created_at BETWEEN 978307200 AND 32503680000 THEN CAST(created_at * 1000 AS INTEGER)
         ELSE (SELECT now FROM migration_clock) END,
  CASE WHEN typeof(deadline_at) = 'integer' AND deadline_at BETWEEN 978307200000 AND 32503680000000 THEN deadline_at
         WHEN typeof(deadline_at) IN ('integer', 'real') AND deadline_at BETWEEN 978307200000 AND 32503680000000 THEN CAST(deadline_at AS INTEGER)
         WHEN typeof(deadline_at) IN ('integer', 'real') AND deadline_at BETWEEN 978307200 AND 32503680000 THEN CAST(deadline_at * 1000 AS INTEGER)
         ELSE NULL END,
  CASE WHEN typeof(claimed_at) = 'integer' AND claimed_at BETWEEN 978307200000 AND 32503680000000 THEN claimed_at
         WHEN typeof(claimed_at) IN ('integer', 'real') AND claimed_at BETWEEN 978307200000 AND 32503680000000 THEN CAST(claimed_at AS INTEGER)
         WHEN typeof(claimed_at) IN ('integer', 'real') AND claimed_at BETWEEN 978307200 AND 32503680000 THEN CAST(claimed_at * 1000 AS INTEGER)
         ELSE NULL END,
  CASE WHEN typeof(finished_at) = 'integer' AND finished_at BETWEEN 978307200000 AND 32503680000000 THEN finished_at
         WHEN typeof(finished_at) IN ('integer', 'real') AND finished_at BETWEEN 978307200000 AND 32503680000000 THEN CAST(finished_at AS INTEGER)
         WHEN typeof(finished_at) IN ('integer', 'real') AND finished_at BETWEEN 978307200 AND 32503680000 THEN CAST(finished_at * 1000 AS INTEGER)
         ELSE NULL END,
  result, error
FROM commands ORDER BY id;
DROP TABLE commands;
ALTER TABLE commands_new RENAME TO commands;
CREATE INDEX commands_agent_state ON commands (agent_id, state);
CREATE INDEX commands_state ON commands (state, id);

DROP TABLE migration_clock;

-- The triggers of 0001, 0002 and 0004, as they were (their comments there hold).
CREATE TRIGGER agents_state_event AFTER UPDATE OF state ON agents
WHEN OLD.state IS NOT NEW.state
BEGIN
  INSERT INTO events (agent_id, agent_name, at, from_state, to_state, reason, evidence)
  VALUES (NEW.id, NEW.name, NEW.state_since, OLD.state, NEW.state, NEW.state_reason, NEW.state_evidence);
  UPDATE commands
     SET state = 'cancelled', finished_at = NEW.state_since,
         error = 'agent ' || NEW.state || ': ' || COALESCE(NEW.state_reason, 'no reason given')
   WHERE NEW.state IN ('offline', 'failed') AND agent_id = NEW.id AND state = 'executing';
END;

CREATE TRIGGER agents_registered_event AFTER INSERT ON agents
BEGIN
  INSERT INTO events (agent_id, agent_name, at, from_state, to_state, reason, evidence)
  VALUES (NEW.id, NEW.name, NEW.state_since, NULL, NEW.state, COALESCE(NEW.state_reason, 'registered'), NEW.state_evidence);
END;

CREATE TRIGGER agents_incarnation_commands AFTER UPDATE OF incarnation ON agents
WHEN NEW.incarnation > OLD.incarnation
BEGIN
  UPDATE commands
     SET state = 'cancelled', finished_at = NEW.updated_at,
         error = 'agent restarted: claimed by incarnation ' || claimed_by_incarnation || ', now ' || NEW.incarnation
   WHERE agent_id = NEW.id AND state = 'executing' AND claimed_by_incarnation < NEW.incarnation;
END;

-- New: an incarnation that starts while the state stays the same (a Start or a new process registering while
-- still `initializing`) is an event too. When the state does change, agents_state_event has written it.
CREATE TRIGGER agents_incarnation_event AFTER UPDATE OF incarnation ON agents
WHEN NEW.incarnation > OLD.incarnation AND NEW.state IS OLD.state
BEGIN
  INSERT INTO events (agent_id, agent_name, at, from_state, to_state, reason, evidence)
  VALUES (NEW.id, NEW.name, NEW.state_since, OLD.state, NEW.state, NEW.state_reason,
          json_patch(COALESCE(NEW.state_evidence, '{}'), json_object('incarnation', NEW.incarnation)));
END;

CREATE TRIGGER agents_heartbeat_transition AFTER UPDATE OF heartbeat_seq ON agents
WHEN NEW.heartbeat_seq > OLD.heartbeat_seq AND NOT (
  OLD.state = 'active' AND NEW.reported_status <> 'error'
  AND NEW.last_heartbeat_at - OLD.last_heartbeat_at < CAST(OLD.interval_ms * OLD.stale_multiplier AS INTEGER)
  AND NEW.last_heartbeat_at - OLD.last_heartbeat_at < OLD.offline_after_ms)
BEGIN
  -- 1. the state the clock had already put it in
  UPDATE agents SET
    state = CASE
      WHEN NEW.last_heartbeat_at - MAX(COALESCE(OLD.last_heartbeat_at, OLD.started_at), OLD.started_at) >= OLD.offline_after_ms THEN 'offline'
      WHEN NEW.last_heartbeat_at - MAX(COALESCE(OLD.last_heartbeat_at, OLD.started_at), OLD.started_at)
           >= CAST(OLD.interval_ms * OLD.stale_multiplier AS INTEGER) THEN 'stale'
      WHEN OLD.state = 'maintenance' THEN
        CASE WHEN OLD.last_heartbeat_at IS NULL OR OLD.last_heartbeat_at < OLD.started_at THEN 'initializing' ELSE 'active' END
      ELSE OLD.state END,
    state_since = CASE
      WHEN NEW.last_heartbeat_at - MAX(COALESCE(OLD.last_heartbeat_at, OLD.started_at), OLD.started_at) >= OLD.offline_after_ms
        THEN MAX(COALESCE(OLD.last_heartbeat_at, OLD.started_at), OLD.started_at) + OLD.offline_after_ms
      WHEN NEW.last_heartbeat_at - MAX(COALESCE(OLD.last_heartbeat_at, OLD.started_at), OLD.started_at)
           >= CAST(OLD.interval_ms * OLD.stale_multiplier AS INTEGER)
        THEN MAX(COALESCE(OLD.last_heartbeat_at, OLD.started_at), OLD.started_at) + CAST(OLD.interval_ms * OLD.stale_multiplier AS INTEGER)
      ELSE OLD.maintenance_until END,
    state_reason = CASE
      WHEN NEW.last_heartbeat_at - MAX(COALESCE(OLD.last_heartbeat_at, OLD.started_at), OLD.started_at) >= OLD.offline_after_ms
        THEN 'no heartbeat within the offline threshold'
      WHEN NEW.last_heartbeat_at - MAX(COALESCE(OLD.last_heartbeat_at, OLD.started_at), OLD.started_at)
           >= CAST(OLD.interval_ms * OLD.stale_multiplier AS INTEGER)
        THEN CASE WHEN OLD.last_heartbeat_at IS NULL OR OLD.last_heartbeat_at < OLD.started_at
                  THEN 'stuck in initializing' ELSE 'heartbeat overdue' END
      ELSE 'maintenance window ended' END,
    state_evidence = json_object(
      'rule', 'clock', 'detected_by', 'heartbeat',
      'heartbeat_age_ms', NEW.last_heartbeat_at - MAX(COALESCE(OLD.last_heartbeat_at, OLD.started_at), OLD.started_at),
      'stale_after_ms', CAST(OLD.interval_ms * OLD.stale_multiplier AS INTEGER),
      'offline_after_ms', OLD.offline_after_ms,
      'maintenance_until', OLD.maintenance_until),
    maintenance_until = NULL
  WHERE id = NEW.id
    AND OLD.state NOT IN ('offline', 'failed')
    AND NOT (OLD.state = 'maintenance' AND (OLD.maintenance_until IS NULL OR OLD.maintenance_until > NEW.last_heartbeat_at))
    AND (NEW.last_heartbeat_at - MAX(COALESCE(OLD.last_heartbeat_at, OLD.started_at), OLD.started_at)
           >= MIN(OLD.offline_after_ms, CAST(OLD.interval_ms * OLD.stale_multiplier AS INTEGER))
         OR OLD.state = 'maintenance');

  -- 2. the heartbeat's own transition
  UPDATE agents SET
    state = CASE
      WHEN OLD.state = 'maintenance' AND (OLD.maintenance_until IS NULL OR OLD.maintenance_until > NEW.last_heartbeat_at) THEN 'maintenance'
      WHEN NEW.reported_status = 'error' THEN 'error'
      ELSE 'active' END,
    state_since = NEW.last_heartbeat_at,
    state_reason = CASE
      WHEN NEW.reported_status = 'error' THEN 'reported error'
      WHEN state = 'initializing' THEN 'first heartbeat'
      WHEN state = 'error' THEN 'error cleared'
      ELSE 'heartbeat' END,
    state_evidence = json_object(
      'rule', 'heartbeat', 'heartbeat_seq', NEW.heartbeat_seq, 'reported_status', NEW.reported_status,
      'message', NEW.message, 'silent_ms', NEW.last_heartbeat_at - MAX(COALESCE(OLD.last_heartbeat_at, OLD.started_at), OLD.started_at)),
    started_at = CASE WHEN state IN ('offline', 'failed') THEN NEW.last_heartbeat_at ELSE started_at END,
    maintenance_until = NULL
  WHERE id = NEW.id
    AND state IS NOT (CASE
      WHEN OLD.state = 'maintenance' AND (OLD.maintenance_until IS NULL OR OLD.maintenance_until > NEW.last_heartbeat_at) THEN 'maintenance'
      WHEN NEW.reported_status = 'error' THEN 'error'
      ELSE 'active' END);
END;
