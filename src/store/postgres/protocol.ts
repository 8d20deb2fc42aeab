/**
 * The SQL every writer of a PostgreSQL agentctl database runs, in any language: SQLite's protocol (../protocol.ts)
 * in PostgreSQL's dialect. state_database.md quotes these statements verbatim (a test checks it) and runs them
 * through psycopg and psql. Differences from SQLite's, all from the engine:
 *
 * - No `:now`: every time is the server's clock (agentctl_now_ms(), clock_timestamp() in ms), so a host whose
 *   clock is off cannot make an agent look stale or from the future. A heartbeat may carry the writer's own
 *   clock in `:writer_clock` (ms, or NULL); the database keeps it and its offset to report skewed hosts.
 * - Every parameter is in a CAST: PostgreSQL must know each parameter's type, and a NULL alone says none.
 * - Named parameters are `:name`, which agentctl binds as $n, psql interpolates from variables (set each to an
 *   SQL literal: `-v name="'w1'"`, `-v pid=NULL`), and psycopg takes as `%(name)s` (the Python example converts).
 *   No `::` casts, `%` or `:` inside the text, so that conversion is a plain substitution.
 */

/** Register an agent, or update its contract and identity (see ../protocol.ts REGISTER_SQL). */
export const PG_REGISTER_SQL = `INSERT INTO agents AS a (name, group_name, interval_ms, stale_multiplier, offline_after_ms,
                         pid, pid_start_time, host, boot_id, metadata, launch_argv, launch_cwd,
                         state, state_since, state_reason, created_at, started_at, updated_at)
SELECT CAST(:name AS text), CAST(:group_name AS text),
       COALESCE(CAST(:interval_ms AS bigint), {{interval_ms}}),
       COALESCE(CAST(:stale_multiplier AS double precision), {{stale_multiplier}}),
       COALESCE(CAST(:offline_after_ms AS bigint), {{offline_after_ms}}),
       CAST(:pid AS bigint), CAST(:pid_start_time AS bigint), CAST(:host AS text), CAST(:boot_id AS text),
       agentctl_json_patch('{}', COALESCE(CAST(:metadata AS jsonb), '{}')),
       CAST(:launch_argv AS jsonb), CAST(:launch_cwd AS text), 'initializing', t.now, 'registered', t.now, t.now, t.now
FROM (SELECT agentctl_now_ms() AS now) t
ON CONFLICT (name) DO UPDATE SET
  group_name       = COALESCE(excluded.group_name, a.group_name),
  interval_ms      = COALESCE(CAST(:interval_ms AS bigint), a.interval_ms),
  stale_multiplier = COALESCE(CAST(:stale_multiplier AS double precision), a.stale_multiplier),
  offline_after_ms = COALESCE(CAST(:offline_after_ms AS bigint), a.offline_after_ms),
  metadata         = CASE WHEN CAST(:metadata AS jsonb) IS NULL THEN a.metadata
                          ELSE agentctl_json_patch(a.metadata, CAST(:metadata AS jsonb)) END,
  launch_argv      = COALESCE(excluded.launch_argv, a.launch_argv),
  launch_cwd       = COALESCE(excluded.launch_cwd, a.launch_cwd),
  incarnation      = a.incarnation + CASE WHEN a.deregistered_at IS NOT NULL
                       OR (excluded.pid IS NOT NULL AND (excluded.pid IS DISTINCT FROM a.pid
                           OR excluded.pid_start_time IS DISTINCT FROM a.pid_start_time))
                       THEN 1 ELSE 0 END,
  state            = CASE WHEN a.deregistered_at IS NOT NULL
                       OR (excluded.pid IS NOT NULL AND (excluded.pid IS DISTINCT FROM a.pid
                           OR excluded.pid_start_time IS DISTINCT FROM a.pid_start_time))
                       THEN 'initializing' ELSE a.state END,
  state_since      = CASE WHEN a.deregistered_at IS NOT NULL
                       OR (excluded.pid IS NOT NULL AND (excluded.pid IS DISTINCT FROM a.pid
                           OR excluded.pid_start_time IS DISTINCT FROM a.pid_start_time))
                       THEN excluded.updated_at ELSE a.state_since END,
  state_reason     = CASE WHEN a.deregistered_at IS NOT NULL THEN 're-registered'
                       WHEN excluded.pid IS NOT NULL AND (excluded.pid IS DISTINCT FROM a.pid
                           OR excluded.pid_start_time IS DISTINCT FROM a.pid_start_time)
                       THEN 'registered by a new process' ELSE a.state_reason END,
  state_evidence   = CASE WHEN a.deregistered_at IS NOT NULL
                       OR (excluded.pid IS NOT NULL AND (excluded.pid IS DISTINCT FROM a.pid
                           OR excluded.pid_start_time IS DISTINCT FROM a.pid_start_time))
                       THEN jsonb_build_object('rule', 'register', 'pid', excluded.pid, 'previous_pid', a.pid)
                       ELSE a.state_evidence END,
  started_at       = CASE WHEN a.deregistered_at IS NOT NULL
                       OR (excluded.pid IS NOT NULL AND (excluded.pid IS DISTINCT FROM a.pid
                           OR excluded.pid_start_time IS DISTINCT FROM a.pid_start_time))
                       THEN excluded.updated_at ELSE a.started_at END,
  pid              = COALESCE(excluded.pid, a.pid),
  pid_start_time   = CASE WHEN excluded.pid IS NULL THEN a.pid_start_time ELSE excluded.pid_start_time END,
  host             = COALESCE(excluded.host, a.host),
  boot_id          = COALESCE(excluded.boot_id, a.boot_id),
  deregistered_at  = NULL,
  updated_at       = excluded.updated_at`;

