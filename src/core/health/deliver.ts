import { setTimeout as sleep } from 'node:timers/promises';
import { claimDeliveries, finishDelivery } from '../../store/alerts.js';
import type { Store } from '../../store/store.js';
import { type AlertTarget, DEFAULT_TIMEOUT_MS, NoAnswerError } from './targets.js';

export { type AlertTarget, type AttemptOptions, type TargetOptions, alertEnv, execTarget, splitCommand, webhookTarget } from './targets.js';

export interface DeliveryOptions {
  /** Per attempt (default 5 s). */
  timeoutMs?: number;
  /** Further attempts within one round after a failure that was answered (refused, HTTP 5xx, exit 1): default 2. */
  retries?: number;
  /** The whole round ends this long after it began (default: deliveryDeadline(timeout, retries)). */
  deadlineMs?: number;
  /** Deliveries in flight at once to one receiver (default 2) and to all (default 8). */
  perTarget?: number;
  overall?: number;
  /** A delivery not made within this long after its alert was queued is given up (default 24 h). */
  maxAgeMs?: number;
  /** Aborts the round: deliveries in flight are cut short and stay pending. */
  signal?: AbortSignal;
  /** The wall clock for claims and records (default Date.now). */
  now?: () => number;
}

const DEFAULT_RETRIES = 2;
const DEFAULT_PER_TARGET = 2;
const DEFAULT_OVERALL = 8;
/** Beyond the round's deadline, how long a claim lasts: cutting the attempts short and recording them fits in it. */
const CLAIM_GRACE_MS = 10_000;
/** An attempt is not started with less time than this left before the deadline. */
const MIN_ATTEMPT_MS = 100;

export interface DeliveryResult {
  sent: { alertId: number; target: string }[];
  failed: { alertId: number; target: string; error: string; gaveUp: boolean }[];
  /** Receivers that got no answer in time this round: their other deliveries wait for a later round. */
  unanswered: string[];
}

/** The default deadline of a round: one delivery's attempts (timeout × tries, with the backoff between them) and a second to start them. */
export function deliveryDeadline(timeoutMs = DEFAULT_TIMEOUT_MS, retries = DEFAULT_RETRIES): number {
  return timeoutMs * (retries + 1) + 200 * (2 ** retries - 1) + 1000;
}

/** A counting semaphore: at most `n` holders. */
function semaphore(n: number): { acquire(): Promise<() => void> } {
  let free = n;
  const waiting: (() => void)[] = [];
  const release = () => {
    const next = waiting.shift();
    if (next) next();
    else free++;
  };
  return {
    acquire: () =>
      new Promise((resolve) => {
        if (free > 0) {
          free--;
          resolve(release);
        } else waiting.push(() => resolve(release));
      }),
  };
}

/**
 * One delivery round: sends the outbox's open deliveries to these targets, beside the health pass (a pass never
 * waits for it). Each worker claims one delivery at a time (so a racing monitor, or the next round, skips it, and
 * deliveries queued meanwhile are picked up), makes its attempts, and records it sent, pending again for a later
 * round, or failed once it is older than `maxAgeMs`; each delivery is tried (with its retries) once a round. Bounded everywhere: `perTarget` and `overall` deliveries in
 * flight, each attempt by its timeout, the whole round by `deadlineMs` (what is not delivered by then stays
 * pending), and `signal`. A receiver that did not answer in time gets nothing more this round. Its claims last past
 * the deadline, and the round ends by then, so no delivery is ever in flight twice.
 */
