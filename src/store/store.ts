import type Database from 'better-sqlite3';
import { statSync } from 'node:fs';
import { AgentNotFoundError, DatabaseReplacedError, DatabaseUnusableError } from '../errors.js';
import { openDatabase, immediate, withRetry } from './open.js';
import { GOODBYE_SQL, HEARTBEAT_SQL, registerSql } from './protocol.js';
import type { RetryPolicy } from './retry.js';
import { type AgentRecord, type AgentState, type Availability, type EventRecord, toAgentRecord, toEventRecord } from './rows.js';
import { DEFAULTS } from '../config.js';

export interface StoreOptions {
  path: string;
  /** busy_timeout in ms (default 5000). */
  busyTimeoutMs?: number;
  retryAttempts?: number;
  backoffFactor?: number;
  /** 'create' (default) makes the file if missing; 'existing' refuses a missing file. */
  mode?: 'create' | 'existing';
  /** Create the parent directory if missing (the CLI does this only for its per-user default path). */
  createDir?: boolean;
  /** Apply pending migrations (default true); false throws MigrationNeededError instead, leaving the file as it is. */
  migrate?: boolean;
  /** Contract for agents registered without one (defaults: 30 s, × 3, 300 s). */
  contract?: { intervalMs: number; staleMultiplier: number; offlineAfterMs: number };
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
export class Store {
  readonly path: string;
  readonly db: Database.Database;
  readonly retry: RetryPolicy;
  readonly contract: { intervalMs: number; staleMultiplier: number; offlineAfterMs: number };
  private readonly stmts = new Map<string, Database.Statement>();
  /**
   * Take the write lock by trying every few milliseconds instead of through SQLite's busy handler (see beginPromptly),
   * so that a stream of heartbeats cannot hold this connection off for seconds. The health loop turns it on.
   */
  promptWriteLock = false;
  /** The file this connection opened: a write after it was deleted or replaced would go nowhere anyone reads. */
  private readonly file: { dev: number; ino: number; size: number };

  /** The register statement with this store's contract defaults filled in. */
  readonly registerSql: string;

  constructor(db: Database.Database, path: string, retry: RetryPolicy, contract: Store['contract']) {
    this.db = db;
    this.path = path;
    this.retry = retry;
    this.contract = contract;
    this.registerSql = registerSql(contract);
    const st = statSync(path);
    this.file = { dev: st.dev, ino: st.ino, size: st.size };
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
  }

  /** The statement for `sql`, prepared once per connection (also for the store modules beside this one). */
  prepared(sql: string): Database.Statement {
    let s = this.stmts.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.stmts.set(sql, s);
    }
    return s;
  }

  /** Runs `fn` in BEGIN IMMEDIATE, retrying the whole transaction on SQLITE_BUSY*. Use for every read-then-write. */
  immediate<T>(fn: () => T): T {
    this.assertSameFile();
    return immediate(this.db, this.retry, this.path, fn, { prompt: this.promptWriteLock });
  }

  /** Runs a single write statement with the busy retry, after checking that the file is still the one open. */
  retrying<T>(fn: () => T): T {
    this.assertSameFile();
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
  listAgents(opts: { includeDeregistered?: boolean; group?: string } = {}): AgentRecord[] {
    const where: string[] = [];
    const args: unknown[] = [];
    if (!opts.includeDeregistered) where.push('deregistered_at IS NULL');
    if (opts.group !== undefined) {
      where.push('group_name = ?');
      args.push(opts.group);
    }
    const sql = `SELECT * FROM agents${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY name`;
    return (this.prepared(sql).all(...args) as Record<string, unknown>[]).map(toAgentRecord);
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
    const sql = q.limit !== undefined
      ? `SELECT * FROM (SELECT * FROM events${filter} ORDER BY id DESC LIMIT :limit) ORDER BY id`
      : `SELECT * FROM events${filter} ORDER BY id`;
    if (q.limit !== undefined) args.limit = q.limit;
    return (this.prepared(sql).all(args) as Record<string, unknown>[]).map(toEventRecord);
  }

  /** The id of the newest event (0 if none). */
  lastEventId(): number {
    return (this.prepared('SELECT COALESCE(MAX(id), 0) AS id FROM events').get() as { id: number }).id;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

/** The named parameters of the register statement for `p`. */
export function registerBindings(p: RegisterParams, now: number): Record<string, unknown> {
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
  return new Store(db, opts.path, retry, opts.contract ?? DEFAULT_CONTRACT);
}
