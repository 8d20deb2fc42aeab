import { ValidationError } from '../errors.js';
import { MAX_DURATION_MS, parseDuration } from './duration.js';
import type { Logger } from './logger.js';
import { validateGroup, validateMetadata, validateName } from './validate.js';

/**
 * The shortest heartbeat interval a HeartbeatAgent accepts. A heartbeat is one write (tens of µs), but under
 * contention a write may wait for another writer's lock; below this a beat would be due again before it could
 * reliably commit, and the agent would spend its process on writes.
 */
export const MIN_INTERVAL_MS = 10;

/** Options of `new HeartbeatAgent(...)`. Durations are milliseconds or strings like '30s'. */
export interface HeartbeatAgentOptions {
  /** The agent's name: 1-128 letters, digits, '.', '_', '-', ':' or '@'. */
  name: string;
  /** Path of the agentctl database (created if missing at start). */
  db: string;
  /** Heartbeat interval (default 30 s, at least 10 ms). */
  interval?: number | string;
  /** Stale after this many intervals without a heartbeat (default 3: seed 004's timeout multiplier). */
  staleAfter?: number;
  /** Offline after this long without a heartbeat (default 300 s; at least one interval). */
  offlineAfter?: number | string;
  group?: string;
  /** Metadata recorded at start (a JSON object, merged into what is stored). */
  meta?: Record<string, unknown>;
  /** Stop on SIGINT/SIGTERM, then let the process exit as it would have (default true). */
  handleSignals?: boolean;
  /** How often to look for commands once onCommand() is set (default: the interval, at most 1 s). */
  commandPoll?: number | string;
  /** How long stop() waits for commands in flight before saying goodbye (default 5 s). */
  shutdownGrace?: number | string;
  /** How long one write may wait for another writer's lock (default: half the interval, 10 ms to 1 s): the timer never blocks the process longer. */
  busyTimeout?: number | string;
  /** Longest wait between reconnect tries (default: the interval, at least 30 s). */
  maxBackoff?: number | string;
  logger?: Logger;
  /** The clock (ms since the epoch); tests pass their own. */
  clock?: () => number;
  /** The process this agent stands for (default: this one). `agentctl run` passes its child's pid. */
  pid?: number;
  /** The command that starts the agent again, for `agentctl restart`. */
  launch?: { argv: string[]; cwd: string };
}

/** The options after validation, with defaults filled in. */
export interface ResolvedAgentOptions {
  name: string;
  db: string;
  intervalMs: number;
  staleMultiplier: number;
  offlineAfterMs: number;
  group: string | undefined;
  metaJson: string | null;
  handleSignals: boolean;
  commandPollMs: number;
  shutdownGraceMs: number;
  busyTimeoutMs: number;
  maxBackoffMs: number;
  pid: number;
  launch: { argv: string[]; cwd: string } | undefined;
}

/** Validates every option and reports all problems together in one ValidationError (exit code 2 in the CLI). */
export function resolveAgentOptions(o: HeartbeatAgentOptions): ResolvedAgentOptions {
  const problems: string[] = [];
  const duration = (v: number | string | undefined, what: string, fallback: number, min = 1): number => {
    if (v === undefined) return fallback;
    let ms: number;
    if (typeof v === 'string') {
      try {
        ms = parseDuration(v, what, { allowZero: true });
      } catch (err) {
        problems.push((err as Error).message);
        return fallback;
      }
    } else ms = v;
    if (!Number.isFinite(ms) || ms < min || ms > MAX_DURATION_MS) {
      problems.push(`invalid ${what} ${JSON.stringify(v)}: must be at least ${min} ms${min === 1 ? ' (a positive duration)' : ''}`);
      return fallback;
    }
    return Math.round(ms);
  };
  // The shared validators, their messages collected so that every problem is named at once.
  const check = (validate: () => unknown) => {
    try {
      validate();
    } catch (err) {
      problems.push((err as Error).message);
    }
  };
  check(() => validateName(o?.name));
  if (typeof o?.db !== 'string' || o.db.trim() === '') problems.push('db: give the path of the agentctl database');
  const intervalMs = duration(o.interval, 'interval', 30_000);
  if (o.interval !== undefined && intervalMs < MIN_INTERVAL_MS && !problems.some((p) => p.startsWith('invalid interval'))) {
    problems.push(`interval ${JSON.stringify(o.interval)} is below ${MIN_INTERVAL_MS} ms: a heartbeat write cannot be sustained that often`);
  }
  const staleMultiplier = o.staleAfter ?? 3;
  if (!Number.isFinite(staleMultiplier) || staleMultiplier < 1 || staleMultiplier > 1000) {
    problems.push(`invalid staleAfter ${JSON.stringify(o.staleAfter)}: a number of intervals from 1 to 1000`);
  }
  const offlineAfterMs = duration(o.offlineAfter, 'offlineAfter', Math.max(300_000, intervalMs * staleMultiplier));
  if (offlineAfterMs < intervalMs) problems.push(`offlineAfter (${offlineAfterMs} ms) is shorter than the interval (${intervalMs} ms): the agent would read offline between its own heartbeats`);
  if (o.group !== undefined) check(() => validateGroup(typeof o.group === 'string' ? o.group : String(o.group)));
  let metaJson: string | null = null;
  if (o.meta !== undefined) check(() => (metaJson = validateMetadata(o.meta, 'meta')));
  const pid = o.pid ?? process.pid;
  if (!Number.isInteger(pid) || pid <= 0) problems.push(`invalid pid ${JSON.stringify(o.pid)}`);
  if (o.launch !== undefined && (!Array.isArray(o.launch.argv) || o.launch.argv.length === 0)) problems.push('launch.argv must be a non-empty array');
  const resolved: ResolvedAgentOptions = {
    name: o?.name,
    db: o?.db,
    intervalMs,
    staleMultiplier,
    offlineAfterMs,
    group: o.group,
    metaJson,
    handleSignals: o.handleSignals ?? true,
    commandPollMs: duration(o.commandPoll, 'commandPoll', Math.min(intervalMs, 1000)),
    shutdownGraceMs: duration(o.shutdownGrace, 'shutdownGrace', 5000, 0),
    busyTimeoutMs: duration(o.busyTimeout, 'busyTimeout', Math.min(1000, Math.max(10, Math.floor(intervalMs / 2))), 0),
    maxBackoffMs: duration(o.maxBackoff, 'maxBackoff', Math.max(intervalMs, 30_000)),
    pid,
    launch: o.launch,
  };
  if (problems.length) throw new ValidationError(problems);
  return resolved;
}
