import type Database from 'better-sqlite3';
import { AgentNotFoundError, UsageError } from '../errors.js';
import { GOODBYE_SQL, HEARTBEAT_SQL, registerSql } from './protocol.js';
import { PG_GOODBYE_SQL, PG_HEARTBEAT_SQL, pgRegisterSql } from './postgres/protocol.js';
import type { StoreEngine, WatchOptions } from './engine.js';
import { SqliteEngine } from './sqlite/engine.js';
import type { RetryPolicy } from './retry.js';
import { type AgentRecord, type AgentState, type Availability, EVENT_COLUMNS, type EventRecord, toAgentRecord, toEventRecord } from './rows.js';
import { DEFAULTS } from '../config.js';
import type { Dialect, Sql, SqlArgs } from './sql.js';
import { containsText } from './dialect.js';

export interface StoreOptions {
  path: string;
  /** busy_timeout in ms (default 5000). */
  busyTimeoutMs?: number;
  retryAttempts?: number;
  backoffFactor?: number;
  /** 'create' (default) makes the file if missing; 'existing' refuses a missing file; 'read' opens an existing one read-only. */
  mode?: 'create' | 'existing' | 'read';
  /** Create the parent directory if missing (the CLI does this only for its per-user default path). */
  createDir?: boolean;
  /** Apply pending migrations (default true); false throws MigrationNeededError instead, leaving the file as it is. */
  migrate?: boolean;
  /** Contract for agents registered without one (defaults: 30 s, × 3, 300 s). */
  contract?: { intervalMs: number; staleMultiplier: number; offlineAfterMs: number };
  /**
   * How often a single-statement write (a heartbeat) checks that the path still names the file this connection
   * opened (default 100 ms; 0: before every write). Transactions always check.
   */
  fileCheckEveryMs?: number;
}

/** Fields of a registration; undefined/null leaves an existing agent's value as it is. */
export interface RegisterParams {
  name: string;
  group?: string | null;
  intervalMs?: number | null;
  staleMultiplier?: number | null;
  offlineAfterMs?: number | null;
  pid?: number | null;
  pidStartTime?: number | null;
  host?: string | null;
  bootId?: string | null;
  /** Merged into the stored metadata as a JSON merge patch (RFC 7396): a null value removes a key. */
  metadataJson?: string | null;
  launch?: { argv: string[]; cwd: string } | null;
}

export interface HeartbeatParams {
  name: string;
  status?: 'ok' | 'busy' | 'error' | null;
  message?: string | null;
  metadataJson?: string | null;
  progress?: number | null;
  /** The writer's own clock (ms) at the heartbeat, kept beside the server's stamp to report skewed hosts (PostgreSQL). */
  writerClock?: number | null;
}

export interface TransitionParams {
  to: AgentState;
  reason: string;
  evidence?: Record<string, unknown> | null;
  maintenanceUntil?: number | null;
  /** Also set these columns in the same write. */
  availability?: Availability;
  deregister?: boolean;
  /** Write an event even when the state stays the same (deregistering an offline agent, extending maintenance). */
  alwaysEvent?: boolean;
  /**
   * With alwaysEvent and an unchanged state: the event's own reason and evidence, for an act that leaves the state's
   * reason as it was (an operator setting availability).
   */
  event?: { reason: string; evidence: Record<string, unknown> | null };
}

export interface EventQuery {
  agent?: string;
  afterId?: number;
  sinceMs?: number;
  /** The newest `limit` events (returned oldest first). */
  limit?: number;
}

/**
 * Rows per batch of a whole-fleet read: small enough that a batch's output (a status --json row is over 1 KB) stays
 * in the young generation, large enough that its await costs nothing per row. Readers with small rows ask for more.
 */
export const ROW_BATCH = 32;

export const DEFAULT_CONTRACT = { intervalMs: DEFAULTS.intervalMs, staleMultiplier: DEFAULTS.staleMultiplier, offlineAfterMs: DEFAULTS.offlineAfterMs };

/** The shared state database: one connection with the pragmas, retries and statements every agentctl process uses. */
/** Which agents a listing reads: deregistered ones only if asked, one group, or names containing a text. */
export interface AgentFilter {
  includeDeregistered?: boolean;
  group?: string;
  /** A substring of the name, any case (agent names are ASCII), matched as text, never as a LIKE pattern. */
  nameContains?: string;
}

