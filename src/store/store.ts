import type Database from 'better-sqlite3';
import { statSync } from 'node:fs';
import { AgentNotFoundError, DatabaseReplacedError, DatabaseUnusableError } from '../errors.js';
import { isSnapshot, openDatabase, immediate, withRetry } from './sqlite/open.js';
import { GOODBYE_SQL, HEARTBEAT_SQL, registerSql } from './protocol.js';
import type { RetryPolicy } from './sqlite/retry.js';
import { type AgentRecord, type AgentState, type Availability, EVENT_COLUMNS, type EventRecord, toAgentRecord, toEventRecord } from './rows.js';
import { DEFAULTS } from '../config.js';
import { SqliteSql } from './sqlite/executor.js';

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

const DEFAULT_CONTRACT = { intervalMs: DEFAULTS.intervalMs, staleMultiplier: DEFAULTS.staleMultiplier, offlineAfterMs: DEFAULTS.offlineAfterMs };

/** The shared state database: one connection with the pragmas, retries and statements every agentctl process uses. */
/** Which agents a listing reads: deregistered ones only if asked, one group, or names containing a text. */
export interface AgentFilter {
  includeDeregistered?: boolean;
  group?: string;
  /** A substring of the name, any case (agent names are ASCII), matched as text, never as a LIKE pattern. */
  nameContains?: string;
}

/** The WHERE clause (with its leading space, or empty) and arguments of `f`. */
function agentWhere(f: AgentFilter): { where: string; args: unknown[] } {
  const conds: string[] = [];
  const args: unknown[] = [];
  if (!f.includeDeregistered) conds.push('deregistered_at IS NULL');
  if (f.group !== undefined) {
    conds.push('group_name = ?');
    args.push(f.group);
  }
  if (f.nameContains) {
    conds.push('instr(lower(name), lower(?)) > 0');
    args.push(f.nameContains);
  }
  return { where: conds.length ? ` WHERE ${conds.join(' AND ')}` : '', args };
}

export class Store {
  readonly path: string;
  readonly db: Database.Database;
  readonly retry: RetryPolicy;
  readonly contract: { intervalMs: number; staleMultiplier: number; offlineAfterMs: number };
  /** The store's SQL, asynchronous: every read and write goes through it. */
  readonly sql: SqliteSql;
  private readonly rawStmts = new Map<string, Database.Statement>();
  /**
   * Take the write lock by trying every few milliseconds instead of through SQLite's busy handler (see beginPromptly),
   * so that a stream of heartbeats cannot hold this connection off for seconds. The health loop turns it on.
   */
  promptWriteLock = false;
  /** The file this connection opened: a write after it was deleted or replaced would go nowhere anyone reads. */
  private readonly file: { dev: number; ino: number; size: number };
  /** performance.now() of the last identity check, and how long a single-statement write may rely on it. */
  private fileCheckedAt: number;
  private readonly fileCheckEveryMs: number;

  /** The register statement with this store's contract defaults filled in. */
  readonly registerSql: string;

  constructor(db: Database.Database, path: string, retry: RetryPolicy, contract: Store['contract'], fileCheckEveryMs = 100) {
    this.db = db;
    this.path = path;
    this.retry = retry;
    this.contract = contract;
    this.registerSql = registerSql(contract);
    const st = statSync(path);
    this.file = { dev: st.dev, ino: st.ino, size: st.size };
    this.fileCheckedAt = performance.now();
    this.fileCheckEveryMs = fileCheckEveryMs;
    this.sql = new SqliteSql(db, {
      path,
      retry,
      beforeWrite: () => this.assertSameFileRecently(),
      beforeTx: () => this.assertSameFile(),
      prompt: () => this.promptWriteLock,
    });
  }

