import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { ValidationError } from './errors.js';
import { parseDuration } from './core/duration.js';
import { redactUrl } from './core/redact.js';
import { isPostgresUrl } from './store/engine.js';

/** Defaults from the seeds: 30 s heartbeats, stale at 3 × interval, offline after 300 s. */
export const DEFAULTS = {
  intervalMs: 30_000,
  staleMultiplier: 3,
  offlineAfterMs: 300_000,
  busyTimeoutMs: 5_000,
  lockStaleMs: 30_000,
  retryAttempts: 3,
  backoffFactor: 1.5,
  logLevel: 'info' as LogLevel,
};

/** The shortest lock stale period accepted: a holder refreshes its lock every second or so. */
export const MIN_LOCK_STALE_MS = 2000;

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** True if a message at level `at` is written under the threshold `level`. */
export function logsAt(at: LogLevel, level: LogLevel): boolean {
  return LOG_LEVELS.indexOf(at) >= LOG_LEVELS.indexOf(level);
}

/** The contract an agent gets when it does not say otherwise. */
export interface ContractDefaults {
  intervalMs: number;
  staleMultiplier: number;
  offlineAfterMs: number;
}

export interface Config {
  /** The SQLite file's absolute path, or a PostgreSQL URL exactly as given (never resolved as a path). */
  dbPath: string;
  /** dbPath as printed: a URL with its password redacted. */
  dbLabel: string;
  /** Whether dbPath is a PostgreSQL URL (no file: nothing is created, locked or owned beside it). */
  dbIsUrl: boolean;
  /** Where dbPath came from: 'flag', 'AGENTCTL_DB', 'DATABASE_PATH' or 'default'. */
  dbPathSource: 'flag' | 'AGENTCTL_DB' | 'DATABASE_PATH' | 'default';
  busyTimeoutMs: number;
  /** After this long without a refresh, an exclusive lock (health loop, maintenance) counts as abandoned. */
  lockStaleMs: number;
  retryAttempts: number;
  backoffFactor: number;
  contract: ContractDefaults;
  logDir: string;
  logLevel: LogLevel;
  /**
   * Root acts (launch commands, signals) for a database that others may write: strict mode off. From
   * --allow-shared-db, else AGENTCTL_ALLOW_SHARED_DB (1/true/yes or 0/false/no); off by default.
   */
  allowSharedDb: boolean;
}

export interface ConfigFlags {
  db?: string | undefined;
  logDir?: string | undefined;
  allowSharedDb?: boolean | undefined;
}

type Env = Record<string, string | undefined>;

/** The per-user default database: $XDG_STATE_HOME/agentctl/agentctl.db, else ~/.local/state/agentctl/agentctl.db. */
export function defaultDbPath(env: Env, home: string = homedir()): string {
  const base = env.XDG_STATE_HOME?.trim() || join(home, '.local', 'state');
  return join(base, 'agentctl', 'agentctl.db');
}

/**
 * Resolves flags > AGENTCTL_* environment > the seeds' variable names > defaults. Pure: `env` and `cwd` are arguments.
 * Every invalid value is reported at once in one ValidationError.
 */