/** The WHERE clause (with its leading space, or empty) and arguments of `f`. */
function agentWhere(f: AgentFilter, dialect: Dialect): { where: string; args: unknown[] } {
  const conds: string[] = [];
  const args: unknown[] = [];
  if (!f.includeDeregistered) conds.push('deregistered_at IS NULL');
  if (f.group !== undefined) {
    conds.push('group_name = ?');
    args.push(f.group);
  }
  if (f.nameContains) {
    conds.push(`${containsText(dialect, 'lower(name)', 'lower(?)')}`);
    args.push(f.nameContains);
  }
  return { where: conds.length ? ` WHERE ${conds.join(' AND ')}` : '', args };
}

export class Store {
  readonly path: string;
  readonly retry: RetryPolicy;
  readonly contract: { intervalMs: number; staleMultiplier: number; offlineAfterMs: number };
  /**
   * The store's SQL: every read and write goes through it. Inside tx() and read() it is the transaction's (see
   * scoped), so that the store modules, given the Store of a transaction, run their statements in it.
   */
  readonly sql: Sql;
  /** What is specific to the engine beneath (an SQLite file, a PostgreSQL server). */
  readonly engine: StoreEngine;

  /** The register statement with this store's contract defaults filled in, in the engine's dialect. */
  readonly registerSql: string;
  private readonly heartbeatSql: string;
  private readonly goodbyeSql: string;

  constructor(sql: Sql, engine: StoreEngine, path: string, retry: RetryPolicy, contract: Store['contract']) {
    this.sql = sql;
    this.engine = engine;
    this.path = path;
    this.retry = retry;
    this.contract = contract;
    const pg = sql.dialect === 'postgres';
    this.registerSql = pg ? pgRegisterSql(contract) : registerSql(contract);
    this.heartbeatSql = pg ? PG_HEARTBEAT_SQL : HEARTBEAT_SQL;
    this.goodbyeSql = pg ? PG_GOODBYE_SQL : GOODBYE_SQL;
  }

  /** The SQLite connection beneath, for the tools that work on the file itself; a UsageError on any other engine. */
  get db(): Database.Database {
    if (this.engine instanceof SqliteEngine) return this.engine.db;
    throw new UsageError('this works only on an SQLite database file, not on a PostgreSQL database');
  }

  /** Whether this store is on an SQLite file (the file tools, the lock files, backups work only there). */
  get isSqlite(): boolean {
    return this.engine.kind === 'sqlite';
  }

  /**
   * Take the write lock by trying every few milliseconds instead of through SQLite's busy handler (see beginPromptly),
   * so that a stream of heartbeats cannot hold this connection off for seconds. The health loop turns it on.
   */
  get promptWriteLock(): boolean {
    return this.engine.promptWriteLock;
  }

  set promptWriteLock(v: boolean) {
    this.engine.promptWriteLock = v;
  }

  /**
   * `fn` in one write transaction (retried as a whole when the database is busy), given this store bound to the
   * transaction: everything `fn` reads and writes through that store is one atomic change. Use it for every
   * read-then-write.
   */
  tx<T>(fn: (store: Store) => Promise<T>): Promise<T> {
    return this.sql.tx((tx) => fn(this.scoped(tx)));
  }

  /**
   * `fn` in one read transaction (SQLite: BEGIN DEFERRED, no write lock, and it works on a file this user may only
   * read), so that the several queries of one document see one snapshot. Inside a transaction already, it joins it.
   */
  read<T>(fn: (store: Store) => Promise<T>): Promise<T> {
    return this.sql.read((tx) => fn(this.scoped(tx)));
  }

  /**
   * What `make` yields, produced inside one read transaction (see read) and handed out as the caller consumes it: a
   * document written as it is read (status --json, the map, the metrics) sees one snapshot, whatever its size.
   */
  async *readStream<T>(make: (store: Store) => AsyncIterable<T>): AsyncGenerator<T> {
    // The producer runs inside read(); each piece waits there until the consumer has taken the one before.
    let give: ((r: IteratorResult<T> | Error) => void) | undefined;
    let taken: (() => void) | undefined;
    let stop = false;
    const next = () => new Promise<IteratorResult<T> | Error>((resolve) => (give = resolve));
    let pending = next();
    const done = this.read(async (s) => {
      for await (const piece of make(s)) {
        // The consumer stopped early: end (and commit) at once. Checked in the same turn as the wait is set up.
        if (stop) return;
        const ack = new Promise<void>((resolve) => (taken = resolve));
        give!({ value: piece, done: false });
        await ack;
        if (stop) return;
      }
    }).then(
      () => give!({ value: undefined, done: true }),
      (err: unknown) => give!(err instanceof Error ? err : new Error(String(err))),
    );
    try {
      for (;;) {
        const r = await pending;
        if (r instanceof Error) throw r;
        if (r.done) break;
        pending = next();
        const ack = taken!;
        yield r.value;
        ack();
      }
    } finally {
      stop = true;
      taken?.();
      await done;
    }
  }

