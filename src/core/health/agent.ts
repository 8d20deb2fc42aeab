import { EventEmitter } from 'node:events';
import type { Store } from '../../store/store.js';
import type { AgentRecord } from '../../store/rows.js';
import { insertAlert } from '../../store/alerts.js';
import { exclusive } from '../../store/lease.js';
import { formatDuration } from '../duration.js';
import { isOverdue, staleAfterMs } from '../state.js';
import { type ConvictResult, convict } from './convict.js';
import type { AlertTarget, DeliveryResult } from './deliver.js';
import { AlertCourier } from './courier.js';
import { redactUrl } from '../redact.js';
import { writeFileAtomic } from './files.js';
import { thisHost } from './judge.js';
import { type Logger as BaseLogger, fullLogger } from '../logger.js';
import type { RestartOptions, RestartResult } from '../restart.js';
import { restartConvicted } from './restart-stale.js';
import type { Logger } from './log.js';
import { buildHeartbeatMap } from './map.js';
import { renderMetrics } from './metrics.js';
import { type HealthPolicy, type HealthReport, checkHealth, loopIdentity } from './pass.js';
import { recordLoopStopped } from '../../store/monitor.js';

/** The clock the loop reads: wall time for the pass, and a monotonic one to notice that the loop itself was paused. */
export interface Clock {
  now(): number;
  monotonic(): number;
}

export const systemClock: Clock = { now: () => Date.now(), monotonic: () => performance.now() };

export interface HealthAgentOptions {
  /** The loop's store; the agent sets its `promptWriteLock`. */
  store: Store;
  /** Period of the loop (default 30 s, seed 002). */
  everyMs?: number;
  /** Pass policy: alert states, cooldown, hold rule, local host. `targets` and `everyMs` are filled in from below. */
  policy?: Omit<HealthPolicy, 'targets' | 'suspect'>;
  alertTargets?: AlertTarget[];
  alertTimeoutMs?: number;
  alertRetries?: number;
  /** One delivery round ends this long after it began; what is not delivered stays pending (default: timeout × tries). */
  alertDeadlineMs?: number;
  /** Rewrite the seed-003 heartbeat map / the Prometheus textfile after every pass (atomically). */
  mapFile?: string;
  metricsFile?: string;
  clock?: Clock;
  logger?: BaseLogger;
  /** The exclusive lock counts as abandoned after this long without a refresh (default 30 s). */
  lockStaleMs?: number;
  /** A gap between passes beyond max(3 × every, every + this) means the loop was paused (default 2 s). */
  pauseToleranceMs?: number;
  /** Restart convicted agents by their launch command after each pass (monitor --restart-stale), with backoff. */
  restartStale?: Omit<RestartOptions, 'respectBackoff' | 'dryRun'>;
}

export interface PassOutcome extends HealthReport {
  /**
   * The deliveries settled since the previous pass's outcome. A pass never waits for receivers: in the loop, this
   * pass's alerts are sent beside it and reported with the next one; checkAgentHealth and runOnce wait for this
   * pass's delivery round (bounded by its deadline) and report it here.
   */
  delivery: DeliveryResult;
  /** What --restart-stale did this pass (empty without it). */
  restarts: RestartResult[];
}

/**
 * Seed 002's HeartbeatHealthAgent: the health loop. `start()` holds the exclusive 'monitor' lock and runs a pass every
 * `everyMs` until `stop()`; `runOnce()` is one locked pass (cron). Each pass convicts, queues alerts, starts a delivery
 * round of the outbox beside it (detection never waits for a receiver), and rewrites the map and metrics files. Events: 'pass' (PassOutcome), 'transition' (AppliedTransition),
 * 'suspect' (reason), 'held' (names, reason: once per group of held verdicts), 'error' (Error; only emitted when someone listens).
 */
export class HeartbeatHealthAgent extends EventEmitter {
  readonly store: Store;
  readonly everyMs: number;
  private readonly opts: HealthAgentOptions;
  private readonly clock: Clock;
  private readonly log: Logger;
  private stopping = false;
  private wake: (() => void) | null = null;
  private loop: Promise<void> | null = null;
  /**
   * When the previous pass ended, how long its own work took (convictions and files: not the deliveries, which
   * run beside it, nor restarts, which wait for processes), and when the loop planned the next one (monotonic ms).
   */
  private last: { wall: number; mono: number; busyMs: number; wakeAt: number } | null = null;
  /** How long the last pass's own work took (monotonic ms). */
  private lastBusyMs = 0;
  /** Sends the outbox beside the passes; stop() and a lost lock cut it short. */
  private readonly courier: AlertCourier;

