import { spawn } from 'node:child_process';
import { isPostgresUrl } from '../store/engine.js';
import { closeSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AgentNotFoundError, AgentctlError, OperationError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import { openAppend } from '../store/safe-files.js';
import { exclusive } from '../store/lease.js';
import { NAME_RE } from './validate.js';
import { markFailed, noteRefusal, noteRestartAttempt } from '../store/lifecycle.js';
import type { AgentRecord } from '../store/rows.js';
import type { Store } from '../store/store.js';
import { clockStart } from './state.js';
import { RESTART_BACKOFF, nextRestart } from './backoff.js';
import { bootId, hostName, pidExists } from './host.js';
import { type Ownership, assertMayAct, commandAs, databaseOwnership } from './ownership.js';
import { type ProcessRef, type SignalRules, agentctlRunProblem, isSameProcess, parentPid, processGroup, signalProblem, signalProcess, waitGone } from './process-control.js';
import { setTimeout as sleep } from 'node:timers/promises';

/** The agent has no launch command, so there is nothing to start again. */
export class NoLaunchCommandError extends AgentctlError {
  constructor(name: string) {
    super('E_NO_LAUNCH', ExitCode.FAILED, `agent '${name}' has no launch command to restart it with: register one with 'agentctl register ${name} -- CMD ARGS…', or start it under 'agentctl run --name ${name} -- CMD ARGS…'`);
  }
}

/**
 * A recorded process that agentctl may not signal (pid 1, its own group, another uid's process, a supervisor that is
 * no agentctl run): the restart of that agent is refused as a whole, so no second copy starts beside the first.
 */
export class SignalRefusedError extends OperationError {
  constructor(name: string, r: Refusal) {
    super(`refusing to signal pid ${r.pid} (${r.role === 'agent' ? 'the agent process' : 'the agentctl run'} of '${name}'): ${r.problem}; nothing was stopped or started (a row is data anyone who can write the database could have written)`, { code: 'E_REFUSED' });
  }
}

interface Refusal {
  role: 'agent' | 'supervisor';
  pid: number;
  problem: string;
}

export interface RestartOptions {
  /** Where NAME.log goes (run as the database's owner: logs/ beside the database, which the owner may write). */
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
  /** Act as root even when others may write the database (strict mode off: --allow-shared-db). */
  allowSharedDb?: boolean;
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
  const own = databaseOwnership(store.path);
  try {
    assertMayAct(own, 'run launch commands or signal processes', Boolean(opts.allowSharedDb));
  } catch (err) {
    const now = (opts.now ?? Date.now)();
    const evidence = { strict: true, path: own.realPath, owner_uid: own.owner.uid, writable_by: own.writableBy };
    if (!opts.dryRun) for (const name of names) await noteRefusal(store, name, 'not restarted: others may write the database (strict mode)', evidence, now);
    throw err;
  }
  return exclusive(store, { name: 'maintenance', retries: 20 }, async (lock) => {
    const results: RestartResult[] = [];
    for (const name of names) {
      if (lock.signal.aborted) break;
      try {
        results.push(await restartAgentLocked(store, name, opts, own));
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
 * process (pid and start time match, same host and boot), it gets SIGTERM — through its process group when its
 * live `agentctl run` started it in one — and its `agentctl run` supervisor too, then SIGKILL after the grace. A pid that now belongs to
 * another process is never signalled. Then the launch command starts again, detached, under `agentctl run`,
 * with output to NAME.log in the log directory; the new incarnation's event says it was restarted. Only what the
 * database's owner could do is done (see ownership.ts): as root on another uid's database, the command runs as that
 * owner and only the owner's processes are signalled; a recorded process that may not be signalled refuses the
 * restart (SignalRefusedError, and an event with the evidence).
 */
export async function restartAgentLocked(store: Store, name: string, opts: RestartOptions, own: Ownership = databaseOwnership(store.path)): Promise<RestartResult> {
  const now = opts.now ?? Date.now;
  const a = await store.getAgent(name);
  if (!a) throw new AgentNotFoundError(name);
  if (!a.launch) throw new NoLaunchCommandError(name);
  const steps: string[] = [];
  const maxRestarts = a.maxRestarts ?? opts.maxRestarts ?? RESTART_BACKOFF.maxRestarts;
  const uptime = clockStart(a) - a.startedAt; // how long this incarnation kept beating
  const next = nextRestart(a.restartAttempts, uptime, maxRestarts);
  if (opts.respectBackoff) {
    if (next.action === 'fail') {
      if (!opts.dryRun) await markFailed(store, name, `restart attempts exhausted: ${next.unstable} unstable runs in a row`, { rule: 'restart', unstable_exits: next.unstable, max_restarts: maxRestarts }, now());
      return { name, action: 'failed', steps: [`${next.unstable} unstable runs in a row (limit ${maxRestarts}): marked failed, not restarted`] };
    }
    if (a.lastRestartAt !== null && now() < a.lastRestartAt + next.delayMs) {
      return { name, action: 'waiting', steps: [`backing off: next restart allowed at ${new Date(a.lastRestartAt + next.delayMs).toISOString()}`], retryAt: a.lastRestartAt + next.delayMs };
    }
  }
  const rules: SignalRules = { uid: own.uid };
  const { targets, notes, refusals } = processesToStop(a, rules);
  if (refusals.length) {
    if (!opts.dryRun) for (const r of refusals) await noteRefusal(store, name, `not restarted: refused to signal pid ${r.pid}`, { pid: r.pid, role: r.role, refused: r.problem, allowed_uid: rules.uid }, now());
    throw new SignalRefusedError(name, refusals[0]!);
  }
  steps.push(...notes);
  // Run as the owner, the agent writes its log where the owner may: logs/ beside the database, not root's log directory.
  const logDir = own.runAs ? join(dirname(own.realPath), 'logs') : opts.logDir;
  const logFile = join(logDir, `${name}.log`);
  const argv = runArgv(store.path, a, logFile, maxRestarts, next.unstable, !!opts.respectBackoff);
  const as = own.runAs ? ` as ${own.runAs.user ?? `uid ${own.runAs.uid}`} (the database's owner)` : '';
  steps.push(`start: ${a.launch.argv.join(' ')} (in ${a.launch.cwd ?? '.'}) under agentctl run${as}, output to ${logFile}`);
  // A foreign writer may have stored any name: one that is not a valid agent name (a '/' or '..' in it) must not
  // choose where NAME.log is created.
  const unsafeName = `agent '${name}' has a name agentctl would not register (another program wrote it): it is not restarted, since its log file's name would be unsafe; re-register it under a valid name`;
  if (opts.dryRun) {
    if (!NAME_RE.test(name)) steps.push(`refuse: ${unsafeName}`);
    return { name, action: 'would-restart', steps, logFile };
  }
  if (!NAME_RE.test(name)) throw new OperationError(unsafeName);

  await stopProcesses(targets, opts.graceMs ?? 10_000, steps, rules);
  await noteRestartAttempt(store, name, opts.respectBackoff ? next.unstable : 0, now());
  const before = (await store.getAgent(name))!;
  // A database URL goes to the new run in its environment, not on its command line, where ps shows any password.
  const env = isPostgresUrl(store.path) ? { ...process.env, AGENTCTL_DB: store.path } : undefined;
  const started = startRun(own, [opts.agentctlPath ?? DEFAULT_BIN, ...argv], a.launch.cwd ?? process.cwd(), logDir, logFile, env);
  const deadline = Date.now() + (opts.startTimeoutMs ?? 10_000);
  while (Date.now() < deadline && started.exitCode === null) {
    const now2 = await store.getAgent(name);
    if (now2 && now2.incarnation > before.incarnation && now2.pid !== null) {
      steps.push(`started: pid ${now2.pid}, incarnation ${now2.incarnation}`);
      return { name, action: 'restarted', steps, pid: now2.pid, logFile };
    }
    await sleep(25);
  }
  const asOwner = own.runAs ? ` (it runs as uid ${own.runAs.uid}, through setpriv: check that this user may write ${logDir} and read the database)` : '';
  throw new OperationError(`agent '${name}' did not come back${started.exitCode !== null ? ` (agentctl run exited with ${started.exitCode})` : ''}; see ${logFile}${asOwner}`);
}

/**
 * Starts `agentctl run` (`command`, after node) detached, in `cwd`, with its output appended to `logFile`. As root
 * for another uid's database it runs as that owner (commandAs), and the owner makes the log directory and opens the
 * log: root never opens a path in the owner's directory. `exitCode` is set if it exits (127: it could not start).
 */
function startRun(own: Ownership, command: string[], cwd: string, logDir: string, logFile: string, env?: NodeJS.ProcessEnv): { exitCode: number | null } {
  const state = { exitCode: null as number | null };
  const watch = (child: ReturnType<typeof spawn>) => {
    child.once('exit', (code) => (state.exitCode = code ?? 1));
    child.once('error', () => (state.exitCode = 127));
    child.unref();
  };
  if (own.runAs) {
    const c = commandAs(own.runAs, [process.execPath, ...command], logDir, logFile);
    watch(spawn(c.file, c.args, { cwd, detached: true, stdio: 'ignore', env: c.env }));
    return state;
  }
  mkdirSync(logDir, { recursive: true });
  const out = openAppend(logFile, 0o640);
  try {
    watch(spawn(process.execPath, command, { cwd, detached: true, stdio: ['ignore', out, out], ...(env ? { env } : {}) }));
  } finally {
    closeSync(out);
  }
  return state;
}

/** The processes to stop: the agent's (if it is still that process, on this host and boot) and its supervisor's. */
interface Target {
  what: string;
  ref: ProcessRef;
  supervisor?: boolean;
}

/**
 * What to stop, and what may not be signalled (signalProblem: pid 1, our own group, another uid; a supervisor must
 * be an agentctl run of this agent). The agent's process group is signalled only when its live, verified agentctl
 * run is its parent and it leads its own group: that is how agentctl run starts it. A row cannot claim it.
 */
function processesToStop(a: AgentRecord, rules: SignalRules): { targets: Target[]; notes: string[]; refusals: Refusal[] } {
  const targets: Target[] = [];
  const notes: string[] = [];
  const refusals: Refusal[] = [];
  const here = (a.host === null || a.host === hostName()) && (a.bootId === null || a.bootId === bootId());
  let supervisor: number | null = null;
  if (a.supervisorPid !== null && here) {
    const ref = { pid: a.supervisorPid, startTime: a.supervisorStartTime };
    if (a.supervisorPid <= 1 || isSameProcess(ref)) {
      const problem = signalProblem(a.supervisorPid, rules) ?? agentctlRunProblem(a.supervisorPid, a.name);
      if (problem) refusals.push({ role: 'supervisor', pid: a.supervisorPid, problem });
      else {
        targets.push({ what: `its agentctl run (pid ${a.supervisorPid})`, ref, supervisor: true });
        supervisor = a.supervisorPid;
      }
    }
  }
  if (a.pid !== null && !here) {
    if (a.host !== null && a.host !== hostName()) throw new OperationError(`agent '${a.name}' runs on host ${a.host}; restart it there`);
    notes.push(`pid ${a.pid} was recorded before this host rebooted: nothing to stop`);
  } else if (a.pid !== null) {
    const ref = { pid: a.pid, startTime: a.pidStartTime };
    if (a.pid <= 1 || isSameProcess(ref)) {
      const problem = signalProblem(a.pid, rules);
      const group = supervisor !== null && parentPid(a.pid) === supervisor && processGroup(a.pid) === a.pid;
      if (problem) refusals.push({ role: 'agent', pid: a.pid, problem });
      else targets.push({ what: group ? `agent process group ${a.pid}` : `agent process ${a.pid}`, ref: { ...ref, group } });
    } else if (pidExists(a.pid)) notes.push(`pid ${a.pid} now belongs to another process (its start time differs): not signalled`);
    else notes.push(`pid ${a.pid} is not running: nothing to stop`);
  }
  for (const t of targets) notes.push(`stop ${t.what}: SIGTERM, SIGKILL after the grace`);
  return { targets, notes, refusals };
}

async function stopProcesses(targets: Target[], graceMs: number, steps: string[], rules: SignalRules): Promise<void> {
  if (!targets.length) return;
  for (const t of targets) signalProcess(t.ref, 'SIGTERM', rules);
  if (await waitGone(targets.map((t) => t.ref), graceMs)) {
    steps.push('stopped after SIGTERM');
    return;
  }
  // The agent first; its supervisor then gets a moment to record the exit before it is killed too.
  const agents = targets.filter((t) => !t.supervisor);
  for (const t of agents) if (signalProcess(t.ref, 'SIGKILL', rules)) steps.push(`${t.what} ignored SIGTERM for ${graceMs} ms: SIGKILL`);
  const supervisors = targets.filter((t) => t.supervisor);
  if (supervisors.length && !(await waitGone(supervisors.map((t) => t.ref), 2000))) {
    for (const t of supervisors) if (signalProcess(t.ref, 'SIGKILL', rules)) steps.push(`${t.what} did not exit: SIGKILL`);
  }
  if (!(await waitGone(targets.map((t) => t.ref), 5000))) throw new OperationError(`could not stop ${targets.map((t) => t.what).join(' and ')}, even with SIGKILL`);
}

/** The `agentctl run` command line that starts the agent again, with its contract, policy and the restart's evidence. */
function runArgv(dbPath: string, a: AgentRecord, logFile: string, maxRestarts: number, attempt: number, byMonitor: boolean): string[] {
  const evidence = { rule: 'restart', by: byMonitor ? 'health loop' : 'agentctl restart', attempt, previous_pid: a.pid, previous_incarnation: a.incarnation, previous_state: a.state };
  return [
    ...(isPostgresUrl(dbPath) ? [] : ['--db', dbPath]), 'run', '--name', a.name,
    '--interval', `${a.intervalMs}ms`, '--stale-after', String(a.staleMultiplier), '--offline-after', `${a.offlineAfterMs}ms`,
    '--restart', a.restartPolicy ?? 'never', '--max-restarts', String(maxRestarts), '--log', logFile,
    '--restarted', JSON.stringify(evidence), '--', ...a.launch!.argv,
  ];
}