/** One heartbeat: a single autocommit UPDATE, stamped by the server's clock. Zero rows: not registered. */
export const PG_HEARTBEAT_SQL = `UPDATE agents SET
  heartbeat_seq     = heartbeat_seq + 1,
  last_heartbeat_at = t.now,
  writer_clock_at   = CAST(:writer_clock AS bigint),
  reported_status   = COALESCE(CAST(:status AS text), 'ok'),
  message           = CAST(:message AS text),
  availability      = CASE CAST(:status AS text) WHEN 'busy' THEN 'busy' WHEN 'ok' THEN 'available' ELSE availability END,
  metadata          = CASE WHEN CAST(:metadata AS jsonb) IS NULL THEN metadata
                           ELSE agentctl_json_patch(metadata, CAST(:metadata AS jsonb)) END,
  progress          = COALESCE(CAST(:progress AS bigint), progress),
  deregistered_at   = NULL,
  updated_at        = t.now
FROM (SELECT agentctl_now_ms() AS now) t
WHERE name = CAST(:name AS text)`;

/** Goodbye: the agent is going away on purpose. Its executing commands are cancelled by the trigger. */
export const PG_GOODBYE_SQL = `UPDATE agents SET
  state          = 'offline',
  state_since    = t.now,
  state_reason   = 'goodbye',
  state_evidence = jsonb_build_object('rule', 'goodbye', 'message', CAST(:message AS text)),
  message        = COALESCE(CAST(:message AS text), message),
  updated_at     = t.now
FROM (SELECT agentctl_now_ms() AS now) t
WHERE name = CAST(:name AS text) AND state <> 'offline'`;

/** The register statement with the contract defaults in force (the documented form uses the built-in 30000, 3, 300000). */
export function pgRegisterSql(defaults: { intervalMs: number; staleMultiplier: number; offlineAfterMs: number }): string {
  return PG_REGISTER_SQL.replace('{{interval_ms}}', String(Math.floor(defaults.intervalMs)))
    .replace('{{stale_multiplier}}', String(Number(defaults.staleMultiplier)))
    .replace('{{offline_after_ms}}', String(Math.floor(defaults.offlineAfterMs)));
}