  constructor(opts: HealthAgentOptions) {
    super();
    this.opts = opts;
    this.store = opts.store;
    // A pass must not fall behind its period waiting for the write lock while a fleet of writers heartbeats.
    this.store.promptWriteLock = true;
    this.everyMs = opts.everyMs ?? 30_000;
    this.clock = opts.clock ?? systemClock;
    this.log = fullLogger(opts.logger);
    this.courier = new AlertCourier({
      store: this.store,
      targets: opts.alertTargets ?? [],
      now: () => this.clock.now(),
      log: this.log,
      delivery: {
        ...(opts.alertTimeoutMs !== undefined ? { timeoutMs: opts.alertTimeoutMs } : {}),
        ...(opts.alertRetries !== undefined ? { retries: opts.alertRetries } : {}),
        ...(opts.alertDeadlineMs !== undefined ? { deadlineMs: opts.alertDeadlineMs } : {}),
      },
    });
  }

  /** Runs the loop until stop(); resolves then. Rejects with LockHeldError if another health loop is running. */
  start(): Promise<void> {
    if (this.loop) throw new Error('this HeartbeatHealthAgent is already running');
    this.stopping = false;
    this.courier.reset();
    this.loop = this.withLock(async (signal) => {
      const lost = () => this.courier.abort();
      signal.addEventListener('abort', lost, { once: true });
      this.log.info(`health loop started: every ${formatDuration(this.everyMs)}, database ${redactUrl(this.store.path)}`);
      try {
        while (!this.stopping && !signal.aborted) {
          await this.guardedPass(this.observerSuspect());
          await this.sleep(this.everyMs, signal);
        }
      } finally {
        signal.removeEventListener('abort', lost);
        // Cut short what is still being delivered (it stays pending for the next monitor) before the lock goes.
        this.courier.abort();
        await this.courier.idle();
        await this.recordStopped();
      }
      this.log.info(signal.aborted ? 'health loop stopped: it lost its lock' : 'health loop stopped');
    }).finally(() => {
      this.loop = null;
    });
    return this.loop;
  }

  /**
   * Asks the loop to stop after the current pass and waits for it. Deliveries in flight are cut short at once
   * (they stay pending for the next pass or monitor), so this takes no longer than the current pass.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wake?.();
    this.courier.abort();
    await this.loop?.catch(() => undefined);
    await this.courier.idle();
  }

  /**
   * One pass under the exclusive lock, for cron: convictions first, then a wait for its delivery round, bounded by
   * the round's deadline. Rejects with LockHeldError if another health loop is running.
   */
  runOnce(): Promise<PassOutcome> {
    this.courier.reset();
    return this.withLock(async (signal) => {
      const lost = () => this.courier.abort();
      signal.addEventListener('abort', lost, { once: true });
      try {
        return await this.checkAgentHealth();
      } finally {
        signal.removeEventListener('abort', lost);
      }
    });
  }

  /**
   * One full pass without taking the lock: convict, queue alerts, write the map and metrics files, and wait for the
   * delivery round it started (bounded by its deadline; the convictions are committed before anything is sent).
   */
  checkAgentHealth(suspect: string | null = null): Promise<PassOutcome> {
    return this.pass(suspect, true);
  }

  /**
   * The "now" a pass judges the agents by and stamps its writes with: the database's clock (store.now(): this host's
   * for SQLite, the server's where the database has one), unless a Clock was given in the options (a test's fake
   * clock), which then decides. The suspect check and the loop's own timing stay on `clock`: they judge this loop
   * and this machine, not the agents.
   */
  private judgeTime(): Promise<number> | number {
    return this.opts.clock ? this.clock.now() : this.store.now();
  }