  /** Throws DatabaseReplacedError if the path no longer names the file this connection has open. Called before writes. */
  assertSameFile(): void {
    let st;
    try {
      st = statSync(this.path);
    } catch {
      throw new DatabaseReplacedError(this.path, 'deleted');
    }
    if (st.dev !== this.file.dev || st.ino !== this.file.ino) throw new DatabaseReplacedError(this.path, 'replaced');
    // The main file never shrinks in normal use (no auto-vacuum, no VACUUM in place): smaller means truncated.
    if (st.size < this.file.size) throw new DatabaseUnusableError(this.path, `it was truncated from ${this.file.size} to ${st.size} bytes while in use; nothing was written. Restore it from a backup`);
    this.file.size = st.size;
    this.fileCheckedAt = performance.now();
  }

  /**
   * assertSameFile, unless it passed less than fileCheckEveryMs ago. A stat costs about a tenth of a heartbeat; a
   * file deleted or replaced under a stream of heartbeats is noticed within that window instead of at once.
   */
  private assertSameFileRecently(): void {
    if (this.fileCheckEveryMs > 0 && performance.now() - this.fileCheckedAt < this.fileCheckEveryMs) return;
    this.assertSameFile();
  }

  /** Whether this connection reads an immutable snapshot (a reader without write access): later writes are not seen. */
  get snapshot(): boolean {
    return isSnapshot(this.db);
  }

  /** The statement for `sql`, prepared once per connection (also for the store modules beside this one). */
  prepared(sql: string): Database.Statement {
    return this.sql.prepared(sql);
  }

  /** Like prepared, for statements that return rows as arrays (a cache of its own: raw mode is a statement's setting). */
  preparedRaw(sql: string): Database.Statement {
    let s = this.rawStmts.get(sql);
    if (!s) {
      s = this.db.prepare(sql).raw(true);
      this.rawStmts.set(sql, s);
    }
    return s;
  }

  /** Runs `fn` in BEGIN IMMEDIATE, retrying the whole transaction on SQLITE_BUSY*. Use for every read-then-write. */
  immediate<T>(fn: () => T): T {
    this.assertSameFile();
    return immediate(this.db, this.retry, this.path, fn, { prompt: this.promptWriteLock });
  }

  /**
   * Runs a single write statement with the busy retry, after checking that the file is still the one open (at most
   * every fileCheckEveryMs: see assertSameFileRecently).
   */
  retrying<T>(fn: () => T): T {
    this.assertSameFileRecently();
    return withRetry(this.retry, this.path, fn);
  }

  /**
   * Registers an agent or updates its contract and identity (idempotent). Returns the stored record, and whether
   * this call created it (decided under the write lock).
   */
  register(p: RegisterParams, now: number): { registered: boolean; agent: AgentRecord } {
    return this.immediate(() => {
      const registered = !this.exists(p.name);
      this.prepared(this.registerSql).run(registerBindings(p, now));
      return { registered, agent: this.getAgent(p.name)! };
    });
  }

  private exists(name: string): boolean {
    return this.prepared('SELECT 1 FROM agents WHERE name = ?').get(name) !== undefined;
  }

  /**
   * The heartbeat statement alone, as one autocommit UPDATE (with the busy retry and the file check). False means
   * no agent has that name, and nothing was written.
   */
  heartbeatRow(p: HeartbeatParams, now: number): boolean {
    const bindings = heartbeatBindings(p, now);
    return this.retrying(() => this.prepared(HEARTBEAT_SQL).run(bindings).changes) === 1;
  }

  /**
   * Records one heartbeat: a single autocommit UPDATE. An unregistered name is registered first (with the default
   * contract) in one transaction. Returns whether it registered the agent. Throws if the write did not commit.
   */
  heartbeat(p: HeartbeatParams, now: number): { registered: boolean } {
    if (this.heartbeatRow(p, now)) return { registered: false };
    const bindings = heartbeatBindings(p, now);
    return this.immediate(() => {
      const existed = this.prepared(HEARTBEAT_SQL).run(bindings).changes === 1;
      if (existed) return { registered: false };
      this.prepared(this.registerSql).run(registerBindings({ name: p.name }, now));
      this.prepared(HEARTBEAT_SQL).run(bindings);
      return { registered: true };
    });
  }

