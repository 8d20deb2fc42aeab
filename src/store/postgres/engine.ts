import type { StoreEngine, WatchOptions } from '../engine.js';
import type { PgExecutor } from './executor.js';
import { EVENTS_CHANNEL, PgListener } from './listen.js';

/** The safety poll beside LISTEN: how long a wake may wait if a notification is ever missed (default: 5 s). */
export const SAFETY_POLL_MS = 5000;

/** A PostgreSQL database beneath a Store: nothing file-specific to check; readers see every commit. */
export class PgEngine implements StoreEngine {
  readonly kind = 'postgres' as const;
  readonly sql: PgExecutor;
  /** The URL it was opened with (for dedicated connections: the lease, LISTEN). Never print it unredacted. */
  readonly url: string;
  readonly writable: boolean;
  readonly snapshot = false;
  promptWriteLock = false;

  constructor(sql: PgExecutor, url: string, opts: { writable: boolean }) {
    this.sql = sql;
    this.url = url;
    this.writable = opts.writable;
  }

  assertSameFile(): void {}

  rawBatches(): undefined {
    return undefined;
  }

  /**
   * LISTEN on a dedicated connection (the events_notify trigger announces every event): a wake on each
   * notification and each time LISTEN comes (back) up (what was announced meanwhile is lost, the caller re-reads
   * the table), and a slow safety poll. While the listener has no connection (the first could not be made, or it
   * was lost) it polls every pollMs, as on SQLite, and keeps trying to listen with backoff; opts.onError hears of
   * each such outage once. It does not fail for want of a listener.
   */
  async watchEvents(wake: () => void, opts: WatchOptions): Promise<() => Promise<void>> {
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    const pollEvery = (ms: number) => {
      clearInterval(timer);
      timer = stopped ? undefined : setInterval(wake, ms);
    };
    const safetyMs = Math.max(opts.pollMs, SAFETY_POLL_MS);
    const listener = new PgListener({
      url: this.url,
      channel: EVENTS_CHANNEL,
      onNotify: wake,
      onReconnect: () => {
        pollEvery(safetyMs);
        wake();
      },
      onError: (err) => {
        if (!listener.connected) pollEvery(opts.pollMs);
        opts.onError?.(err);
      },
      applicationName: 'agentctl listener',
    });
    this.listeners.add(listener);
    const listening = await listener.begin();
    pollEvery(listening ? safetyMs : opts.pollMs);
    // What was written between the caller's last read and LISTEN taking effect is read on this first wake.
    wake();
    return async () => {
      stopped = true;
      clearInterval(timer);
      this.listeners.delete(listener);
      await listener.close();
    };
  }

  /** The listeners of watchEvents still open (closed with the store). */
  private readonly listeners = new Set<PgListener>();

  async close(): Promise<void> {
    const open = [...this.listeners];
    this.listeners.clear();
    await Promise.all(open.map((l) => l.close()));
    return this.sql.close();
  }
}