  /** The time of a write or a judgement, by the database's clock (SQLite: this host's). */
  now(): Promise<number> {
    return this.sql.now();
  }

  /** This store with `sql` bound to a transaction (everything else shared). */
  private scoped(tx: Sql): Store {
    if (tx === this.sql) return this;
    const s = Object.create(this) as Store;
    Object.defineProperty(s, 'sql', { value: tx });
    return s;
  }

  /** Throws DatabaseReplacedError if the path no longer names the file this connection has open (SQLite; a server has nothing to check). */
  assertSameFile(): void {
    this.engine.assertSameFile();
  }

  /** Whether this store may write (false for a read-only connection). */
  get writable(): boolean {
    return this.engine.writable;
  }

  /** Whether this connection reads an immutable snapshot (a reader without write access): later writes are not seen. */
  get snapshot(): boolean {
    return this.engine.snapshot;
  }

  /**
   * Registers an agent or updates its contract and identity (idempotent). Returns the stored record, and whether
   * this call created it (decided under the write lock).
   */
  register(p: RegisterParams, now: number): Promise<{ registered: boolean; agent: AgentRecord }> {
    return this.tx(async (s) => {
      const registered = !(await s.exists(p.name));
      await s.sql.run(this.registerSql, registerBindings(p, now));
      return { registered, agent: (await s.getAgent(p.name))! };
    });
  }

  private async exists(name: string): Promise<boolean> {
    return (await this.sql.get('SELECT 1 FROM agents WHERE name = ?', [name])) !== undefined;
  }

  /**
   * The heartbeat statement alone, as one autocommit UPDATE (with the busy retry and the file check). False means
   * no agent has that name, and nothing was written.
   */
  async heartbeatRow(p: HeartbeatParams, now: number): Promise<boolean> {
    return (await this.sql.run(this.heartbeatSql, heartbeatBindings(p, now, this.sql.dialect))).changes === 1;
  }

  /**
   * Records one heartbeat: a single autocommit UPDATE. An unregistered name is registered first (with the default
   * contract) in one transaction. Returns whether it registered the agent. Throws if the write did not commit.
   */
  async heartbeat(p: HeartbeatParams, now: number): Promise<{ registered: boolean }> {
    if (await this.heartbeatRow(p, now)) return { registered: false };
    const bindings = heartbeatBindings(p, now, this.sql.dialect);
    return this.tx(async (s) => {
      const existed = (await s.sql.run(this.heartbeatSql, bindings)).changes === 1;
      if (existed) return { registered: false };
      await s.sql.run(this.registerSql, registerBindings({ name: p.name }, now));
      await s.sql.run(this.heartbeatSql, bindings);
      return { registered: true };
    });
  }

  /**
   * Registration (or contract update) and a heartbeat in one transaction: for heartbeats that also set the contract
   * or pid. `registered` says whether this call created the agent (decided under the write lock).
   */
  registerAndHeartbeat(r: RegisterParams, h: HeartbeatParams, now: number): Promise<{ registered: boolean; agent: AgentRecord }> {
    return this.tx(async (s) => {
      const existed = await s.exists(r.name);
      await s.sql.run(this.registerSql, registerBindings(r, now));
      await s.sql.run(this.heartbeatSql, heartbeatBindings(h, now, this.sql.dialect));
      return { registered: !existed, agent: (await s.getAgent(r.name))! };
    });
  }

  /** The agent says goodbye: offline now, with an event; its executing commands are cancelled. */
  goodbye(name: string, message: string | null, now: number, opts: { incarnation?: number } = {}): Promise<boolean> {
    return this.tx(async (s) => {
      const a = await s.getAgent(name);
      // An agent saying goodbye for its own incarnation: a missing row or a newer incarnation's (another process
      // took the name over since) is not its to mark.
      if (opts.incarnation !== undefined) {
        if (a?.incarnation !== opts.incarnation) return false;
      } else if (!a) throw new AgentNotFoundError(name);
      return (await s.sql.run(this.goodbyeSql, { name, message, now })).changes === 1;
    });
  }

  /** One agent's stored record, or undefined. */
  async getAgent(name: string): Promise<AgentRecord | undefined> {
    const row = await this.sql.get('SELECT * FROM agents WHERE name = ?', [name]);
    return row ? toAgentRecord(row) : undefined;
  }

