import { type ChildProcess, spawn } from 'node:child_process';
import { processStartTime } from '../core/host.js';
import { sleepSync } from '../store/retry.js';
import { fileURLToPath } from 'node:url';

/** The CLI entry point this build runs from: the demo starts its children with the same node and the same agentctl. */
export const AGENTCTL_BIN = fileURLToPath(new URL('../../bin/agentctl', import.meta.url));

/** A child `agentctl` process of the demo, with the last line it (or the worker it wraps) wrote. */
export interface DemoProcess {
  readonly label: string;
  readonly child: ChildProcess;
  lastLine: string;
  /** How it ended, once it has. */
  exit: { code: number | null; signal: NodeJS.Signals | null } | null;
  readonly exited: Promise<void>;
}

/**
 * Starts `agentctl --db DB ARGS…` as a child of this process. Its output (and that of a worker it wraps, which
 * inherits the same pipes) is read line by line so that only the last line is kept: on the demo's screen nothing
 * but the demo writes. It stays in our process group, so a Ctrl-C typed in the terminal reaches it directly even if
 * the demo itself were stuck; the demo signals it too, for a SIGINT sent to the demo alone or the end of --duration.
 */
export function startAgentctl(label: string, db: string, args: string[]): DemoProcess {
  const child = spawn(process.execPath, [AGENTCTL_BIN, '--db', db, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const p: DemoProcess = {
    label,
    child,
    lastLine: '',
    exit: null,
    exited: new Promise<void>((resolve) => {
      child.once('exit', (code, signal) => {
        p.exit = { code, signal };
        resolve();
      });
      // A process that cannot be spawned emits 'error' and no 'exit'.
      child.once('error', (err) => {
        p.exit ??= { code: 127, signal: null };
        p.lastLine = `cannot start: ${err.message}`;
        resolve();
      });
    }),
  };
  for (const stream of [child.stdout!, child.stderr!]) {
    let partial = '';
    stream.setEncoding('utf8').on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop()!;
      const last = lines.map((l) => l.trim()).filter(Boolean).at(-1);
      if (last) p.lastLine = last;
    });
  }
  return p;
}

/** Whether a demo process is still running. */
export function isRunning(p: DemoProcess): boolean {
  return p.exit === null;
}

/**
 * Stops every process: SIGTERM (the wrappers forward it to their workers, the monitor finishes its pass), then
 * SIGKILL to whatever still runs after `graceMs`, or at once when `hurry` resolves (a second Ctrl-C).
 * Resolves once all have exited.
 */
export async function stopAll(procs: DemoProcess[], graceMs: number, hurry: Promise<void>): Promise<void> {
  for (const p of procs) if (isRunning(p)) p.child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const graceOver = new Promise<void>((r) => (timer = setTimeout(r, graceMs)));
  await Promise.race([Promise.all(procs.map((p) => p.exited)), graceOver, hurry]);
  clearTimeout(timer);
  for (const p of procs) if (isRunning(p)) p.child.kill('SIGKILL');
  await Promise.all(procs.map((p) => p.exited));
}

/**
 * Blocks (no event loop: for process exit) until every process in `procs` has exited, or `ms` pass; returns whether
 * they all did. Our own children stay zombies until we reap them, which cannot happen here, so a zombie counts as gone.
 */
export function waitExitedSync(procs: DemoProcess[], ms: number): boolean {
  const deadline = Date.now() + ms;
  for (;;) {
    // Gone, or a zombie (exited, not yet reaped): processStartTime is null for both.
    if (procs.every((p) => p.child.pid === undefined || processStartTime(p.child.pid) === null)) return true;
    if (Date.now() >= deadline) return false;
    sleepSync(25);
  }
}
