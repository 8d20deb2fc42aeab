-- 0004_deadline: an agent's silence is counted from its last heartbeat or from the start of its current
-- incarnation, whichever is later; and the deadline column is computed without an IN list.
-- Self-contained: it replaces two generated columns, one index and one trigger; no stored data changes.
--
-- 1. Until version 3 the clock counted from COALESCE(last_heartbeat_at, started_at). A new incarnation (a restart,
--    a new process registering, a deregistered agent coming back) keeps the last heartbeat of the one before, so
--    an agent restarted after a long silence read as stale or offline before it could beat at all: the health
--    loop convicted it at once (and, with --restart-stale, restarted it again), and its first heartbeat recorded
--    a clock transition dated before its own start. Now the reference is
--    MAX(COALESCE(last_heartbeat_at, started_at), started_at): an incarnation that has not beaten yet is judged
--    from its start ("stuck in initializing"), exactly like a new agent.
-- 2. SQLite evaluates `x IN (c1, c2, c3, ...)` with three or more constants by building a temporary b-tree
--    (OpenEphemeral) each time the expression runs. 0003's check_at began
--    `CASE WHEN state IN ('offline', 'failed', 'maintenance')`, and SQLite recomputes a generated column, and
--    rewrites its index entry, on every heartbeat: two temporary b-trees per heartbeat, which halved the
--    aggregate rate of eight concurrent writers (about 17,000/s against about 32,000/s with the CASE form).

-- The stale deadline (unindexed, for readers).
ALTER TABLE agents DROP COLUMN due_at;
ALTER TABLE agents ADD COLUMN due_at INTEGER GENERATED ALWAYS AS
  (MAX(COALESCE(last_heartbeat_at, started_at), started_at) + CAST(interval_ms * stale_multiplier AS INTEGER)) VIRTUAL;

-- The health loop's deadline: the earlier of the stale and offline deadlines, NULL while the clock cannot change
-- the state (offline, failed, maintenance).
DROP INDEX agents_check;
ALTER TABLE agents DROP COLUMN check_at;
ALTER TABLE agents ADD COLUMN check_at INTEGER GENERATED ALWAYS AS
  (CASE state WHEN 'offline' THEN NULL WHEN 'failed' THEN NULL WHEN 'maintenance' THEN NULL
        ELSE MAX(COALESCE(last_heartbeat_at, started_at), started_at)
             + MIN(CAST(interval_ms * stale_multiplier AS INTEGER), offline_after_ms) END) VIRTUAL;
CREATE INDEX agents_check ON agents (check_at);

-- The heartbeat trigger of 0001, with the clock counted as above. The comments of 0001 hold.
DROP TRIGGER agents_heartbeat_transition;
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