  /**
   * Registration (or contract update) and a heartbeat in one transaction: for heartbeats that also set the contract
   * or pid. `registered` says whether this call created the agent (decided under the write lock).
   */
  registerAndHeartbeat(r: RegisterParams, h: HeartbeatParams, now: number): { registered: boolean; agent: AgentRecord } {
    return this.immediate(() => {
      const existed = this.exists(r.name);
      this.prepared(this.registerSql).run(registerBindings(r, now));
      this.prepared(HEARTBEAT_SQL).run(heartbeatBindings(h, now));
      return { registered: !existed, agent: this.getAgent(r.name)! };
    });
  }

  /** The agent says goodbye: offline now, with an event; its executing commands are cancelled. */
  goodbye(name: string, message: string | null, now: number, opts: { incarnation?: number } = {}): boolean {
    return this.immediate(() => {
      const a = this.getAgent(name);
      // An agent saying goodbye for its own incarnation: a missing row or a newer incarnation's (another process
      // took the name over since) is not its to mark.
      if (opts.incarnation !== undefined) {
        if (a?.incarnation !== opts.incarnation) return false;
      } else if (!a) throw new AgentNotFoundError(name);
      return this.prepared(GOODBYE_SQL).run({ name, message, now }).changes === 1;
    });
  }

  /** One agent's stored record, or undefined. */
  getAgent(name: string): AgentRecord | undefined {
    const row = this.prepared('SELECT * FROM agents WHERE name = ?').get(name) as Record<string, unknown> | undefined;
    return row ? toAgentRecord(row) : undefined;
  }

  /** All agents (deregistered ones only if asked), ordered by name. */
  listAgents(opts: AgentFilter = {}): AgentRecord[] {
    const { where, args } = agentWhere(opts);
    return (this.prepared(`SELECT * FROM agents${where} ORDER BY name`).all(...args) as Record<string, unknown>[]).map(toAgentRecord);
  }

  /**
   * The agents' rows as arrays of `columns` (snake_case names of the agents table), ordered by name, read from the
   * database as they are iterated: a reader of the whole fleet holds one row at a time. The connection is busy
   * until the iteration ends, so read anything else first.
   */
  iterateAgentRows(columns: readonly string[], opts: AgentFilter = {}): IterableIterator<unknown[]> {
    const { where, args } = agentWhere(opts);
    return this.preparedRaw(`SELECT ${columnList(columns)} FROM agents${where} ORDER BY name`).iterate(...args) as IterableIterator<unknown[]>;
  }

  /** One agent's row as an array of `columns`, or undefined. */
  agentRow(columns: readonly string[], name: string): unknown[] | undefined {
    return this.preparedRaw(`SELECT ${columnList(columns)} FROM agents WHERE name = ?`).get(name) as unknown[] | undefined;
  }

  /**
   * What `make` yields, read in one read transaction (BEGIN DEFERRED: no write lock, and it works on a file this
   * user may only read), so that the several queries of one document see one snapshot of the database. Inside a
   * transaction already, it just yields.
   */
  *snapshotOf<T>(make: () => Iterable<T>): Generator<T> {
    const own = !this.db.inTransaction;
    if (own) this.db.exec('BEGIN');
    try {
      yield* make();
    } finally {
      if (own && this.db.inTransaction) this.db.exec('COMMIT');
    }
  }

