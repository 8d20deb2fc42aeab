import type { RestartPolicy } from '../store/rows.js';
import { equalJitter } from '../store/retry.js';

/** Restart backoff (the numbers): ×1.5 from 1 s, capped at 60 s, reset after 60 s of stable uptime; `failed` after 10 unstable exits. */
export const RESTART_BACKOFF = { initialMs: 1000, factor: 1.5, maxMs: 60_000, stableAfterMs: 60_000, maxRestarts: 10 };

export type RestartBackoff = typeof RESTART_BACKOFF;

/** The wait before restart number `attempt` (1-based) of an unstable run: initial × factor^(attempt−1), capped. */
export function restartDelay(attempt: number, b: Pick<RestartBackoff, 'initialMs' | 'factor' | 'maxMs'> = RESTART_BACKOFF): number {
  return Math.round(Math.min(b.maxMs, b.initialMs * b.factor ** Math.max(0, attempt - 1)));
}

/** How a process ended: its exit code, or the signal that killed it. */
export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Whether the policy restarts after this exit: `always` does, `on-failure` for a non-zero code or a signal, `never` never. */
export function policyRestarts(policy: RestartPolicy, exit: ExitStatus): boolean {
  if (policy === 'always') return true;
  if (policy === 'never') return false;
  return exit.signal !== null || exit.code !== 0;
}

/**
 * The decision after an exit: counts the unstable exits in a row (an uptime of `stableAfterMs` or more resets the
 * count to 0, and the backoff with it), then restart after the delay, or give up as failed once the count passes
 * `maxRestarts`.
 */
export function nextRestart(unstableBefore: number, uptimeMs: number, maxRestarts: number, b: RestartBackoff = RESTART_BACKOFF): { unstable: number; action: 'restart' | 'fail'; delayMs: number } {
  const unstable = uptimeMs >= b.stableAfterMs ? 0 : unstableBefore + 1;
  if (unstable > maxRestarts) return { unstable, action: 'fail', delayMs: 0 };
  return { unstable, action: 'restart', delayMs: restartDelay(Math.max(1, unstable), b) };
}

/**
 * The wait before reconnect try number `failures` of a library agent: from min(interval, 1 s), doubling, capped at
 * `maxMs`, with equal jitter (half fixed, half random) so that a fleet that lost its database does not return at once.
 */
export function reconnectDelay(failures: number, intervalMs: number, maxMs: number, random: () => number = Math.random): number {
  const exp = Math.min(maxMs, Math.min(intervalMs, 1000) * 2 ** Math.max(0, failures - 1));
  return Math.max(1, equalJitter(exp, random));
}

/** Exit code of a process that a wrapper passes on: the child's code, 128 + the signal's number, or 1 if unknown. */
export function exitCodeOf(exit: ExitStatus, signals: Record<string, number>): number {
  if (exit.code !== null) return exit.code;
  if (exit.signal !== null && signals[exit.signal] !== undefined) return 128 + signals[exit.signal]!;
  return 1;
}