export function resolveConfig(flags: ConfigFlags, env: Env, cwd: string = process.cwd(), home?: string): Config {
  const problems: string[] = [];
  const pick = (...names: string[]): [string, string] | undefined => {
    for (const n of names) {
      const v = env[n];
      if (v !== undefined && v.trim() !== '') return [n, v.trim()];
    }
    return undefined;
  };
  const duration = (fallback: number, ...names: string[]): number => {
    const found = pick(...names);
    if (!found) return fallback;
    try {
      return parseDuration(found[1], found[0]);
    } catch (err) {
      problems.push((err as Error).message);
      return fallback;
    }
  };
  const number = (fallback: number, min: number, integer: boolean, ...names: string[]): number => {
    const found = pick(...names);
    if (!found) return fallback;
    const n = Number(found[1]);
    if (!Number.isFinite(n) || n < min || (integer && !Number.isInteger(n))) {
      problems.push(`invalid ${found[0]} '${found[1]}': must be ${integer ? 'a whole number' : 'a number'} of at least ${min}`);
      return fallback;
    }
    return n;
  };

  let dbPath: string;
  let dbPathSource: Config['dbPathSource'];
  const envDb = pick('AGENTCTL_DB', 'DATABASE_PATH');
  // A PostgreSQL URL is kept as given: no path resolution, no ~ expansion, nothing made beside it.
  const asDb = (v: string) => (isPostgresUrl(v.trim()) ? v.trim() : resolve(cwd, v));
  if (flags.db !== undefined && flags.db.trim() !== '') {
    dbPath = asDb(flags.db);
    dbPathSource = 'flag';
  } else if (flags.db !== undefined) {
    problems.push('invalid --db: the path is empty');
    dbPath = defaultDbPath(env, home);
    dbPathSource = 'default';
  } else if (envDb) {
    dbPath = asDb(envDb[1]);
    dbPathSource = envDb[0] as Config['dbPathSource'];
  } else {
    dbPath = defaultDbPath(env, home);
    dbPathSource = 'default';
  }

  const intervalMs = duration(DEFAULTS.intervalMs, 'AGENTCTL_HEARTBEAT_INTERVAL', 'HEARTBEAT_INTERVAL');
  let staleMultiplier = number(DEFAULTS.staleMultiplier, 1, false, 'AGENTCTL_STALE_MULTIPLIER');
  // Seed 002 gives STALE_THRESHOLD as seconds; it becomes the multiplier of the interval.
  const seedStale = pick('AGENTCTL_STALE_MULTIPLIER') ? undefined : pick('STALE_THRESHOLD');
  if (seedStale) {
    try {
      staleMultiplier = Math.max(1, parseDuration(seedStale[1], 'STALE_THRESHOLD') / intervalMs);
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  const offlineAfterMs = duration(DEFAULTS.offlineAfterMs, 'AGENTCTL_OFFLINE_AFTER');
  const busyTimeoutMs = duration(DEFAULTS.busyTimeoutMs, 'AGENTCTL_LOCK_TIMEOUT', 'LOCK_TIMEOUT');
  const lockStaleMs = duration(DEFAULTS.lockStaleMs, 'AGENTCTL_LOCK_STALE');
  if (lockStaleMs < MIN_LOCK_STALE_MS) problems.push(`invalid AGENTCTL_LOCK_STALE: must be at least 2s`);
  const retryAttempts = number(DEFAULTS.retryAttempts, 1, true, 'AGENTCTL_RETRY_ATTEMPTS', 'RETRY_ATTEMPTS');
  const backoffFactor = number(DEFAULTS.backoffFactor, 1, false, 'AGENTCTL_BACKOFF_FACTOR', 'BACKOFF_FACTOR');

  let logLevel = DEFAULTS.logLevel;
  const lvl = pick('AGENTCTL_LOG_LEVEL', 'LOG_LEVEL');
  if (lvl) {
    const v = lvl[1].toLowerCase().replace(/^warning$/, 'warn');
    if ((LOG_LEVELS as readonly string[]).includes(v)) logLevel = v as LogLevel;
    else problems.push(`invalid ${lvl[0]} '${lvl[1]}': use one of ${LOG_LEVELS.join(', ')}`);
  }
  const envLogDir = pick('AGENTCTL_LOG_DIR');
  const dbIsUrl = isPostgresUrl(dbPath);
  // Beside a database server there is no directory: the logs go where the per-user default database would be.
  const logHome = dbIsUrl ? defaultDbPath(env, home) : dbPath;
  const logDir = flags.logDir ? resolve(cwd, flags.logDir) : envLogDir ? resolve(cwd, envLogDir[1]) : join(dirname(logHome), 'logs');

  let allowSharedDb = false;
  const shared = pick('AGENTCTL_ALLOW_SHARED_DB');
  if (flags.allowSharedDb) allowSharedDb = true;
  else if (shared) {
    const v = shared[1].toLowerCase();
    if (['1', 'true', 'yes'].includes(v)) allowSharedDb = true;
    else if (!['0', 'false', 'no'].includes(v)) problems.push(`invalid AGENTCTL_ALLOW_SHARED_DB '${shared[1]}': use 1 or 0`);
  }

  if (problems.length) throw new ValidationError(problems);
  return {
    dbPath,
    dbLabel: dbIsUrl ? redactUrl(dbPath) : dbPath,
    dbIsUrl,
    dbPathSource,
    busyTimeoutMs,
    lockStaleMs,
    retryAttempts,
    backoffFactor,
    contract: { intervalMs, staleMultiplier, offlineAfterMs },
    logDir,
    logLevel,
    allowSharedDb,
  };
}
