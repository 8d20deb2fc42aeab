import { spawn } from 'node:child_process';
import { closeSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AgentNotFoundError, AgentctlError, OperationError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import { withExclusiveLock } from '../store/lock.js';
import { openAppend } from '../store/safe-files.js';
import { markFailed, noteRestartAttempt } from '../store/lifecycle.js';
import type { AgentRecord } from '../store/rows.js';
import type { Store } from '../store/store.js';
import { clockStart } from './state.js';
import { RESTART_BACKOFF, nextRestart } from './backoff.js';
import { bootId, hostName, pidExists } from './host.js';
import { type ProcessRef, isSameProcess, signalProcess, waitGone } from './process-control.js';
import { setTimeout as sleep } from 'node:timers/promises';

/** The agent has no launch command, so there is nothing to start again. */
export class NoLaunchCommandError extends AgentctlError {
  constructor(name: string) {
    super('E_NO_LAUNCH', ExitCode.FAILED, `agent '${name}' has no launch command to restart it with: register one with 'agentctl register ${name} -- CMD ARGS…', or start it under 'agentctl run --name ${name} -- CMD ARGS…'`);
  }
}

export interface RestartOptions {
  /** Where NAME.log goes. */
  logDir: string;
  /** SIGTERM, then SIGKILL after this long (default 10 s). */
  graceMs?: number;
  /** Only say what would be done. */
  dryRun?: boolean;
  /** Honour the backoff and the `failed` limit (the health loop does; an operator's restart does not, and resets the count). */
  respectBackoff?: boolean;
  /** Unstable restarts before `failed` when the agent has no limit of its own (default 10). */
  maxRestarts?: number;
  now?: () => number;
  /** The agentctl executable the new `agentctl run` is started with (default: this package's bin/agentctl). */
  agentctlPath?: string;
  /** How long to wait for the new process to register (default 10 s). */
  startTimeoutMs?: number;
}

export interface RestartResult {
  name: string;
  action: 'restarted' | 'would-restart' | 'waiting' | 'failed' | 'error';
  /** What was done (or, for a dry run, would be), step by step, for the operator. */
  steps: string[];
  pid?: number;
  logFile?: string;
  /** For 'waiting': when the backoff allows the next restart. */
  retryAt?: number;
  error?: AgentctlError | Error;
}

const DEFAULT_BIN = fileURLToPath(new URL('../../bin/agentctl', import.meta.url));

/**
 * Restarts agents by their launch command, holding the exclusive 'maintenance' lock (see restartAgentLocked).
 * Errors of single agents are returned in their result, so one bad agent does not stop the others.
 */
export async function restartAgents(store: Store, names: string[], opts: RestartOptions): Promise<RestartResult[]> {
  return withExclusiveLock(store.path, { name: 'maintenance', retries: 20 }, async (lock) => {
    const results: RestartResult[] = [];
    for (const name of names) {
      if (lock.signal.aborted) break;
      try {
        results.push(await restartAgentLocked(store, name, opts));
      } catch (err) {
        results.push({ name, action: 'error', steps: [], error: err as Error });
      }
    }
    return results;
  });
}

/** Restarts one agent (taking the lock); throws its error instead of returning it. For the health loop's --restart-stale. */
export async function restartAgent(store: Store, name: string, opts: RestartOptions): Promise<RestartResult> {
  const [r] = await restartAgents(store, [name], opts);
  if (r!.error) throw r!.error;
  return r!;
}

/**
 * Restarts one agent; the caller holds the maintenance lock. If its recorded process is alive and still that
 * process (pid and start time match, same host and boot), it gets SIGTERM — through its process group when it
 * leads one — and its `agentctl run` supervisor too, then SIGKILL after the grace. A pid that now belongs to
 * another process is never signalled. Then the launch command starts again, detached, under `agentctl run`,
 * with output to NAME.log in the log directory; the new incarnation's event says it was restarted.
 */
export async function restartAgentLocked(store: Store, name: string, opts: RestartOptions): Promise<RestartResult> {
  const now = opts.now ?? Date.now;
  const a = store.getAgent(name);
  if (!a) throw new AgentNotFoundError(name);
  if (!a.launch) throw new NoLaunchCommandError(name);
  const steps: string[] = [];
  const maxRestarts = a.maxRestarts ?? opts.maxRestarts ?? RESTART_BACKOFF.maxRestarts;
  const uptime = clockStart(a) - a.startedAt; // how long this incarnation kept beating
  const next = nextRestart(a.restartAttempts, uptime, maxRestarts);
  if (opts.respectBackoff) {
    if (next.action === 'fail') {
      if (!opts.dryRun) markFailed(store, name, `restart attempts exhausted: ${next.unstable} unstable runs in a row`, { rule: 'restart', unstable_exits: next.unstable, max_restarts: maxRestarts }, now());
      return { name, action: 'failed', steps: [`${next.unstable} unstable runs in a row (limit ${maxRestarts}): marked failed, not restarted`] };
    }
    if (a.lastRestartAt !== null && now() < a.lastRestartAt + next.delayMs) {
      return { name, action: 'waiting', steps: [`backing off: next restart allowed at ${new Date(a.lastRestartAt + next.delayMs).toISOString()}`], retryAt: a.lastRestartAt + next.delayMs };
    }
  }
  const { targets, notes } = processesToStop(a);
  steps.push(...notes);
  const logFile = join(opts.logDir, `${name}.log`);
  const argv = runArgv(store.path, a, logFile, maxRestarts, next.unstable, !!opts.respectBackoff);
  steps.push(`start: ${a.launch.argv.join(' ')} (in ${a.launch.cwd ?? '.'}) under agentctl run, output to ${logFile}`);
  if (opts.dryRun) return { name, action: 'would-restart', steps, logFile };

  await stopProcesses(targets, opts.graceMs ?? 10_000, steps);
  noteRestartAttempt(store, name, opts.respectBackoff ? next.unstable : 0, now());
  const before = store.getAgent(name)!;
  mkdirSync(opts.logDir, { recursive: true });
  const out = openAppend(logFile, 0o640);
  let exitedEarly: number | null = null;
  try {
    const child = spawn(process.execPath, [opts.agentctlPath ?? DEFAULT_BIN, ...argv], { cwd: a.launch.cwd ?? process.cwd(), detached: true, stdio: ['ignore', out, out] });
    child.once('exit', (code) => (exitedEarly = code ?? 1));
    child.once('error', () => (exitedEarly = 127));
    child.unref();
  } finally {
    closeSync(out);
  }
  const deadline = Date.now() + (opts.startTimeoutMs ?? 10_000);
  while (Date.now() < deadline && exitedEarly === null) {
    const now2 = store.getAgent(name);
    if (now2 && now2.incarnation > before.incarnation && now2.pid !== null) {
      steps.push(`started: pid ${now2.pid}, incarnation ${now2.incarnation}`);
      return { name, action: 'restarted', steps, pid: now2.pid, logFile };
    }
    await sleep(25);
  }
  throw new OperationError(`agent '${name}' did not come back${exitedEarly !== null ? ` (agentctl run exited with ${exitedEarly})` : ''}; see ${logFile}`);
}

/** The processes to stop: the agent's (if it is still that process, on this host and boot) and its supervisor's. */
interface Target {
  what: string;
  ref: ProcessRef;
  supervisor?: boolean;
}

function processesToStop(a: AgentRecord): { targets: Target[]; notes: string[] } {
  const targets: Target[] = [];
  const notes: string[] = [];
  const here = (a.host === null || a.host === hostName()) && (a.bootId === null || a.bootId === bootId());
  if (a.pid !== null && !here) {
    if (a.host !== null && a.host !== hostName()) throw new OperationError(`agent '${a.name}' runs on host ${a.host}; restart it there`);
    notes.push(`pid ${a.pid} was recorded before this host rebooted: nothing to stop`);
  } else if (a.pid !== null) {
    const ref = { pid: a.pid, startTime: a.pidStartTime };
    if (isSameProcess(ref)) targets.push({ what: `agent process ${a.pid}`, ref });
    else if (pidExists(a.pid)) notes.push(`pid ${a.pid} now belongs to another process (its start time differs): not signalled`);
    else notes.push(`pid ${a.pid} is not running: nothing to stop`);
  }
  if (a.supervisorPid !== null && here) {
    const ref = { pid: a.supervisorPid, startTime: a.supervisorStartTime };
    if (isSameProcess(ref)) targets.unshift({ what: `its agentctl run (pid ${a.supervisorPid})`, ref, supervisor: true });
  }
  for (const t of targets) notes.push(`stop ${t.what}: SIGTERM, SIGKILL after the grace`);
  return { targets, notes };
}

async function stopProcesses(targets: Target[], graceMs: number, steps: string[]): Promise<void> {
  if (!targets.length) return;
  for (const t of targets) signalProcess(t.ref, 'SIGTERM');
  if (await waitGone(targets.map((t) => t.ref), graceMs)) {
    steps.push('stopped after SIGTERM');
    return;
  }
  // The agent first; its supervisor then gets a moment to record the exit before it is killed too.
  const agents = targets.filter((t) => !t.supervisor);
  for (const t of agents) if (signalProcess(t.ref, 'SIGKILL')) steps.push(`${t.what} ignored SIGTERM for ${graceMs} ms: SIGKILL`);
  const supervisors = targets.filter((t) => t.supervisor);
  if (supervisors.length && !(await waitGone(supervisors.map((t) => t.ref), 2000))) {
    for (const t of supervisors) if (signalProcess(t.ref, 'SIGKILL')) steps.push(`${t.what} did not exit: SIGKILL`);
  }
  if (!(await waitGone(targets.map((t) => t.ref), 5000))) throw new OperationError(`could not stop ${targets.map((t) => t.what).join(' and ')}, even with SIGKILL`);
}

/** The `agentctl run` command line that starts the agent again, with its contract, policy and the restart's evidence. */
function runArgv(dbPath: string, a: AgentRecord, logFile: string, maxRestarts: number, attempt: number, byMonitor: boolean): string[] {
  const evidence = { rule: 'restart', by: byMonitor ? 'health loop' : 'agentctl restart', attempt, previous_pid: a.pid, previous_incarnation: a.incarnation, previous_state: a.state };
  return [
    '--db', dbPath, 'run', '--name', a.name,
    '--interval', `${a.intervalMs}ms`, '--stale-after', String(a.staleMultiplier), '--offline-after', `${a.offlineAfterMs}ms`,
    '--restart', a.restartPolicy ?? 'never', '--max-restarts', String(maxRestarts), '--log', logFile,
    '--restarted', JSON.stringify(evidence), '--', ...a.launch!.argv,
  ];
}
