-- 0003_monitor: what the health loop (agentctl monitor, HeartbeatHealthAgent) keeps between passes, so that
-- cron `--once` runs behave like one long-running loop: its own last pass, its counters, the convictions it
-- holds back, the alert outbox with one delivery per receiver, and each agent's alert cooldown.
-- Self-contained: it only adds tables and indexes. All times are integer ms since the Unix epoch (UTC).

-- The health loop's own heartbeat: one row, rewritten by every pass. `status` and `check` read it.
CREATE TABLE monitor_state (
  id               INTEGER PRIMARY KEY CHECK (id = 1),
  pass_seq         INTEGER NOT NULL DEFAULT 0,   -- passes so far; events written by a pass carry it in their evidence
  last_pass_at     INTEGER,                      -- the clock of the last completed pass
  last_pass_ms     REAL,                         -- how long it took
  every_ms         INTEGER,                      -- the loop's period (--every; for --once, how often cron runs it)
  monitor_pid      INTEGER,
  monitor_host     TEXT,
  event_cursor     INTEGER                       -- the last event whose alerts and counters have been handled
);

-- Monotonic counters for `agentctl metrics`: transitions_total:<state>, heartbeat_timeouts_total,
-- crash_proofs_total, alerts_sent_total, alerts_failed_total, convictions_held_total, suspect_passes_total, ...
CREATE TABLE monitor_counters (
  name  TEXT PRIMARY KEY,
  value INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Convictions held back for one pass because most of the fleet would have been convicted at once.
CREATE TABLE monitor_held (
  agent_id  INTEGER PRIMARY KEY REFERENCES agents (id) ON DELETE CASCADE,
  to_state  TEXT    NOT NULL,
  held_at   INTEGER NOT NULL,
  pass_seq  INTEGER NOT NULL
);

-- Per agent: the last alert sent about it and whether it is down as far as alerts go (for recovery notices,
-- reminders and the cooldown). Kept here so that separate cron runs honour the cooldown.
CREATE TABLE alert_cooldowns (
  agent_id      INTEGER PRIMARY KEY REFERENCES agents (id) ON DELETE CASCADE,
  last_alert_at INTEGER NOT NULL,
  down_state    TEXT,                            -- the state alerted on while the agent is down; NULL once recovered
  down_since    INTEGER
);

CREATE INDEX alert_cooldowns_down ON alert_cooldowns (last_alert_at) WHERE down_state IS NOT NULL;

-- The alert outbox: an alert is written in the same transaction as the decision to send it, then delivered to
-- each receiver (a row in alert_deliveries) by whichever pass claims it first. An undeliverable alert stays
-- pending and is retried by later passes.
CREATE TABLE alerts (
  id          INTEGER PRIMARY KEY,
  agent_id    INTEGER REFERENCES agents (id) ON DELETE SET NULL,
  agent_name  TEXT    NOT NULL,
  kind        TEXT    NOT NULL CHECK (kind IN ('alert', 'reminder', 'recovery', 'test')),
  state       TEXT    NOT NULL,                  -- the agent state the alert is about
  event_id    INTEGER,                           -- the transition it reports (NULL for reminders and tests)
  created_at  INTEGER NOT NULL,
  payload     TEXT    NOT NULL CHECK (json_valid(payload))
);

CREATE INDEX alerts_created ON alerts (created_at);

CREATE TABLE alert_deliveries (
  alert_id      INTEGER NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
  target        TEXT    NOT NULL,                -- 'webhook:URL' or 'exec:COMMAND'
  status        TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
  attempts      INTEGER NOT NULL DEFAULT 0,
  claimed_until INTEGER,                         -- a 'sending' claim older than this was abandoned: pending again
  sent_at       INTEGER,
  last_error    TEXT,
  PRIMARY KEY (alert_id, target)
) WITHOUT ROWID;

CREATE INDEX alert_deliveries_open ON alert_deliveries (target, alert_id) WHERE status IN ('pending', 'sending');

-- When the health loop must next look at an agent unless it beats: the earlier of its stale and offline deadlines
-- (due_at is only the stale one, and an agent's offline threshold may be the shorter). NULL while the clock cannot
-- change the agent's state (offline, failed, maintenance: ended maintenance is found through maintenance_until),
-- so dead agents never count as due.
ALTER TABLE agents ADD COLUMN check_at INTEGER GENERATED ALWAYS AS
  (CASE WHEN state IN ('offline', 'failed', 'maintenance') THEN NULL
        ELSE COALESCE(last_heartbeat_at, started_at) + MIN(CAST(interval_ms * stale_multiplier AS INTEGER), offline_after_ms) END) VIRTUAL;

-- A pass reads only what is due: agents past a deadline (agents_check), expired maintenance windows, and agents
-- whose process this host can check. agents_check replaces agents_due: every heartbeat rewrites its agent's entry
-- in a deadline index, so keeping both would slow each heartbeat by a quarter (a partial index, by a tenth).
DROP INDEX agents_due;
CREATE INDEX agents_check ON agents (check_at);
CREATE INDEX agents_maintenance_until ON agents (maintenance_until) WHERE state = 'maintenance';
CREATE INDEX agents_local_pid ON agents (host) WHERE pid IS NOT NULL AND state NOT IN ('offline', 'failed', 'maintenance');