  /**
   * Changes an agent's persisted state inside BEGIN IMMEDIATE, after `decide` has seen the current record (and may
   * refuse by throwing, or return null for "nothing to do"). The trigger writes the event.
   */
  transition(name: string, now: number, decide: (agent: AgentRecord) => TransitionParams | null): { before: AgentRecord; after: AgentRecord; changed: boolean } {
    return this.immediate(() => {
      const before = this.getAgent(name);
      if (!before) throw new AgentNotFoundError(name);
      const t = decide(before);
      if (!t) return { before, after: before, changed: false };
      this.prepared(
        `UPDATE agents SET state = :to, state_since = CASE WHEN state = :to THEN state_since ELSE :now END, state_reason = :reason, state_evidence = :evidence,
           maintenance_until = :until, availability = COALESCE(:availability, availability),
           deregistered_at = CASE WHEN :deregister THEN :now ELSE deregistered_at END, updated_at = :now
         WHERE id = :id`,
      ).run({
        id: before.id,
        to: t.to,
        now,
        reason: t.reason,
        evidence: t.evidence ? JSON.stringify(t.evidence) : null,
        until: t.maintenanceUntil ?? null,
        availability: t.availability ?? null,
        deregister: t.deregister ? 1 : 0,
      });
      if (t.alwaysEvent && before.state === t.to) {
        this.prepared(
          `INSERT INTO events (agent_id, agent_name, at, from_state, to_state, reason, evidence)
           VALUES (:id, :name, :now, :to, :to, :reason, :evidence)`,
        ).run({ id: before.id, name: before.name, now, to: t.to, reason: t.event?.reason ?? t.reason, evidence: (t.event ? t.event.evidence : t.evidence) ? JSON.stringify(t.event ? t.event.evidence : t.evidence) : null });
      }
      const after = this.getAgent(name)!;
      return { before, after, changed: true };
    });
  }

  /** Events, oldest first: for one agent, after an id (for --follow), since a time, and at most the newest `limit`. */
  listEvents(q: EventQuery = {}): EventRecord[] {
    const { sql, args } = eventsSql('*', q);
    return (this.prepared(sql).all(args) as Record<string, unknown>[]).map(toEventRecord);
  }

  /**
   * The events of listEvents as arrays of EVENT_COLUMNS, read from the database as they are iterated (the
   * connection is busy until the iteration ends).
   */
  iterateEventRows(q: EventQuery = {}): IterableIterator<unknown[]> {
    const { sql, args } = eventsSql(EVENT_COLUMNS.join(', '), q);
    return this.preparedRaw(sql).iterate(args) as IterableIterator<unknown[]>;
  }

  /** The id of the newest event (0 if none). */
  lastEventId(): number {
    return (this.prepared('SELECT COALESCE(MAX(id), 0) AS id FROM events').get() as { id: number }).id;
  }

  close(): void {
    if (this.db.open) this.db.close();
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
    ? `SELECT ${select} FROM (SELECT * FROM events${filter} ORDER BY id DESC LIMIT :limit) ORDER BY id`
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

function heartbeatBindings(p: HeartbeatParams, now: number): Record<string, unknown> {
  return {
    name: p.name,
    status: p.status ?? null,
    message: p.message ?? null,
    metadata: p.metadataJson ?? null,
    progress: p.progress ?? null,
    now,
  };
}

/** Opens (creating and migrating if needed) the database at `opts.path` and returns a Store on it. */
export function openStore(opts: StoreOptions): Store {
  const retry: RetryPolicy = {
    attempts: Math.max(1, Math.floor(opts.retryAttempts ?? DEFAULTS.retryAttempts)),
    factor: Math.max(1, opts.backoffFactor ?? DEFAULTS.backoffFactor),
    baseDelayMs: 50,
  };
  const db = openDatabase(opts.path, {
    busyTimeoutMs: opts.busyTimeoutMs ?? DEFAULTS.busyTimeoutMs,
    retry,
    mode: opts.mode ?? 'create',
    createDir: opts.createDir ?? false,
    migrate: opts.migrate ?? true,
  });
  return new Store(db, opts.path, retry, opts.contract ?? DEFAULT_CONTRACT, opts.fileCheckEveryMs ?? 100);
}