/** Start a new incarnation of an agent (see ../protocol.ts START_SQL). */
export const PG_START_SQL = `UPDATE agents SET
  incarnation     = incarnation + 1,
  restart_count   = restart_count + CAST(:restarted AS bigint),
  pid             = CAST(:pid AS bigint),
  pid_start_time  = CAST(:pid_start_time AS bigint),
  host            = CAST(:host AS text),
  boot_id         = CAST(:boot_id AS text),
  state           = 'initializing',
  state_since     = t.now,
  state_reason    = CAST(:reason AS text),
  state_evidence  = COALESCE(CAST(:evidence AS jsonb),
                             jsonb_build_object('rule', 'start', 'pid', CAST(:pid AS bigint), 'previous_pid', pid)),
  started_at      = t.now,
  deregistered_at = NULL,
  updated_at      = t.now
FROM (SELECT agentctl_now_ms() AS now) t
WHERE name = CAST(:name AS text)`;

/** Queue a command for an agent. Zero rows inserted means there is no agent by that name. */
export const PG_SEND_SQL = `INSERT INTO commands (agent_id, payload, state, created_at, deadline_at)
SELECT id, CAST(:payload AS text), 'queued', agentctl_now_ms(), CAST(:deadline_at AS bigint)
FROM agents WHERE name = CAST(:name AS text)`;

/** Settle commands whose deadline has passed (for one agent, or all when :name is NULL). */
export const PG_EXPIRE_SQL = `UPDATE commands SET
  state       = CASE state WHEN 'queued' THEN 'cancelled' ELSE 'failed' END,
  error       = CASE state WHEN 'queued' THEN 'deadline passed before the agent claimed it'
                ELSE 'deadline passed while executing' END,
  finished_at = t.now
FROM (SELECT agentctl_now_ms() AS now) t
WHERE state IN ('queued', 'executing') AND deadline_at <= t.now
  AND (CAST(:name AS text) IS NULL OR agent_id = (SELECT id FROM agents WHERE name = CAST(:name AS text)))`;

/**
 * Claim the oldest queued command of an agent (see ../protocol.ts CLAIM_SQL). SKIP LOCKED lets two claimers take
 * two commands instead of queueing on one; the outer `state = 'queued'` makes a claimer that waited on a row
 * another claimer took claim nothing.
 */
export const PG_CLAIM_SQL = `UPDATE commands SET
  state                  = 'executing',
  claim_token            = CAST(:token AS text),
  claimed_by_incarnation = CAST(:incarnation AS bigint),
  claimed_at             = t.now
FROM (SELECT agentctl_now_ms() AS now) t
WHERE commands.state = 'queued'
  AND commands.id = (SELECT c.id FROM commands c JOIN agents a ON a.id = c.agent_id
                     WHERE a.name = CAST(:name AS text) AND a.incarnation = CAST(:incarnation AS bigint)
                       AND a.state NOT IN ('offline', 'failed')
                       AND c.state = 'queued' AND (c.deadline_at IS NULL OR c.deadline_at > t.now)
                     ORDER BY c.id LIMIT 1 FOR UPDATE OF c SKIP LOCKED)
RETURNING commands.id, commands.payload, commands.created_at, commands.deadline_at`;

/** Finish a claimed command: one row changed means accepted; zero means rejected (see ../protocol.ts COMPLETE_SQL). */
export const PG_COMPLETE_SQL = `UPDATE commands SET
  state       = CAST(:state AS text),
  result      = CAST(:result AS text),
  error       = CAST(:error AS text),
  finished_at = agentctl_now_ms()
WHERE id = CAST(:id AS bigint) AND claim_token = CAST(:token AS text) AND state = 'executing'
  AND CAST(:state AS text) IN ('completed', 'failed')`;

/** Hosts whose writers' clocks were off by more than `:max_offset_ms` at their last heartbeat (status, db-check, metrics). */
export const PG_CLOCK_SKEW_SQL = `SELECT host, max(abs(clock_offset_ms)) AS max_offset_ms, count(*) AS agents
FROM agents
WHERE clock_offset_ms IS NOT NULL AND host IS NOT NULL AND abs(clock_offset_ms) > CAST(:max_offset_ms AS bigint)
GROUP BY host ORDER BY host`;
