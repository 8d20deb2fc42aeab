-- 0001_init: agents with their own contract, events, commands, and the triggers that keep
-- the state model true for every writer (TypeScript, Python, the sqlite3 shell).
-- Append-only: never edit this file once it has landed; add 0002_… instead.
-- All times are integer milliseconds since the Unix epoch (UTC).

CREATE TABLE agents (
  id                INTEGER PRIMARY KEY,
  name              TEXT    NOT NULL UNIQUE
                    CHECK (length(name) BETWEEN 1 AND 128
                           AND name GLOB '[A-Za-z0-9]*'
                           AND name NOT GLOB '*[^A-Za-z0-9._:@-]*'),
  group_name        TEXT
                    CHECK (group_name IS NULL OR (length(group_name) BETWEEN 1 AND 64
                           AND group_name GLOB '[A-Za-z0-9]*'
                           AND group_name NOT GLOB '*[^A-Za-z0-9._:@-]*')),
  -- the agent's own contract
  interval_ms       INTEGER NOT NULL DEFAULT 30000  CHECK (interval_ms > 0),
  stale_multiplier  REAL    NOT NULL DEFAULT 3      CHECK (stale_multiplier >= 1),
  offline_after_ms  INTEGER NOT NULL DEFAULT 300000 CHECK (offline_after_ms > 0),
  -- identity of the process that is the agent (NULL when unknown, e.g. shell heartbeats)
  pid               INTEGER CHECK (pid IS NULL OR pid > 0),
  pid_start_time    INTEGER,          -- /proc/PID/stat field 22: clock ticks after boot
  host              TEXT,
  boot_id           TEXT,             -- /proc/sys/kernel/random/boot_id of that host
  incarnation       INTEGER NOT NULL DEFAULT 1,
  -- what the agent last said
  heartbeat_seq     INTEGER NOT NULL DEFAULT 0,
  last_heartbeat_at INTEGER,
  reported_status   TEXT    NOT NULL DEFAULT 'ok' CHECK (reported_status IN ('ok', 'busy', 'error')),
  message           TEXT    CHECK (message IS NULL OR length(message) <= 1024),
  availability      TEXT    NOT NULL DEFAULT 'available' CHECK (availability IN ('available', 'busy')),
  metadata          TEXT    NOT NULL DEFAULT '{}'
                    CHECK (json_valid(metadata) AND json_type(metadata) = 'object' AND length(CAST(metadata AS BLOB)) <= 16384),
  progress          INTEGER,
  -- the persisted state; readers derive the current one from it and the timestamps
  state             TEXT    NOT NULL DEFAULT 'initializing'
                    CHECK (state IN ('initializing', 'active', 'stale', 'offline', 'error', 'failed', 'maintenance')),
  state_since       INTEGER NOT NULL,
  state_reason      TEXT,
  state_evidence    TEXT    CHECK (state_evidence IS NULL OR json_valid(state_evidence)),
  maintenance_until INTEGER,
  -- how to start it again
  launch_argv       TEXT    CHECK (launch_argv IS NULL OR (json_valid(launch_argv) AND json_type(launch_argv) = 'array')),
  launch_cwd        TEXT,
  restart_count     INTEGER NOT NULL DEFAULT 0,
  created_at        INTEGER NOT NULL,
  started_at        INTEGER NOT NULL,
  updated_at        INTEGER NOT NULL,
  deregistered_at   INTEGER,
  -- when the agent becomes stale unless it beats: the health loop reads the due ones through agents_due
  due_at            INTEGER GENERATED ALWAYS AS
                    (COALESCE(last_heartbeat_at, started_at) + CAST(interval_ms * stale_multiplier AS INTEGER)) VIRTUAL
);

CREATE INDEX agents_due ON agents (due_at);
CREATE INDEX agents_group ON agents (group_name) WHERE group_name IS NOT NULL;

CREATE TABLE events (
  id          INTEGER PRIMARY KEY,
  agent_id    INTEGER REFERENCES agents (id) ON DELETE CASCADE,
  agent_name  TEXT    NOT NULL,
  at          INTEGER NOT NULL,
  from_state  TEXT,
  to_state    TEXT    NOT NULL,
  reason      TEXT,
  evidence    TEXT    CHECK (evidence IS NULL OR json_valid(evidence))
);

CREATE INDEX events_agent ON events (agent_id, id);
CREATE INDEX events_at ON events (at);

CREATE TABLE commands (
  id           INTEGER PRIMARY KEY,
  agent_id     INTEGER NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
  payload      TEXT    NOT NULL CHECK (length(CAST(payload AS BLOB)) <= 65536),
  state        TEXT    NOT NULL DEFAULT 'queued'
               CHECK (state IN ('queued', 'executing', 'completed', 'failed', 'cancelled')),
  claim_token  TEXT,
  claimed_by_incarnation INTEGER,
  created_at   INTEGER NOT NULL,
  deadline_at  INTEGER,
  claimed_at   INTEGER,
  finished_at  INTEGER,
  result       TEXT,
  error        TEXT
);

