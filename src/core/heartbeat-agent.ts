import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { DatabaseReplacedError, DatabaseUnusableError, UsageError } from '../errors.js';
import { type StartRowParams, markExited, startAgentRow } from '../store/lifecycle.js';
import { type HeartbeatParams, type Store, openStore } from '../store/store.js';
import { isBusyError } from '../store/retry.js';
import { type HeartbeatAgentOptions, type ResolvedAgentOptions, resolveAgentOptions } from './agent-options.js';
import { reconnectDelay } from './backoff.js';
import { type CommandHandler, CommandRunner } from './command-runner.js';
import { bootId, hostName, processStartTime } from './host.js';
import { type Logger, SILENT } from './logger.js';
import { validateMessage, validateMetadata } from './validate.js';

/** Seed 004's connection health: whether the last write committed, when one last did, and how many failed since. */
export interface ConnectionHealth {
  healthy: boolean;
  /** When a heartbeat last committed (ms since the epoch), or null. */
  lastHeartbeatAck: number | null;
  secondsSinceAck: number | null;
  consecutiveFailures: number;
}

const SIGNALS = ['SIGINT', 'SIGTERM'] as const;

/** How a wrapper starts the agent for its child: why (a restart, with evidence for the event), and who supervises. */
export interface StartHow {
  reason?: string;
  evidence?: Record<string, unknown>;
  restarted?: boolean;
  supervision?: StartRowParams['supervision'];
}

/**
 * An agent that keeps its own liveness in the database (seed 004): registers a new incarnation at start(), beats on
 * an unref'd timer, reports busy/error/progress/metadata, runs commands sent to it, and says goodbye at stop().
 * A failed write never throws from the timer: it is reported ('writeFailed' event, connectionHealth()) and retried
 * with exponential backoff and jitter, reopening the database (also when the file was deleted or replaced).
 */
export class HeartbeatAgent extends EventEmitter {
  readonly name: string;
  private readonly o: ResolvedAgentOptions;
  private readonly log: Logger;
  private readonly clock: () => number;
  private store: Store | null = null;
  /** Whether the options gave a clock (then it decides the time of every write too: see writeTime). */
  private readonly clockGiven: boolean;
  /**
   * The beat being written, if any: beats run one at a time (a timer's and setStatus's would otherwise open two
   * connections or interleave), and stop() waits for it, so that no beat lands after the goodbye.
   */
  private beating: Promise<boolean> | null = null;
  private incarnationNo: number | null = null;
  /** The start time of the process this agent stands for, when that is another one (read at registration). */
  private standsForStart: number | undefined;
  private running = false;
  private timer: NodeJS.Timeout | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private runner: CommandRunner | undefined;
  private status: 'ok' | 'busy' | 'error' = 'ok';
  private message: string | null = null;
  private progressValue: number | null = null;
  private pendingMeta: Record<string, unknown> | null = null;
  private lastAck: number | null = null;
  private failures = 0;
  private readonly onSignal = (sig: NodeJS.Signals) => void this.stopOnSignal(sig);
  private stoppedWaiters: (() => void)[] = [];
  private startHow: StartHow = {};

  /** Validates every option at once; throws a ValidationError (a UsageError) listing the problems. */
  constructor(options: HeartbeatAgentOptions) {
    super();
    this.o = resolveAgentOptions(options);
    this.name = this.o.name;
    this.log = options.logger ?? SILENT;
    this.clock = options.clock ?? Date.now;
    this.clockGiven = options.clock !== undefined;
  }

  /** The incarnation this agent registered as (null before start or while disconnected from a fresh file). */
  get incarnation(): number | null {
    return this.incarnationNo;
  }

