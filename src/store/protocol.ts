/**
 * The SQL every writer of the database runs, in any language. state_database.md quotes these statements verbatim
 * (a test checks it), so a Python or shell agent and this code write exactly the same way. Named parameters
 * (:name) bind through Python's sqlite3 (a dict), the sqlite3 shell (.parameter set) and better-sqlite3 (an object).
 * Every parameter must be bound; NULL means "not given".
 */

/** Register an agent, or update its contract and identity. A new pid (another process) or a returning deregistered agent starts a new incarnation in 'initializing'. */
export const REGISTER_SQL = `INSERT INTO agents (name, group_name, interval_ms, stale_multiplier, offline_after_ms,
                    pid, pid_start_time, host, boot_id, metadata, launch_argv, launch_cwd,
                    state, state_since, state_reason, created_at, started_at, updated_at)
VALUES (:name, :group_name,
        COALESCE(:interval_ms, {{interval_ms}}), COALESCE(:stale_multiplier, {{stale_multiplier}}),
        COALESCE(:offline_after_ms, {{offline_after_ms}}),
        :pid, :pid_start_time, :host, :boot_id, json_patch('{}', COALESCE(:metadata, '{}')),
        :launch_argv, :launch_cwd, 'initializing', :now, 'registered', :now, :now, :now)
ON CONFLICT (name) DO UPDATE SET
  group_name       = COALESCE(excluded.group_name, group_name),
  interval_ms      = COALESCE(:interval_ms, interval_ms),
  stale_multiplier = COALESCE(:stale_multiplier, stale_multiplier),
  offline_after_ms = COALESCE(:offline_after_ms, offline_after_ms),
  metadata         = CASE WHEN :metadata IS NULL THEN metadata ELSE json_patch(metadata, :metadata) END,
  launch_argv      = COALESCE(excluded.launch_argv, launch_argv),
  launch_cwd       = COALESCE(excluded.launch_cwd, launch_cwd),
  incarnation      = incarnation + (deregistered_at IS NOT NULL
                       OR (:pid IS NOT NULL AND (:pid IS NOT pid OR :pid_start_time IS NOT pid_start_time))),
  state            = CASE WHEN deregistered_at IS NOT NULL
                       OR (:pid IS NOT NULL AND (:pid IS NOT pid OR :pid_start_time IS NOT pid_start_time))
                       THEN 'initializing' ELSE state END,
  state_since      = CASE WHEN deregistered_at IS NOT NULL
                       OR (:pid IS NOT NULL AND (:pid IS NOT pid OR :pid_start_time IS NOT pid_start_time))
                       THEN :now ELSE state_since END,
  state_reason     = CASE WHEN deregistered_at IS NOT NULL THEN 're-registered'
                       WHEN :pid IS NOT NULL AND (:pid IS NOT pid OR :pid_start_time IS NOT pid_start_time)
                       THEN 'registered by a new process' ELSE state_reason END,
  state_evidence   = CASE WHEN deregistered_at IS NOT NULL
                       OR (:pid IS NOT NULL AND (:pid IS NOT pid OR :pid_start_time IS NOT pid_start_time))
                       THEN json_object('rule', 'register', 'pid', :pid, 'previous_pid', pid) ELSE state_evidence END,
  started_at       = CASE WHEN deregistered_at IS NOT NULL
                       OR (:pid IS NOT NULL AND (:pid IS NOT pid OR :pid_start_time IS NOT pid_start_time))
                       THEN :now ELSE started_at END,
  pid              = COALESCE(:pid, pid),
  pid_start_time   = CASE WHEN :pid IS NULL THEN pid_start_time ELSE :pid_start_time END,
  host             = COALESCE(:host, host),
  boot_id          = COALESCE(:boot_id, boot_id),
  deregistered_at  = NULL,
  updated_at       = :now`;

/** One heartbeat: a single autocommit UPDATE. Zero rows changed means the agent is not registered. The triggers make the state transitions. */
export const HEARTBEAT_SQL = `UPDATE agents SET
  heartbeat_seq     = heartbeat_seq + 1,
  last_heartbeat_at = :now,
  reported_status   = COALESCE(:status, 'ok'),
  message           = :message,
  availability      = CASE :status WHEN 'busy' THEN 'busy' WHEN 'ok' THEN 'available' ELSE availability END,
  metadata          = CASE WHEN :metadata IS NULL THEN metadata ELSE json_patch(metadata, :metadata) END,
  progress          = COALESCE(:progress, progress),
  deregistered_at   = NULL,
  updated_at        = :now
WHERE name = :name`;