  /** All agents (deregistered ones only if asked), ordered by name. */
  async listAgents(opts: AgentFilter = {}): Promise<AgentRecord[]> {
    const { where, args } = agentWhere(opts, this.sql.dialect);
    return (await this.sql.all(`SELECT * FROM agents${where} ORDER BY name`, args)).map(toAgentRecord);
  }

  /**
   * The agents' rows as arrays of `columns` (snake_case names of the agents table), ordered by name, in batches read
   * from the database as they are consumed: a reader of the whole fleet holds one batch at a time. The store is busy
   * until the iteration ends, so read anything else first.
   */
  agentRowBatches(columns: readonly string[], opts: AgentFilter = {}, batch?: number): AsyncIterable<unknown[][]> {
    const { where, args } = agentWhere(opts, this.sql.dialect);
    return this.arrayBatches(`SELECT ${columnList(columns)} FROM agents${where} ORDER BY name`, args, columns, batch);
  }

  /** One agent's row as an array of `columns`, or undefined. */
  async agentRow(columns: readonly string[], name: string): Promise<unknown[] | undefined> {
    const row = await this.sql.get(`SELECT ${columnList(columns)} FROM agents WHERE name = ?`, [name]);
    return row ? columns.map((c) => row[c]) : undefined;
  }

  /**
   * Rows of `sql` as arrays of `columns`, in batches. On SQLite they are read in raw mode (no
   * object per row: a reader of 100,000 agents makes 100,000 fewer objects); any other executor maps its rows.
   */
  private async *arrayBatches(sql: string, args: SqlArgs, columns: readonly string[], batch = ROW_BATCH): AsyncIterable<unknown[][]> {
    const raw = this.engine.rawBatches(this.sql, sql, args, batch);
    if (raw) {
      yield* raw;
      return;
    }
    for await (const rows of this.sql.batches(sql, args, batch)) yield rows.map((r) => columns.map((c) => r[c]));
  }

  /**
   * Changes an agent's persisted state inside a write transaction, after `decide` has seen the current record (and
   * may refuse by throwing, or return null for "nothing to do"). The trigger writes the event.
   */
  transition(name: string, now: number, decide: (agent: AgentRecord) => TransitionParams | null): Promise<{ before: AgentRecord; after: AgentRecord; changed: boolean }> {
    return this.tx(async (s) => {
      const before = await s.getAgent(name);
      if (!before) throw new AgentNotFoundError(name);
      const t = decide(before);
      if (!t) return { before, after: before, changed: false };
      await s.sql.run(
        `UPDATE agents SET state = :to, state_since = CASE WHEN state = :to THEN state_since ELSE :now END, state_reason = :reason, state_evidence = :evidence,
           maintenance_until = :until, availability = COALESCE(:availability, availability),
           deregistered_at = CASE WHEN :deregister = 1 THEN :now ELSE deregistered_at END, updated_at = :now
         WHERE id = :id`,
        {
          id: before.id,
          to: t.to,
          now,
          reason: t.reason,
          evidence: t.evidence ? JSON.stringify(t.evidence) : null,
          until: t.maintenanceUntil ?? null,
          availability: t.availability ?? null,
          deregister: t.deregister ? 1 : 0,
        },
      );
      if (t.alwaysEvent && before.state === t.to) {
        await s.sql.run(
          `INSERT INTO events (agent_id, agent_name, at, from_state, to_state, reason, evidence)
           VALUES (:id, :name, :now, :to, :to, :reason, :evidence)`,
          { id: before.id, name: before.name, now, to: t.to, reason: t.event?.reason ?? t.reason, evidence: (t.event ? t.event.evidence : t.evidence) ? JSON.stringify(t.event ? t.event.evidence : t.evidence) : null },
        );
      }
      const after = (await s.getAgent(name))!;
      return { before, after, changed: true };
    });
  }

  /** Events, oldest first: for one agent, after an id (for --follow), since a time, and at most the newest `limit`. */
  async listEvents(q: EventQuery = {}): Promise<EventRecord[]> {
    const { sql, args } = eventsSql('*', q);
    return (await this.sql.all(sql, args)).map(toEventRecord);
  }

  /** The events of listEvents as arrays of EVENT_COLUMNS, in batches read as they are consumed (the store is busy until the iteration ends). */
  eventRowBatches(q: EventQuery = {}): AsyncIterable<unknown[][]> {
    const { sql, args } = eventsSql(EVENT_COLUMNS.join(', '), q);
    return this.arrayBatches(sql, args, EVENT_COLUMNS);
  }