  /**
   * Registers a new incarnation (pid, process start time, host, boot id, contract, metadata) and sends the first
   * heartbeat, then beats every interval. Throws only for what retrying cannot fix (an unusable database file);
   * a busy or missing database is reported and retried in the background.
   */
  async start(how: StartHow = {}): Promise<void> {
    if (this.running) throw new UsageError(`agent ${this.name} is already started`);
    this.running = true;
    // Every start is a new incarnation, also a second start() of the same process.
    this.incarnationNo = null;
    this.startHow = how;
    if (this.o.handleSignals) for (const s of SIGNALS) process.on(s, this.onSignal);
    try {
      await this.connect('create');
      await this.beat();
    } catch (err) {
      if (err instanceof DatabaseUnusableError) {
        this.teardown();
        throw err;
      }
      this.failed(err);
    }
    this.schedule();
    if (this.runner) this.schedulePoll();
  }

  /** Starts the agent and resolves when it stops, keeping the process alive meanwhile (seed 004's `await agent.run()`). */
  async run(): Promise<void> {
    await this.start();
    const keepAlive = setInterval(() => undefined, 1 << 30);
    await new Promise<void>((r) => this.stoppedWaiters.push(r));
    clearInterval(keepAlive);
  }

  /** Sets what the agent reports: busy, available, or an error with a message (written at once). */
  setStatus(status: 'busy' | 'available' | 'error', message?: string): Promise<void> {
    // Invalid input throws at once (as it always did); the write itself is the returned Promise.
    if (!['busy', 'available', 'error'].includes(status)) throw new UsageError(`invalid status '${status}': use busy, available or error`);
    if (message !== undefined) validateMessage(message);
    this.status = status === 'available' ? 'ok' : status;
    this.message = message ?? null;
    return this.running ? this.beat().then(() => undefined) : Promise.resolve();
  }


  /** Reports a progress counter (sent with the next heartbeat). */
  progress(n: number): void {
    if (!Number.isSafeInteger(n) || n < 0) throw new UsageError(`invalid progress ${n}: a whole number of at least 0`);
    this.progressValue = n;
  }

  /** Merges metadata into what is stored (sent with the next heartbeat; a null value removes a key). */
  setMeta(meta: Record<string, unknown>): void {
    validateMetadata(meta);
    this.pendingMeta = { ...(this.pendingMeta ?? {}), ...meta };
  }

  /** Handles commands sent with `agentctl send NAME -- PAYLOAD`, one at a time; the handler's value is the result. */
  onCommand(handler: CommandHandler): this {
    this.runner = new CommandRunner(
      {
        name: this.name,
        store: () => this.store,
        incarnation: () => this.incarnationNo,
        now: () => this.clock(),
        failed: (err) => this.failed(err),
        report: (event, data) => {
          this.emit(event, data);
          if (event === 'commandRejected') this.log.warn?.(`command ${data.id} result refused`, data);
        },
      },
      handler,
    );
    if (this.running) this.schedulePoll();
    return this;
  }

  /** Seed 004's connection health. Healthy means started, the last write committed, and within the stale window. */
  connectionHealth(): ConnectionHealth {
    const now = this.clock();
    const age = this.lastAck === null ? null : now - this.lastAck;
    return {
      healthy: this.running && this.failures === 0 && age !== null && age < this.o.intervalMs * this.o.staleMultiplier,
      lastHeartbeatAck: this.lastAck,
      secondsSinceAck: age === null ? null : age / 1000,
      consecutiveFailures: this.failures,
    };
  }

  /** Sends a heartbeat now (the timer calls this). Returns whether it committed; never throws. */
  async beat(): Promise<boolean> {
    while (this.beating) await this.beating;
    const done = this.beatOnce();
    this.beating = done;
    try {
      return await done;
    } finally {
      if (this.beating === done) this.beating = null;
    }
  }

  /**
   * The time of a write: the store decides it (the database's clock: this host's for SQLite, the server's where the
   * database has one), unless a clock was given in the options (a test's fake clock), which then decides every time.
   * The agent's own judgements (connectionHealth, the age of its last acknowledged beat) stay on `clock`.
   */
  private writeTime(store: Store): Promise<number> | number {
    return this.clockGiven ? this.clock() : store.now();
  }