  private async pass(suspect: string | null, waitForDelivery: boolean): Promise<PassOutcome> {
    const started = this.clock.monotonic();
    const now = await this.judgeTime();
    const report = await checkHealth(this.store, now, { ...this.opts.policy, everyMs: this.opts.policy?.everyMs ?? this.everyMs, targets: this.targetIds(), suspect });
    this.logReport(report);
    // Beside the pass: convictions and crash proofs are committed; a receiver that never answers holds nothing up.
    const round = this.courier.kick();
    let busyMs = this.clock.monotonic() - started;
    const restarts = this.opts.restartStale ? await this.restartStale(this.opts.restartStale) : [];
    const files = this.clock.monotonic();
    await this.writeFiles();
    busyMs += this.clock.monotonic() - files;
    if (waitForDelivery) await round;
    const outcome = { ...report, delivery: this.courier.settled(), restarts };
    this.lastBusyMs = busyMs;
    this.emit('pass', outcome);
    return outcome;
  }

  /** Restarts what this pass convicted; a failure to restart one agent is logged, never stops the loop. */
  /** Marks this loop's health_loops row as stopped cleanly; a database that cannot be reached is only logged. */
  private async recordStopped(): Promise<void> {
    try {
      const loop = loopIdentity(this.opts.policy?.local ?? thisHost());
      const at = await this.judgeTime();
      await this.store.tx(async (s) => await recordLoopStopped(s, loop, at));
    } catch (err) {
      this.log.warn(`could not record that the health loop stopped: ${(err as Error).message}`);
    }
  }

  private async restartStale(opts: Omit<RestartOptions, 'respectBackoff' | 'dryRun'>): Promise<RestartResult[]> {
    try {
      const results = await restartConvicted(this.store, { ...opts, now: () => this.clock.now() });
      for (const r of results) {
        if (r.action === 'waiting') this.log.debug(`restart ${r.name}: ${r.steps.join('; ')}`);
        else this.log[r.action === 'error' || r.action === 'failed' ? 'warn' : 'info'](`restart ${r.name}: ${r.action}${r.error ? ` (${r.error})` : ''}; ${r.steps.join('; ')}`);
      }
      return results;
    } catch (err) {
      this.log.warn(`restarting convicted agents failed: ${(err as Error).message}`);
      return [];
    }
  }

  /** Seed 002's update_agent_states: convicts what is due now (the shared rule), without alerts or files. */
  async updateAgentStates(): Promise<ConvictResult> {
    return await convict(this.store, await this.judgeTime(), { local: this.opts.policy?.local ?? thisHost(), ...(this.opts.policy?.hold !== undefined ? { hold: this.opts.policy.hold } : {}) });
  }

  /**
   * Seed 002's is_agent_stale: true if the agent (a record or a name) is overdue by its own contract now; given a
   * last-heartbeat time instead, by the database's default contract.
   */
  async isAgentStale(agent: AgentRecord | string | Date | number): Promise<boolean> {
    const now = this.clock.now();
    if (agent instanceof Date || typeof agent === 'number') {
      const at = agent instanceof Date ? agent.getTime() : agent;
      return now - at >= staleAfterMs(this.store.contract);
    }
    const record = typeof agent === 'string' ? await this.store.getAgent(agent) : agent;
    return record ? isOverdue(record, now) : false;
  }

  /** Queues one synthetic alert to every target and delivers it (seed 003's test alert). */
  async sendTestAlert(): Promise<DeliveryResult> {
    const now = this.clock.now();
    const targets = this.targetIds();
    await this.store.tx(async (store) =>
      await insertAlert(store, { agentId: null, agentName: 'agentctl-test', kind: 'test', state: 'offline', eventId: null, createdAt: now, payload: {
        source: 'agentctl', kind: 'test', message: 'agentctl test alert: if you read this, alerts reach you', agent: { name: 'agentctl-test', id: null, group: null, host: null, pid: null },
        state: 'offline', previous_state: 'active', reason: 'test alert', evidence: { rule: 'test' }, at: new Date(now).toISOString(), monitor_host: (this.opts.policy?.local ?? thisHost()).host,
      } }, targets),
    );
    this.courier.reset();
    await this.courier.kick();
    return this.courier.settled();
  }

  private targetIds(): string[] {
    return (this.opts.alertTargets ?? []).map((t) => t.id);
  }

  private async writeFiles(): Promise<void> {
    const now = this.clock.now();
    if (this.opts.mapFile) writeFileAtomic(this.opts.mapFile, `${JSON.stringify(await buildHeartbeatMap(this.store, now), null, 2)}\n`);
    if (this.opts.metricsFile) writeFileAtomic(this.opts.metricsFile, await renderMetrics(this.store, now));
  }

