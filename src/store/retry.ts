/** Options for retrying a whole transaction when the database reports contention (SQLITE_BUSY*, or a serialization failure on PostgreSQL). */
export interface RetryPolicy {
  /** Total tries, at least 1 (seed default 3). */
  attempts: number;
  /** Growth of the delay between tries (seed default 1.5). */
  factor: number;
  /** Delay before the second try, before jitter. */
  baseDelayMs: number;
}

/** True for SQLITE_BUSY and its extended codes (BUSY_SNAPSHOT, BUSY_RECOVERY, BUSY_TIMEOUT) and SQLITE_LOCKED. */
export function isBusyError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED'));
}

/** "Equal jitter" around a delay: half of it fixed, half random, so racing waiters spread out but never retry at once. */
export function equalJitter(ms: number, random: () => number = Math.random): number {
  return Math.round(ms / 2 + random() * (ms / 2));
}

/** The jittered exponential delay before try number `attempt` (1-based, so attempt 2 waits about baseDelayMs). */
export function backoffDelay(policy: RetryPolicy, attempt: number, random: () => number = Math.random): number {
  return equalJitter(policy.baseDelayMs * policy.factor ** Math.max(0, attempt - 2), random);
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));
/** Blocks the thread for `ms`; better-sqlite3 is synchronous, so its retries are too. */
export function sleepSync(ms: number): void {
  if (ms > 0) Atomics.wait(sleeper, 0, 0, ms);
}