  private async beatOnce(): Promise<boolean> {
    // Standing for another process (agentctl run's child) that is gone, zombies included: no beat for the dead, which
    // would bring it back to life after a health loop proved the crash, until its wrapper reports the exit.
    if (this.o.pid !== process.pid && this.standsForStart !== undefined && processStartTime(this.o.pid) !== this.standsForStart) return false;
    const p = { name: this.name, status: this.status, message: this.message, metadataJson: this.pendingMeta ? JSON.stringify(this.pendingMeta) : null, progress: this.progressValue };
    try {
      // Until the first connection the agent may create the file; afterwards a missing file is an operator's doing.
      if (!this.store) await this.connect(this.incarnationNo === null ? 'create' : 'existing');
      const now = await this.writeTime(this.store!);
      if (!(await this.beatThroughStore(p, now))) {
        // The row is gone (the file was recreated, or someone purged the agent): register again, then beat.
        await this.register(this.store!, 'registered again: the agent was missing from the database');
        await this.store!.heartbeatRow(p, now);
      }
      this.pendingMeta = null;
      this.lastAck = this.clock();
      if (this.failures) {
        this.log.info?.(`agent ${this.name}: heartbeats recovered after ${this.failures} failure(s)`);
        this.emit('reconnected', { failures: this.failures });
      }
      this.failures = 0;
      this.emit('heartbeat', { at: now });
      return true;
    } catch (err) {
      this.failed(err);
      return false;
    }
  }

