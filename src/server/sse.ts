import type { ServerResponse } from 'node:http';
import { formatDuration } from '../core/duration.js';
import { safeText } from '../core/text.js';
import { eventsAfter } from '../store/monitor.js';
import type { EventRecord } from '../store/rows.js';
import type { Store } from '../store/store.js';
import { eventJson } from '../cli/commands/history.js';
import { SECURITY_HEADERS } from './http.js';

interface Client {
  res: ServerResponse;
  /** The id of the last event this client was sent. */
  last: number;
}

export interface StreamOptions {
  /** How often the events table is read for new rows on SQLite (a file announces nothing; PostgreSQL's notifications wake the stream). */
  pollMs: number;
  /** A comment line this often keeps proxies and clients from timing the stream out (default 15 s). */
  keepAliveMs: number;
  /** Where it says that PostgreSQL's notifications cannot be received (once each time), and so it reads every pollMs. */
  log?: (line: string) => void;
}

const BATCH = 1000;

/**
 * The live event stream (Server-Sent Events): one reader of the events table by id for every client, woken as the
 * store's watchEvents says (SQLite: every pollMs; PostgreSQL: on each event's notification), each event
 * goes out as `id: <event id>` and `data: <the event's JSON>` (as `history --json` gives it), and a client that comes
 * back with Last-Event-ID gets everything after it first.
 */
export class EventStream {
  private readonly clients = new Set<Client>();
  private readonly store: Store;
  private readonly opts: StreamOptions;
  private cursor: number;
  /** Stops the store's watch (set while someone listens). */
  private unwatch: Promise<() => Promise<void>> | undefined;
  private keepAlive: NodeJS.Timeout | undefined;

  constructor(store: Store, opts: StreamOptions) {
    this.store = store;
    this.opts = opts;
    // Set by the first open (the poller runs only while someone listens).
    this.cursor = 0;
  }

  /** Starts streaming to `res`: the events after `after` (or only new ones when undefined), then live ones. */
  async open(res: ServerResponse, after: number | undefined): Promise<void> {
    res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': 'text/event-stream; charset=utf-8', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
    res.write(': agentctl event stream\nretry: 1000\n\n');
    const client: Client = { res, last: after ?? await this.store.lastEventId() };
    // Catch up now: everything up to the newest row, and at least up to where the poller has sent the others (it
    // may run meanwhile), so its next batch joins without a gap. The last check and joining happen in one turn.
    for (;;) {
      const batch = await eventsAfter(this.store, client.last, BATCH);
      for (const e of batch) this.send(client, e);
      if (batch.length < BATCH && !(this.clients.size && this.cursor > client.last)) break;
    }
    // Alone, it sets where the poller starts; beside others, the poller's cursor stays (send skips what it has had).
    if (!this.clients.size) this.cursor = client.last;
    this.clients.add(client);
    res.on('close', () => this.clients.delete(client));
    this.schedule();
  }

  private send(c: Client, e: EventRecord): void {
    if (e.id <= c.last) return;
    c.res.write(`id: ${e.id}\ndata: ${JSON.stringify(eventJson(e))}\n\n`);
    c.last = e.id;
  }

  private schedule(): void {
    if (!this.unwatch) {
      // On PostgreSQL, a listener that cannot connect makes the store read the table every pollMs until it can.
      const log = this.opts.log;
      this.unwatch = this.store.watchEvents(() => this.poll(), {
        pollMs: this.opts.pollMs,
        ...(log ? { onError: (err: Error) => log(`agentctl serve: live notifications from the database server are unavailable (${safeText(err.message)}); reading new events every ${formatDuration(this.opts.pollMs)} until they are back`) } : {}),
      });
      this.keepAlive = setInterval(() => {
        for (const c of this.clients) c.res.write(': keep-alive\n\n');
      }, this.opts.keepAliveMs);
    }
  }

  /** Reads new events and sends them to every client; the watch stops while nobody listens. */
  private async poll(): Promise<void> {
    if (!this.clients.size) {
      this.stopTimers();
      this.cursor = await this.store.lastEventId();
      return;
    }
    try {
      for (;;) {
        const batch = await eventsAfter(this.store, this.cursor, BATCH);
        for (const e of batch) for (const c of this.clients) this.send(c, e);
        if (batch.length) this.cursor = batch[batch.length - 1]!.id;
        if (batch.length < BATCH) break;
      }
    } catch {
      // A busy or briefly unreadable database: the next wake tries again from the same cursor.
    }
  }

  private stopTimers(): void {
    const unwatch = this.unwatch;
    this.unwatch = undefined;
    if (unwatch) void unwatch.then((stop) => stop());
    clearInterval(this.keepAlive);
    this.keepAlive = undefined;
  }

  /** Ends every stream (on shutdown). */
  close(): void {
    this.stopTimers();
    for (const c of this.clients) c.res.end();
    this.clients.clear();
  }
}