CREATE INDEX commands_agent_state ON commands (agent_id, state);

-- Every change of the persisted state is one event, whoever made it. Writers that change
-- `state` set state_since, state_reason and state_evidence in the same statement.
-- Going offline or failed cancels the agent's executing commands (seed 001).
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

-- A heartbeat (any statement that raises heartbeat_seq) moves the agent to active, error or
-- keeps it in maintenance. First, what the agent had become before this heartbeat by the
-- clock alone (stale, offline, maintenance over) is made durable, so that history shows it
-- even when no health loop ran; then the heartbeat's own transition. The WHEN clause skips
-- the common case (an active agent beating on time) so the hot path stays one row write.
CREATE TRIGGER agents_heartbeat_transition AFTER UPDATE OF heartbeat_seq ON agents
WHEN NEW.heartbeat_seq > OLD.heartbeat_seq AND NOT (
  OLD.state = 'active' AND NEW.reported_status <> 'error'
  AND NEW.last_heartbeat_at - OLD.last_heartbeat_at < CAST(OLD.interval_ms * OLD.stale_multiplier AS INTEGER)
  AND NEW.last_heartbeat_at - OLD.last_heartbeat_at < OLD.offline_after_ms)
BEGIN
  -- 1. the state the clock had already put it in
  UPDATE agents SET
    state = CASE
      WHEN NEW.last_heartbeat_at - COALESCE(OLD.last_heartbeat_at, OLD.started_at) >= OLD.offline_after_ms THEN 'offline'
      WHEN NEW.last_heartbeat_at - COALESCE(OLD.last_heartbeat_at, OLD.started_at)
           >= CAST(OLD.interval_ms * OLD.stale_multiplier AS INTEGER) THEN 'stale'
      WHEN OLD.state = 'maintenance' THEN CASE WHEN OLD.last_heartbeat_at IS NULL THEN 'initializing' ELSE 'active' END
      ELSE OLD.state END,
    state_since = CASE
      WHEN NEW.last_heartbeat_at - COALESCE(OLD.last_heartbeat_at, OLD.started_at) >= OLD.offline_after_ms
        THEN COALESCE(OLD.last_heartbeat_at, OLD.started_at) + OLD.offline_after_ms
      WHEN NEW.last_heartbeat_at - COALESCE(OLD.last_heartbeat_at, OLD.started_at)
           >= CAST(OLD.interval_ms * OLD.stale_multiplier AS INTEGER)
        THEN COALESCE(OLD.last_heartbeat_at, OLD.started_at) + CAST(OLD.interval_ms * OLD.stale_multiplier AS INTEGER)
      ELSE OLD.maintenance_until END,
    state_reason = CASE
      WHEN NEW.last_heartbeat_at - COALESCE(OLD.last_heartbeat_at, OLD.started_at) >= OLD.offline_after_ms
        THEN 'no heartbeat within the offline threshold'
      WHEN NEW.last_heartbeat_at - COALESCE(OLD.last_heartbeat_at, OLD.started_at)
           >= CAST(OLD.interval_ms * OLD.stale_multiplier AS INTEGER)
        THEN CASE WHEN OLD.last_heartbeat_at IS NULL THEN 'stuck in initializing' ELSE 'heartbeat overdue' END
      ELSE 'maintenance window ended' END,
    state_evidence = json_object(
      'rule', 'clock', 'detected_by', 'heartbeat',
      'heartbeat_age_ms', NEW.last_heartbeat_at - COALESCE(OLD.last_heartbeat_at, OLD.started_at),
      'stale_after_ms', CAST(OLD.interval_ms * OLD.stale_multiplier AS INTEGER),
      'offline_after_ms', OLD.offline_after_ms,
      'maintenance_until', OLD.maintenance_until),
    maintenance_until = NULL
  WHERE id = NEW.id
    AND OLD.state NOT IN ('offline', 'failed')
    AND NOT (OLD.state = 'maintenance' AND (OLD.maintenance_until IS NULL OR OLD.maintenance_until > NEW.last_heartbeat_at))
    AND (NEW.last_heartbeat_at - COALESCE(OLD.last_heartbeat_at, OLD.started_at)
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
      'message', NEW.message, 'silent_ms', NEW.last_heartbeat_at - COALESCE(OLD.last_heartbeat_at, OLD.started_at)),
    started_at = CASE WHEN state IN ('offline', 'failed') THEN NEW.last_heartbeat_at ELSE started_at END,
    maintenance_until = NULL
  WHERE id = NEW.id
    AND state IS NOT (CASE
      WHEN OLD.state = 'maintenance' AND (OLD.maintenance_until IS NULL OR OLD.maintenance_until > NEW.last_heartbeat_at) THEN 'maintenance'
      WHEN NEW.reported_status = 'error' THEN 'error'
      ELSE 'active' END);
END;
