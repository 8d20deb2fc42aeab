-- 0007_hosts: many health loops on one database, and hosts that go silent as a whole.
-- health_loops has one row per health-loop process (a long-running `agentctl monitor` or a cron `--once` run),
-- upserted by each of its passes: `status` and `db-check` list the loops seen and on which hosts, and the host
-- roll-up reads when each host's loops last passed. host_outages records a host found silent as a whole: one open
-- outage per host (a partial unique index), so that of several monitors only one reports it. alerts.outage_id ties
-- a host's alert and recovery notice to its outage.
-- Self-contained: two new tables and one new nullable column; nothing a foreign writer runs changes.
-- monitor_state stays, still written by every pass, for readers of version 6.

CREATE TABLE health_loops (
  host           TEXT    NOT NULL,               -- the loop's host name ('' when unknown)
  boot_id        TEXT    NOT NULL,               -- that host's boot id ('' when unknown)
  pid            INTEGER NOT NULL,
  pid_start_time INTEGER NOT NULL,               -- the loop process's start time (clock ticks after boot; 0 when unknown)
  started_at     INTEGER NOT NULL,               -- its first pass
  every_ms       INTEGER,                        -- its period (--every; NULL: a cron --once run, assumed every 60 s)
  passes         INTEGER NOT NULL DEFAULT 0,
  last_pass_at   INTEGER,
  last_pass_ms   REAL,
  last_pass_seq  INTEGER,                        -- monitor_state.pass_seq of its last pass
  suspect        TEXT,                           -- why its last pass convicted no one, or NULL
  clock_skew_ms  INTEGER,                        -- its clock against the database's (NULL on SQLite: one clock)
  version        TEXT,                           -- the agentctl version that ran it
  stopped_at     INTEGER,                        -- when it stopped cleanly, or NULL
  PRIMARY KEY (host, boot_id, pid, pid_start_time)
) WITHOUT ROWID;

CREATE INDEX health_loops_last_pass ON health_loops (last_pass_at);

CREATE TABLE host_outages (
  id            INTEGER PRIMARY KEY,
  host          TEXT    NOT NULL,
  detected_at   INTEGER NOT NULL,                -- the pass that found the host silent
  silent_since  INTEGER NOT NULL,                -- the host's last sign of life (heartbeat, start or loop pass)
  agents        INTEGER NOT NULL,                -- how many agents went silent with it
  agent_names   TEXT    NOT NULL CHECK (json_valid(agent_names)),  -- their names, a JSON array
  detected_by   TEXT,                            -- the host of the monitor that found it
  ended_at      INTEGER,                         -- NULL while open
  ended_reason  TEXT
);

CREATE UNIQUE INDEX host_outages_open ON host_outages (host) WHERE ended_at IS NULL;

ALTER TABLE alerts ADD COLUMN outage_id INTEGER REFERENCES host_outages (id) ON DELETE SET NULL;
