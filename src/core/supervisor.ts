import { type ChildProcess, spawn } from 'node:child_process';
import { constants } from 'node:os';
import { AgentctlError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import { clearSupervisor, markFailed } from '../store/lifecycle.js';
import type { RestartPolicy } from '../store/rows.js';
import { type Store, openStore } from '../store/store.js';
import { type ExitStatus, RESTART_BACKOFF, type RestartBackoff, exitCodeOf, nextRestart, policyRestarts } from './backoff.js';
import { HeartbeatAgent, type StartHow } from './heartbeat-agent.js';
import { HttpHeartbeatAgent } from './http-agent.js';
import { processStartTime } from './host.js';
import { type Logger, SILENT } from './logger.js';
import { RotatingLog } from './log-file.js';
import { setTimeout as sleepPromise } from 'node:timers/promises';

/** The command given to `agentctl run` could not be started (not found, not executable): exit code 127, as a shell says. */
export class CommandNotStartedError extends AgentctlError {
  constructor(command: string, cause: Error) {
    super('E_NOT_STARTED', ExitCode.NOT_STARTED, `cannot start '${command}': ${(cause as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such command (check the name and PATH)' : cause.message}`, { cause });
  }
}

export interface SuperviseOptions {
  name: string;
  /** The database (unused with `server`: then no database is opened). */
  db: string;
  /**
   * Beat over HTTP to `agentctl serve` at `url` with an agent token instead of writing the database. The interval
   * is always sent; the stale multiplier and offline threshold only when given here (else the server's stay).
   */
  server?: { url: string; token: string; staleMultiplier?: number | undefined; offlineAfterMs?: number | undefined; reportTimeoutMs?: number };
  argv: string[];
  cwd: string;
  intervalMs: number;
  staleMultiplier: number;
  offlineAfterMs: number;
  policy: RestartPolicy;
  maxRestarts: number;
  /** Child output goes here (rotated by size) instead of passing through. */
  logFile?: string;
  logMaxBytes?: number;
  backoff?: RestartBackoff;
  /** Why this run starts (set by `agentctl restart`: the event of the new incarnation says so). */
  start?: { reason: string; evidence: Record<string, unknown> };
  busyTimeoutMs?: number;
  logger?: Logger;
  clock?: () => number;
}

export interface SuperviseResult {
  exitCode: number;
  exit: ExitStatus;
  restarts: number;
  failed: boolean;
}

const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * `agentctl run`: runs a command without a shell in its own session and process group, heartbeats for it while it
 * lives, forwards SIGINT/SIGTERM/SIGHUP to its group, marks it offline with its exit code or signal the moment it
 * exits, and restarts it per policy with backoff until it has failed `maxRestarts` unstable runs in a row.
 * Resolves with the exit code to pass on: the child's, 128 + signal number, or throws CommandNotStartedError (127).
 * That the child is ours and leads its own group is what lets `agentctl restart` signal the whole group: it checks
 * that this process (by its command line) is the child's parent, never what the row says (see restart.ts).
 */
export async function supervise(o: SuperviseOptions): Promise<SuperviseResult> {
  const log = o.logger ?? SILENT;
  const clock = o.clock ?? Date.now;
  const backoff = o.backoff ?? RESTART_BACKOFF;
  const sink = o.logFile ? new RotatingLog(o.logFile, o.logMaxBytes) : undefined;
  const supervisor = { pid: process.pid, startTime: processStartTime(process.pid), policy: o.policy, maxRestarts: o.maxRestarts };
  // The wrapper's token is the wrapper's: the command it runs does not inherit it.
  const env = o.server ? Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'AGENTCTL_TOKEN')) : process.env;
  let child: ChildProcess | undefined;
  let stopping: NodeJS.Signals | null = null;
  let wake: (() => void) | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    stopping = sig;
    if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(-child.pid, sig);
      } catch {
        child.kill(sig);
      }
    }
    wake?.();
  };
  for (const s of FORWARDED) process.on(s, onSignal);

  let how: StartHow = o.start ? { ...o.start, restarted: true } : {};
  let unstable = 0;
  let restarts = 0;
  let exit: ExitStatus = { code: null, signal: null };
  let uptimeMs = 0;
  let failed = false;
  try {
    for (;;) {
      const c = spawn(o.argv[0]!, o.argv.slice(1), { cwd: o.cwd, env, detached: true, stdio: sink ? ['inherit', 'pipe', 'pipe'] : 'inherit' });
      child = c;
      const closed = new Promise<void>((r) => c.once('close', () => r()));
      const exited = new Promise<ExitStatus>((r) => c.once('exit', (code, signal) => r({ code, signal })));
      const started = await new Promise<Error | null>((r) => {
        c.once('spawn', () => r(null));
        c.once('error', (err) => r(err));
      });
      if (started) {
        if (restarts === 0) throw new CommandNotStartedError(o.argv[0]!, started);
        exit = { code: 127, signal: null };
        uptimeMs = 0;
        log.error?.(`agentctl run: cannot start ${o.argv[0]}: ${started.message}`);
      } else {
        if (sink) for (const stream of [c.stdout!, c.stderr!]) stream.on('data', (d: Buffer) => sink.write(d));
        ({ exit, uptimeMs } = await runOnce(o, c, how, supervisor, exited, clock, log, () => stopping));
        if (sink) await Promise.race([closed, sleep(1000)]); // a grandchild may hold the pipe open
      }
      if (stopping || !policyRestarts(o.policy, exit)) break;
      const next = nextRestart(unstable, uptimeMs, o.maxRestarts, backoff);
      unstable = next.unstable;
      if (next.action === 'fail') {
        failed = true;
        // Over HTTP the exit ping has made it offline already; `failed` is a state only the database records.
        if (!o.server) await withStore(o, async (store) =>
          await markFailed(store, o.name, `restart attempts exhausted: ${unstable} unstable exits in a row`, { rule: 'restart', policy: o.policy, unstable_exits: unstable, max_restarts: o.maxRestarts, last_exit_code: exit.code, last_signal: exit.signal }, clock()),
        );
        log.error?.(`agentctl run: ${o.name} failed: ${unstable} unstable exits in a row (limit ${o.maxRestarts})`);
        break;
      }
      log.info?.(`agentctl run: ${o.name} ${describeExit(exit)}; restarting in ${next.delayMs} ms (attempt ${unstable} of ${o.maxRestarts})`);
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((r) => {
        wake = r;
        timer = setTimeout(r, next.delayMs);
      });
      clearTimeout(timer);
      wake = undefined;
      if (stopping) break;
      restarts++;
      how = {
        reason: `restarted by agentctl run (${o.policy}, attempt ${unstable} of ${o.maxRestarts})`,
        evidence: { rule: 'restart', policy: o.policy, attempt: unstable, max_restarts: o.maxRestarts, backoff_ms: next.delayMs, previous_exit_code: exit.code, previous_signal: exit.signal },
        restarted: true,
      };
    }
  } finally {
    for (const s of FORWARDED) process.off(s, onSignal);
    sink?.close();
    try {
      if (!o.server) await withStore(o, async (store) => await clearSupervisor(store, o.name, process.pid));
    } catch (err) {
      log.warn?.(`agentctl run: could not clear the supervisor of ${o.name}: ${(err as Error).message}`);
    }
  }
  return { exitCode: exitCodeOf(exit, constants.signals as Record<string, number>), exit, restarts, failed };
}