  /** The id of the newest event (0 if none). */
  async lastEventId(): Promise<number> {
    return Number((await this.sql.get<{ id: number }>('SELECT COALESCE(MAX(id), 0) AS id FROM events'))!.id);
  }

  /**
   * Runs `onWake` whenever new events may have been written (see StoreEngine.watchEvents: SQLite polls every
   * pollMs, PostgreSQL listens), one call at a time: wakes during a call run it once more after it. Returns stop(),
   * which waits for a running call to end.
   */
  async watchEvents(onWake: () => Promise<void>, opts: WatchOptions): Promise<() => Promise<void>> {
    let running: Promise<void> | undefined;
    let again = false;
    let stopped = false;
    const run = async () => {
      do {
        again = false;
        try {
          await onWake();
        } catch (err) {
          opts.onError?.(err as Error);
        }
      } while (again && !stopped);
      running = undefined;
    };
    const wake = () => {
      if (stopped) return;
      if (running) again = true;
      else running = run();
    };
    const stop = await this.engine.watchEvents(wake, opts);
    return async () => {
      stopped = true;
      await stop();
      await running;
    };
  }

  close(): Promise<void> {
    return this.engine.close();
  }
}

function eventsSql(select: string, q: EventQuery): { sql: string; args: Record<string, unknown> } {
  const where: string[] = [];
  const args: Record<string, unknown> = {};
  if (q.agent !== undefined) {
    where.push('agent_name = :agent');
    args.agent = q.agent;
  }
  if (q.afterId !== undefined) {
    where.push('id > :after');
    args.after = q.afterId;
  }
  if (q.sinceMs !== undefined) {
    where.push('at >= :since');
    args.since = q.sinceMs;
  }
  const filter = where.length ? ` WHERE ${where.join(' AND ')}` : '';
  if (q.limit !== undefined) args.limit = q.limit;
  const sql = q.limit !== undefined
    ? `SELECT ${select} FROM (SELECT * FROM events${filter} ORDER BY id DESC LIMIT :limit) newest ORDER BY id`
    : `SELECT ${select} FROM events${filter} ORDER BY id`;
  return { sql, args };
}

/** A SELECT list of agents columns named in code (never from input: checked anyway). */
function columnList(columns: readonly string[]): string {
  for (const c of columns) if (!/^[a-z_]+(\.[a-z_]+)?$/.test(c)) throw new Error(`not a column name: ${c}`);
  return columns.join(', ');
}

/** The named parameters of the register statement for `p`. */
export function registerBindings(p: RegisterParams, now: number): Record<string, unknown> {
  // The schema refuses half a process identity (it would silently switch off crash detection): without its start
  // time, host and boot id (a process that already exited, a system without boot ids), the pid is not recorded.
  if (!wholeIdentity(p)) p = { ...p, pid: null, pidStartTime: null };
  return {
    name: p.name,
    group_name: p.group ?? null,
    interval_ms: p.intervalMs ?? null,
    stale_multiplier: p.staleMultiplier ?? null,
    offline_after_ms: p.offlineAfterMs ?? null,
    pid: p.pid ?? null,
    pid_start_time: p.pid == null ? null : (p.pidStartTime ?? null),
    host: p.host ?? null,
    boot_id: p.bootId ?? null,
    metadata: p.metadataJson ?? null,
    launch_argv: p.launch ? JSON.stringify(p.launch.argv) : null,
    launch_cwd: p.launch ? p.launch.cwd : null,
    now,
  };
}

/** Whether `p` names a process completely (pid, its start time, host and boot id), or names none. */
export function wholeIdentity(p: Pick<RegisterParams, 'pid' | 'pidStartTime' | 'host' | 'bootId'>): boolean {
  return p.pid == null || (p.pidStartTime != null && p.host != null && p.bootId != null);
}

function heartbeatBindings(p: HeartbeatParams, now: number, dialect: Dialect): Record<string, unknown> {
  // On a database server the server's clock stamps the heartbeat; the writer's own clock (this process's, unless
  // given) is kept beside it so that a host whose clock is off is reported. SQLite's statement has no such column.
  if (dialect === 'postgres') return { name: p.name, status: p.status ?? null, message: p.message ?? null, metadata: p.metadataJson ?? null, progress: p.progress ?? null, writer_clock: p.writerClock ?? Date.now() };
  return {
    name: p.name,
    status: p.status ?? null,
    message: p.message ?? null,
    metadata: p.metadataJson ?? null,
    progress: p.progress ?? null,
    now,
  };
}

// The engine is chosen in one place: open-store.ts.
export { openStore } from './open-store.js';
