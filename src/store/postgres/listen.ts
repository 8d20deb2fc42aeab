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
   * Called after every reconnect, once the channel is listened to again: notifications are not durable, so what
   * was sent while the connection was down is lost, and the caller re-reads the table.
   */
  onReconnect?(): void | Promise<void>;
  /** A lost connection or a failed reconnect (one line; the URL is redacted). */
  onError?(err: Error): void;
  /** First delay before reconnecting (default: 100 ms); it grows 2× up to maxBackoffMs (default: 5 s), with jitter. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

const quoteIdent = (name: string) => `"${name.replace(/"/g, '""')}"`;

/**
 * LISTEN on a dedicated client (never a pooled one: a pool hands its connections to other statements, and a
 * notification arrives only on the connection that listens). After a lost connection it reconnects with backoff,
 * listens again and calls onReconnect.
 */
export class PgListener {
  private client: pg.Client | undefined;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  private attempt = 0;
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
      if (err) this.opts.onError?.(describePgError(err, this.opts.url) as Error);
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
          this.opts.onError?.(err);
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
