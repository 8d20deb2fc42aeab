/** Process exit codes, the one list the CLI, its --help and the README use. */
export const ExitCode = {
  OK: 0,
  /** The operation failed (or `db-check` found problems). */
  FAILED: 1,
  /** Usage error: bad flag, name, duration, JSON, status word. Nothing was written. */
  USAGE: 2,
  /** No agent by that name. */
  NOT_FOUND: 3,
  /** The database is unusable: not SQLite, corrupt, or a schema newer than this build. */
  DB_UNUSABLE: 4,
  /** `run`: the command could not be started (as a shell says). Otherwise `run` exits with its child's code, or 128 + signal. */
  NOT_STARTED: 127,
} as const;

/** Monitoring-plugin codes used by `agentctl check` (Nagios/Icinga convention). */
export const CheckCode = { OK: 0, WARNING: 1, CRITICAL: 2, UNKNOWN: 3 } as const;

export const EXIT_CODES_HELP = `Exit codes:
  0  success
  1  operation failed
  2  usage error (bad flag, name, duration, JSON); nothing was written
  3  agent not found
  4  database unusable (not SQLite, corrupt, or schema newer than this build)
  run: the child's exit code, 128 + signal number if it died of a signal, 127 if it cannot start
  check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN`;