  private logReport(r: HealthReport): void {
    if (r.suspect) {
      this.log.warn(`pass ${r.pass}: convicting no one: ${r.suspect}`);
      this.emit('suspect', r.suspect);
    }
    for (const g of r.holds) {
      // A mass hold doubts the observer; waiting for a host's fate is the ordinary course of a host going silent.
      this.log[g.rule === 'mass' ? 'warn' : 'info'](`pass ${r.pass}: ${g.reason}: ${g.agents.slice(0, 10).join(', ')}${g.agents.length > 10 ? ', …' : ''}`);
      this.emit('held', g.agents, g.reason);
    }
    for (const t of r.transitions) {
      const ev = Object.entries(t.evidence).filter(([, v]) => v !== null && v !== undefined).map(([k, v]) => `${k}=${String(v)}`).join(' ');
      this.log.info(`pass ${r.pass}: ${t.agent} ${t.from} → ${t.to}: ${t.reason} [${ev}]`);
      this.emit('transition', t);
    }
    for (const a of r.alerts) this.log.info(`pass ${r.pass}: ${a.kind} ${a.id} queued for ${a.agent} (${a.state})`);
    if (r.commandsExpired) this.log.info(`pass ${r.pass}: ${r.commandsExpired} command${r.commandsExpired === 1 ? '' : 's'} past ${r.commandsExpired === 1 ? 'its' : 'their'} deadline settled (queued: cancelled; executing: failed)`);
    this.log.debug(`pass ${r.pass}: ${r.transitions.length} transition(s) in ${r.durationMs.toFixed(1)}ms`);
  }

  /**
   * In the loop: a pass that comes far later than it was scheduled, a pass whose own work took far too long, or a
   * wall clock that moved unlike the monotonic one, suspects the observer. What its deliveries take does not count:
   * they run beside the loop, and a receiver that never answers must not make the loop doubt itself.
   */
  private observerSuspect(): string | null {
    const wall = this.clock.now();
    const mono = this.clock.monotonic();
    const prev = this.last;
    if (!prev) return null;
    const wallGap = wall - prev.wall;
    const monoGap = mono - prev.mono;
    const limit = Math.max(3 * this.everyMs, this.everyMs + (this.opts.pauseToleranceMs ?? 2000));
    const late = mono - prev.wakeAt;
    // A pause in the middle of the previous pass shows only as that pass's own work taking far too long.
    if (prev.busyMs > limit) return `the health loop was paused during its last pass (${formatDuration(prev.busyMs)})`;
    if (late > limit - this.everyMs) return `the health loop was paused: ${formatDuration(monoGap)} since its last pass (every ${formatDuration(this.everyMs)})`;
    if (Math.abs(wallGap - monoGap) > Math.max(2000, this.opts.pauseToleranceMs ?? 0)) {
      return wallGap > monoGap ? `the wall clock jumped ${formatDuration(wallGap - monoGap)} ahead (or the machine slept)` : `the wall clock stepped ${formatDuration(monoGap - wallGap)} back`;
    }
    return null;
  }

  private async guardedPass(suspect: string | null): Promise<void> {
    const started = this.clock.monotonic();
    this.lastBusyMs = 0;
    try {
      await this.pass(suspect, false);
    } catch (err) {
      this.log.error(`pass failed: ${(err as Error).message}`);
      if (this.listenerCount('error')) this.emit('error', err);
      this.lastBusyMs = this.clock.monotonic() - started;
    } finally {
      const mono = this.clock.monotonic();
      this.last = { wall: this.clock.now(), mono, busyMs: this.lastBusyMs, wakeAt: mono + this.everyMs };
    }
  }

  private sleep(ms: number, signal: AbortSignal): Promise<void> {
    if (this.stopping || signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        this.wake = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener('abort', done);
      this.wake = done;
    });
  }

  private withLock<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    return exclusive(
      this.store,
      {
        name: 'monitor',
        ...(this.opts.lockStaleMs !== undefined ? { staleMs: this.opts.lockStaleMs } : {}),
        onTakeover: (owner, ageMs) => this.log.warn(`took over the monitor lock of ${owner ? `pid ${owner.pid}` : 'an unknown process'}, abandoned ${formatDuration(ageMs)} ago`),
        onWarning: (message) => this.log.warn(message),
        onWait: (_owner, waitMs) => this.log.warn(`the monitor lock has no owner that can be asked; taking it over once stale (in ${formatDuration(waitMs)} at most)`),
      },
      (handle) => fn(handle.signal),
    );
  }
}
