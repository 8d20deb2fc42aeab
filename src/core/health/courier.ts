import type { Store } from '../../store/store.js';
import { bumpCounters } from '../../store/monitor.js';
import { type AlertTarget, type DeliveryOptions, type DeliveryResult, deliverAlerts } from './deliver.js';
import type { Logger } from './log.js';

export interface CourierOptions {
  store: Store;
  targets: readonly AlertTarget[];
  /** The loop's wall clock. */
  now: () => number;
  log: Logger;
  /** Per attempt, retries, the round's deadline. */
  delivery?: Pick<DeliveryOptions, 'timeoutMs' | 'retries' | 'deadlineMs'>;
}

const empty = (): DeliveryResult => ({ sent: [], failed: [], unanswered: [] });

/**
 * Sends the outbox beside the health loop, one delivery round at a time (see deliverAlerts): a pass asks for a
 * round and goes on. A pass that asks while a round is in flight gets one more round when it ends, so alerts
 * queued meanwhile go out without waiting for another pass, and no delivery is in flight twice. `abort()` cuts
 * the rounds short (what they had not delivered stays pending); `settled()` hands over what the rounds reported.
 */
export class AlertCourier {
  private readonly o: CourierOptions;
  private running: Promise<void> | null = null;
  private queued: Promise<void> | null = null;
  private done: DeliveryResult = empty();
  private aborter = new AbortController();

  constructor(o: CourierOptions) {
    this.o = o;
  }

  /** Starts a round (or, while one runs, one after it); resolves when a round begun after this call has ended. */
  kick(): Promise<void> {
    if (!this.o.targets.length || this.aborter.signal.aborted) return Promise.resolve();
    if (!this.running) {
      const round = this.round().finally(() => {
        if (this.running === round) this.running = null;
      });
      this.running = round;
      return round;
    }
    this.queued ??= this.running.then(() => {
      this.queued = null;
      return this.kick();
    });
    return this.queued;
  }

  /** Cuts the rounds in flight short and starts no more until `reset()`. */
  abort(): void {
    this.aborter.abort();
  }

  /** Allows rounds again after abort(). */
  reset(): void {
    if (this.aborter.signal.aborted) this.aborter = new AbortController();
  }

  /** Resolves when no round is in flight or asked for. */
  async idle(): Promise<void> {
    while (this.running || this.queued) await (this.queued ?? this.running);
  }

  /** The deliveries settled since the last call. */
  settled(): DeliveryResult {
    const s = this.done;
    this.done = empty();
    return s;
  }

  /** One round: never throws (a failure is logged and its deliveries stay pending); logs and counts what it settled. */
  private async round(): Promise<void> {
    const { store, log } = this.o;
    try {
      const r = await deliverAlerts(store, this.o.targets, this.o.now(), { ...this.o.delivery, signal: this.aborter.signal, now: this.o.now });
      if (r.sent.length || r.failed.length) await store.tx(async (store) => await bumpCounters(store, { alerts_sent_total: r.sent.length, alerts_failed_total: r.failed.length }));
      for (const s of r.sent) log.info(`alert ${s.alertId} delivered to ${s.target}`);
      for (const f of r.failed) log.warn(`alert ${f.alertId} not delivered to ${f.target}: ${f.error}${f.gaveUp ? ' (giving up: too old)' : ' (will retry on the next pass)'}`);
      for (const t of r.unanswered) log.debug(`${t} did not answer in time: its other alerts wait for the next pass`);
      this.done.sent.push(...r.sent);
      this.done.failed.push(...r.failed);
      for (const t of r.unanswered) if (!this.done.unanswered.includes(t)) this.done.unanswered.push(t);
    } catch (err) {
      log.warn(`delivering alerts failed: ${(err as Error).message}; they stay pending`);
    }
  }
}