/** Goodbye: the agent is going away on purpose. Its executing commands are cancelled by the trigger. */
export const GOODBYE_SQL = `UPDATE agents SET
  state          = 'offline',
  state_since    = :now,
  state_reason   = 'goodbye',
  state_evidence = json_object('rule', 'goodbye', 'message', :message),
  message        = COALESCE(:message, message),
  updated_at     = :now
WHERE name = :name AND state <> 'offline'`;

/** The register statement with the contract defaults in force (the documented form uses the built-in 30000, 3, 300000). */
export function registerSql(defaults: { intervalMs: number; staleMultiplier: number; offlineAfterMs: number }): string {
  return REGISTER_SQL.replace('{{interval_ms}}', String(Math.floor(defaults.intervalMs)))
    .replace('{{stale_multiplier}}', String(Number(defaults.staleMultiplier)))
    .replace('{{offline_after_ms}}', String(Math.floor(defaults.offlineAfterMs)));
}

/**
 * Start a new incarnation of an agent: a process (re)starting under a name it already has. The register statement
 * starts one by itself when the pid differs; this one is for the same process starting again (a library agent's
 * start() after stop()) and for a wrapper that restarts its child (then :restarted is 1 and restart_count counts
 * it). Executing commands of earlier incarnations are cancelled by a trigger.
 */
export const START_SQL = `UPDATE agents SET
  incarnation     = incarnation + 1,
  restart_count   = restart_count + :restarted,
  pid             = :pid,
  pid_start_time  = :pid_start_time,
  host            = :host,
  boot_id         = :boot_id,
  state           = 'initializing',
  state_since     = :now,
  state_reason    = :reason,
  state_evidence  = COALESCE(:evidence, json_object('rule', 'start', 'pid', :pid, 'previous_pid', pid)),
  started_at      = :now,
  deregistered_at = NULL,
  updated_at      = :now
WHERE name = :name`;

/** Queue a command for an agent. Zero rows inserted means there is no agent by that name. */
export const SEND_SQL = `INSERT INTO commands (agent_id, payload, state, created_at, deadline_at)
SELECT id, :payload, 'queued', :now, :deadline_at FROM agents WHERE name = :name`;

/**
 * Settle commands whose deadline has passed (for one agent, or all when :name is NULL): a queued one is cancelled,
 * an executing one failed. An agent runs it before claiming, so it never starts work nobody waits for any more.
 */
export const EXPIRE_SQL = `UPDATE commands SET
  state       = CASE state WHEN 'queued' THEN 'cancelled' ELSE 'failed' END,
  error       = CASE state WHEN 'queued' THEN 'deadline passed before the agent claimed it'
                ELSE 'deadline passed while executing' END,
  finished_at = :now
WHERE state IN ('queued', 'executing') AND deadline_at <= :now
  AND (:name IS NULL OR agent_id = (SELECT id FROM agents WHERE name = :name))`;

/**
 * Claim the oldest queued command of an agent: queued → executing, fenced by a token the claimer makes up (a random
 * UUID) and by the incarnation it belongs to. Returns the claimed row, or nothing. An incarnation that is no longer
 * current, or an agent that is offline or failed, claims nothing.
 */
export const CLAIM_SQL = `UPDATE commands SET
  state                  = 'executing',
  claim_token            = :token,
  claimed_by_incarnation = :incarnation,
  claimed_at             = :now
WHERE id = (SELECT c.id FROM commands c JOIN agents a ON a.id = c.agent_id
            WHERE a.name = :name AND a.incarnation = :incarnation AND a.state NOT IN ('offline', 'failed')
              AND c.state = 'queued' AND (c.deadline_at IS NULL OR c.deadline_at > :now)
            ORDER BY c.id LIMIT 1)
RETURNING id, payload, created_at, deadline_at`;

/**
 * Finish a claimed command: :state is 'completed' (with :result) or 'failed' (with :error). One row changed means
 * accepted; zero means rejected — the command was cancelled (its agent went offline or restarted, an operator
 * cancelled it, its deadline passed) or the token is stale (another claim holds it). The caller must drop its result.
 */
export const COMPLETE_SQL = `UPDATE commands SET
  state       = :state,
  result      = :result,
  error       = :error,
  finished_at = :now
WHERE id = :id AND claim_token = :token AND state = 'executing' AND :state IN ('completed', 'failed')`;