/** One life of the child: register it, beat for it, and record its exit (offline, with code or signal) at once. */
async function runOnce(o: SuperviseOptions, c: ChildProcess, how: StartHow, supervisor: StartHow['supervision'], exited: Promise<ExitStatus>, clock: () => number, log: Logger, stopping: () => NodeJS.Signals | null): Promise<{ exit: ExitStatus; uptimeMs: number }> {
  const startedAt = clock();
  const agent = o.server
    ? new HttpHeartbeatAgent({ name: o.name, server: o.server.url, token: o.server.token, intervalMs: o.intervalMs, staleMultiplier: o.server.staleMultiplier, offlineAfterMs: o.server.offlineAfterMs, pid: c.pid!, logger: log, ...(o.server.reportTimeoutMs !== undefined ? { exitDeadlineMs: o.server.reportTimeoutMs } : {}) })
    : new HeartbeatAgent({
    name: o.name, db: o.db, interval: o.intervalMs, staleAfter: o.staleMultiplier, offlineAfter: o.offlineAfterMs,
    handleSignals: false, pid: c.pid!, launch: { argv: o.argv, cwd: o.cwd }, logger: log, clock,
    ...(o.busyTimeoutMs !== undefined ? { busyTimeout: Math.min(o.busyTimeoutMs, 1000) } : {}),
  });
  try {
    await agent.start({ ...how, supervision: supervisor });
  } catch (err) {
    // The database is unusable, or the server refused the token: do not leave the child running unsupervised.
    process.kill(-c.pid!, 'SIGTERM');
    await exited;
    throw err;
  }
  const exit = await exited;
  const uptimeMs = clock() - startedAt;
  const sig = stopping();
  await agent.stop(describeExit(exit), {
    evidence: { rule: 'exit', detected_by: 'agentctl run', pid: c.pid, exit_code: exit.code, signal: exit.signal, uptime_ms: uptimeMs, ...(sig ? { forwarded_signal: sig } : {}) },
  });
  return { exit, uptimeMs };
}

function describeExit(exit: ExitStatus): string {
  return exit.signal ? `killed by ${exit.signal}` : `exited with code ${exit.code}`;
}

async function withStore<T>(o: SuperviseOptions, fn: (store: Store) => Promise<T>): Promise<T> {
  const store = await openStore({ path: o.db, mode: 'existing', ...(o.busyTimeoutMs !== undefined ? { busyTimeoutMs: o.busyTimeoutMs } : {}) });
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

function sleep(ms: number): Promise<void> {
  return sleepPromise(ms, undefined, { ref: false }); // never what keeps the process alive
}
