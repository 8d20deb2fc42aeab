import type pg from 'pg';
import { loadPg } from './pg-module.js';
import { equalJitter } from '../retry.js';
import { type PgOptions, clientConfig, describePgError } from './executor.js';

const { Client } = loadPg();

/** The channel every event is announced on (the events_notify trigger; the payload is the event's id). */
export const EVENTS_CHANNEL = 'agentctl_events';

export interface ListenerOptions extends PgOptions {
  channel: string;
  /** Each notification's payload, in the order the server sent them. */
  onNotify(payload: string): void;
  /**
   * Called after every reconnect (and, after begin() could not connect, once it does), once the channel is listened
   * to: notifications are not durable, so what was sent while nothing listened is lost, and the caller re-reads the
   * table.
   */
  onReconnect?(): void | Promise<void>;
  /**
   * A connection that was lost or could not be made (one line; the URL is redacted): once for each outage, not for
   * every failed attempt to reconnect. `connected` is false when it is called, unless onReconnect threw.
   */
  onError?(err: Error): void;
  /** First delay before reconnecting (default: 100 ms); it grows 2× up to maxBackoffMs (default: 5 s), with jitter. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

const quoteIdent = (name: string) => `"${name.replace(/"/g, '""')}"`;

/**
 * LISTEN on a dedicated client (never a pooled one: a pool hands its connections to other statements, and a
 * notification arrives only on the connection that listens). After a lost connection (or a first one that failed,
 * with begin()) it reconnects with backoff, listens again and calls onReconnect.
 */
export class PgListener {
  private client: pg.Client | undefined;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  private attempt = 0;
  /** Whether the current outage was reported through onError (each is, once). */
  private reported = false;
  /** Reconnects made so far. */
  reconnects = 0;

  constructor(private readonly opts: ListenerOptions) {}

  /** Whether the channel is listened to right now. */
  get connected(): boolean {
    return this.client !== undefined;
  }

  /** The server process of the listening connection (for pg_terminate_backend in tests and db-check). */
  backendPid: number | undefined;

  /** Connects and listens; a first connection that fails throws (the caller says so and may try again). */
  async start(): Promise<void> {
    await this.connect();
  }

  /**
   * Connects and listens like start(), but a first connection that fails does not throw: it is reported through
   * onError and tried again with backoff until it listens (then onReconnect) or is closed. Resolves with whether it
   * listens now.
   */
  async begin(): Promise<boolean> {
    try {
      await this.connect();
      return true;
    } catch (err) {
      this.report(err as Error);
      this.schedule();
      return false;
    }
  }

  private report(err: Error): void {
    if (this.reported || this.closed) return;
    this.reported = true;
    this.opts.onError?.(err);
  }

  private async connect(): Promise<void> {
    const client = new Client(clientConfig({ ...this.opts, applicationName: this.opts.applicationName ?? 'agentctl listener' }));
    let lost = false;
    let established = false;
    const onLost = (err?: Error) => {
      // Before it was established, a failure is connect()'s to report (it throws).
      if (lost || !established) return;
      lost = true;
      if (this.client === client) this.client = undefined;
      this.backendPid = undefined;
      client.removeAllListeners('notification');
      void client.end().catch(() => undefined);
      if (this.closed) return;
      if (err) this.report(describePgError(err, this.opts.url) as Error);
      this.schedule();
    };
    client.on('error', (err) => onLost(err));
    client.on('end', () => onLost(new Error('the connection was closed')));
    client.on('notification', (n) => {
      if (n.channel === this.opts.channel) this.opts.onNotify(n.payload ?? '');
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${quoteIdent(this.opts.channel)}`);
      const r = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      this.backendPid = Number(r.rows[0]!.pid);
    } catch (err) {
      lost = true;
      client.removeAllListeners();
      client.on('error', () => undefined);
      await client.end().catch(() => undefined);
      throw describePgError(err, this.opts.url);
    }
    if (this.closed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.client = client;
    established = true;
    this.attempt = 0;
    this.reported = false;
  }

  private schedule(): void {
    if (this.closed || this.timer) return;
    const min = this.opts.minBackoffMs ?? 100;
    const max = this.opts.maxBackoffMs ?? 5000;
    const delay = equalJitter(Math.min(max, min * 2 ** this.attempt));
    this.attempt++;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.connect().then(
        async () => {
          if (this.closed) return;
          this.reconnects++;
          try {
            await this.opts.onReconnect?.();
          } catch (err) {
            this.opts.onError?.(err as Error);
          }
        },
        (err: Error) => {
          // Already said when the connection was lost (or could not be made): one line per outage.
          this.report(err);
          this.schedule();
        },
      );
    }, delay);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    const c = this.client;
    this.client = undefined;
    if (c) await c.end().catch(() => undefined);
  }
}