export async function deliverAlerts(store: Store, targets: readonly AlertTarget[], now: number, opts: DeliveryOptions = {}): Promise<DeliveryResult> {
  const result: DeliveryResult = { sent: [], failed: [], unanswered: [] };
  if (!targets.length) return result;
  const mono0 = performance.now();
  const clock = opts.now ?? (() => now + (performance.now() - mono0));
  const timeoutOf = (t: AlertTarget) => t.timeoutMs ?? opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const retriesOf = (t: AlertTarget) => t.retries ?? opts.retries ?? DEFAULT_RETRIES;
  const deadlineMs = opts.deadlineMs ?? Math.max(...targets.map((t) => deliveryDeadline(timeoutOf(t), retriesOf(t))));
  const endsAt = mono0 + deadlineMs;
  const left = () => endsAt - performance.now();
  // The round's own end: a deadline, or the caller's signal. Attempts in flight are cut short by it.
  const round = new AbortController();
  const timer = setTimeout(() => round.abort(), deadlineMs);
  const onOuter = () => round.abort();
  if (opts.signal?.aborted) round.abort();
  else opts.signal?.addEventListener('abort', onOuter, { once: true });
  const slots = semaphore(opts.overall ?? DEFAULT_OVERALL);
  const byId = new Map(targets.map((t) => [t.id, t]));

  const tried = new Map<string, number[]>(targets.map((t) => [t.id, []]));
  const worker = async (target: AlertTarget, label: string) => {
    while (!round.signal.aborted && !result.unanswered.includes(label) && left() > MIN_ATTEMPT_MS) {
      const release = await slots.acquire();
      try {
        if (round.signal.aborted || result.unanswered.includes(label) || left() <= MIN_ATTEMPT_MS) return;
        const at = clock();
        // Each delivery at most once a round: one that failed waits for the next round, not for this one's end.
        const [d] = await claimDeliveries(store, [target.id], at, Math.ceil(at + Math.max(0, left()) + CLAIM_GRACE_MS), 1, tried.get(target.id));
        if (!d) return;
        tried.get(target.id)!.push(d.alertId);
        const error = await attempts(target, d.payload);
        if (error === null) {
          await finishDelivery(store, d, 'sent', clock(), null);
          result.sent.push({ alertId: d.alertId, target: label });
          continue;
        }
        // A test alert is one-shot: it tells whether the receivers work now, and is never retried later.
        const gaveUp = d.payload.kind === 'test' || clock() - d.createdAt > (opts.maxAgeMs ?? 86_400_000);
        await finishDelivery(store, d, gaveUp ? 'failed' : 'pending', clock(), error.message);
        result.failed.push({ alertId: d.alertId, target: label, error: error.message, gaveUp });
        if (error instanceof NoAnswerError && !result.unanswered.includes(label)) result.unanswered.push(label);
      } finally {
        release();
      }
    }
  };

  /** One delivery's attempts; null when delivered, else the last error. No more tries after no answer. */
  const attempts = async (target: AlertTarget, payload: Record<string, unknown>): Promise<Error | null> => {
    for (let attempt = 0; ; attempt++) {
      try {
        const timeoutMs = Math.max(1, Math.min(timeoutOf(target), left()));
        await abortable(target.send(payload, { timeoutMs, signal: round.signal }), round.signal, timeoutMs);
        return null;
      } catch (err) {
        const e = err instanceof Error ? err : new Error(String(err));
        const backoff = 200 * 2 ** attempt;
        if (e instanceof NoAnswerError || attempt >= retriesOf(target) || round.signal.aborted || left() < backoff + MIN_ATTEMPT_MS) return e;
        await sleep(backoff, undefined, { signal: round.signal }).catch(() => undefined);
        if (round.signal.aborted) return e;
      }
    }
  };

  // Every worker ends before the round does (a store error in one must not leave others running past it).
  const ends = await Promise.allSettled(
    [...byId.values()].flatMap((t) => Array.from({ length: opts.perTarget ?? DEFAULT_PER_TARGET }, () => worker(t, t.label ?? t.id))),
  );
  clearTimeout(timer);
  opts.signal?.removeEventListener('abort', onOuter);
  const broken = ends.find((e): e is PromiseRejectedResult => e.status === 'rejected');
  if (broken) throw broken.reason;
  return result;
}

/**
 * `p`, or a NoAnswerError once `signal` aborts or `timeoutMs` passes: a target from elsewhere that ignores its
 * signal cannot hold the round (its delivery stays pending).
 */
function abortable(p: Promise<void>, signal: AbortSignal, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    // The target's own timeout normally answers first; this one is the backstop.
    const timer = setTimeout(() => stop(new NoAnswerError(`no answer within ${timeoutMs}ms`)), timeoutMs + 1000);
    const onAbort = () => stop(new NoAnswerError('cut short: the monitor is stopping or the pass ran out of time'));
    const stop = (err?: Error) => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve();
    };
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    void p.then(() => stop(), (err: unknown) => stop(err instanceof Error ? err : new Error(String(err))));
  });
}