  /**
   * Stops: no more beats or claims, waits up to the shutdown grace for commands in flight, then says goodbye
   * (offline, with an event; executing commands are cancelled). With `evidence`, the offline event records it
   * instead of a goodbye (a wrapper reporting its child's exit). Never throws; a failed goodbye is reported.
   */
  async stop(reason = 'stopped', opts: { evidence?: Record<string, unknown> } = {}): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.clearTimers();
    for (const s of SIGNALS) process.off(s, this.onSignal);
    // Only an await when commands are in flight: a stop from a signal handler says goodbye synchronously otherwise.
    if (this.runner?.busy) await this.runner.drain(this.o.shutdownGraceMs);
    while (this.beating) await this.beating;
    try {
      this.checkFile();
      const store = this.store;
      if (store && this.incarnationNo !== null) {
        const now = await this.writeTime(store);
        if (opts.evidence) await markExited(store, this.name, this.incarnationNo, reason, opts.evidence, now);
        else {
          validateMessage(reason);
          await store.goodbye(this.name, reason, now, { incarnation: this.incarnationNo });
        }
      }
    } catch (err) {
      this.failed(err);
    }
    this.teardown();
    this.emit('stopped', { reason });
  }

  private async stopOnSignal(sig: NodeJS.Signals): Promise<void> {
    await this.stop(`received ${sig}`);
    // Let the process end as it would have without us, unless the application handles the signal itself.
    if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
  }

  private async connect(mode: 'create' | 'existing'): Promise<void> {
    const store = await openStore({ path: this.o.db, mode, busyTimeoutMs: this.o.busyTimeoutMs, retryAttempts: 1 });
    try {
      const mine = await store.getAgent(this.name);
      // Reconnecting after a busy spell: our row is still ours, so this is the same incarnation.
      if (!(mine && this.incarnationNo !== null && mine.incarnation === this.incarnationNo && mine.pid === this.o.pid)) {
        await this.register(store, this.incarnationNo === null ? undefined : 'registered again after reconnecting');
      }
      this.store = store;
    } catch (err) {
      await store.close();
      throw err;
    }
  }

  private async register(store: Store, reason: string | undefined): Promise<void> {
    // A wrapper's child may already have exited (its exit is handled next): register it without a start time then.
    const start = processStartTime(this.o.pid);
    if (start !== null) this.standsForStart = start;
    // The wrapper's reason applies to the first registration of this start; a later one says why it happened.
    const how = this.incarnationNo === null ? this.startHow : {};
    const why = reason ?? how.reason;
    const row = await startAgentRow(
      store,
      {
        register: {
          name: this.name, group: this.o.group ?? null, intervalMs: this.o.intervalMs, staleMultiplier: this.o.staleMultiplier,
          offlineAfterMs: this.o.offlineAfterMs, pid: this.o.pid, pidStartTime: start, host: hostName(), bootId: bootId(),
          metadataJson: this.o.metaJson, launch: this.o.launch ?? null,
        },
        ...(why !== undefined ? { reason: why } : {}), // ignored for a new row: its registration is its start
        ...(how.evidence ? { evidence: how.evidence } : {}),
        ...(how.restarted ? { restarted: true } : {}),
        ...(how.supervision !== undefined ? { supervision: how.supervision } : {}),
      },
      await this.writeTime(store),
    );
    this.incarnationNo = row.incarnation;
  }

  /**
   * One heartbeat row through the current connection. The store checks the file before writing, so a deleted,
   * replaced or truncated file swallows nothing; a replaced one gets this beat through a new connection.
   */
  private async beatThroughStore(p: HeartbeatParams, now: number): Promise<boolean> {
    try {
      return await this.store!.heartbeatRow(p, now);
    } catch (err) {
      if (!(err instanceof DatabaseReplacedError)) throw err;
      this.dropConnection();
      if (!existsSync(this.o.db)) throw err; // deleted: report and wait (never create it again)
      await this.connect('existing');
      return await this.store!.heartbeatRow(p, now);
    }
  }

  /** A deleted, replaced or truncated database file must not swallow heartbeats through a connection to the old one. */
  private checkFile(): void {
    if (!this.store) return;
    try {
      this.store.assertSameFile();
    } catch (err) {
      this.dropConnection();
      // Replaced: this beat goes to the new file (if it is a usable database). Deleted or truncated: report and wait.
      if (!(err instanceof DatabaseReplacedError && existsSync(this.o.db))) throw err;
    }
  }

  private dropConnection(): void {
    void this.store?.close();
    this.store = null;
  }

  private failed(err: unknown): void {
    this.failures++;
    // A busy database is worth keeping the connection for; anything else (read-only, full, I/O, gone) reopens it.
    if (!isBusyError(err) && (err as { code?: string })?.code !== 'E_BUSY') this.dropConnection();
    const retryInMs = reconnectDelay(this.failures, this.o.intervalMs, this.o.maxBackoffMs);
    this.log.warn?.(`agent ${this.name}: heartbeat failed (${this.failures} in a row), retrying in ${retryInMs} ms: ${(err as Error)?.message ?? err}`);
    this.emit('writeFailed', err, { consecutiveFailures: this.failures, retryInMs });
  }

  private schedule(): void {
    if (!this.running) return;
    const delay = this.failures ? reconnectDelay(this.failures, this.o.intervalMs, this.o.maxBackoffMs) : this.o.intervalMs;
    this.timer = setTimeout(async () => {
      await this.beat();
      this.schedule();
    }, delay);
    this.timer.unref();
  }

  private schedulePoll(): void {
    if (!this.running || !this.runner || this.pollTimer) return;
    const tick = async () => {
      this.pollTimer = undefined;
      if (!this.running) return;
      await this.runner!.poll();
      if (!this.running || this.pollTimer) return;
      this.pollTimer = setTimeout(() => void tick(), this.o.commandPollMs);
      this.pollTimer.unref();
    };
    this.pollTimer = setTimeout(() => void tick(), 0);
    this.pollTimer.unref();
  }

  private clearTimers(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.pollTimer) clearTimeout(this.pollTimer);
    this.timer = this.pollTimer = undefined;
  }

  private teardown(): void {
    this.running = false;
    this.clearTimers();
    for (const s of SIGNALS) process.off(s, this.onSignal);
    this.dropConnection();
    for (const w of this.stoppedWaiters.splice(0)) w();
  }
}
