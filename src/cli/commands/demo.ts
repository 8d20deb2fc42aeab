import type { Command } from 'commander';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getRegisteredAgents } from '../../core/agents.js';
import { healthLoopStatus } from '../../core/health/loop-status.js';
import { formatDuration, parseDuration } from '../../core/duration.js';
import { type ProcessRef, isSameProcess, signalProcess, waitGone } from '../../core/process-control.js';
import { safeText } from '../../core/text.js';
import { UsageError } from '../../errors.js';
import type { Store } from '../../store/store.js';
import { type CliContext, type GlobalOptions, contextFrom } from '../context.js';
import { type DemoProcess, isRunning, startAgentctl, stopAll, waitExitedSync } from '../demo-fleet.js';
import { DemoStory } from '../demo-story.js';
import { DemoChanges, type DemoTick, clockTime } from '../demo-changes.js';
import { painter } from '../render.js';
import { type Stopper, untilSignal } from '../signals.js';
import { renderStatus, watchFrames } from '../status-screen.js';

interface Flags {
  restart?: boolean;
  killAfter: string; // commander's default fills it in
  duration?: string;
  refresh: string; // commander's default fills it in
  keep?: boolean;
}

const VICTIM = 'demo-2';
const RESTART_BACKOFF = '1s';
/** Without a terminal (CI, a pipe) nobody is there to press Ctrl-C: the demo ends by itself after this long. */
const UNATTENDED_DURATION = '15s';
/** How long the wrappers and the monitor get to stop after SIGTERM before SIGKILL. */
const STOP_GRACE_MS = 5000;
const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/**
 * The three workers: light `node -e` loops that print what they do. Each gets its agent name and the database path
 * as arguments, so every process the demo starts names the database on its command line (easy to find with ps).
 */
const WORKERS: Record<string, string> = {
  'demo-1': "let n = 0; setInterval(() => console.log(`counted to ${++n}`), 1000);",
  'demo-2':
    'let n = 1, k = 0; const prime = (x) => { for (let d = 2; d * d <= x; d++) if (x % d === 0) return false; return true; };' +
    ' setInterval(() => { do n++; while (!prime(n)); console.log(`prime #${++k} is ${n}`); }, 700);',
  'demo-3':
    "const { createHash } = require('node:crypto'); let h = '', i = 0;" +
    " setInterval(() => { h = createHash('sha256').update(h + i++).digest('hex'); console.log(`hash chain step ${i}: ${h.slice(0, 12)}`); }, 1300);",
};
const AGENTS = Object.keys(WORKERS);

export function define(program: Command): void {
  program
    .command('demo')
    .summary('a first look: three agents, a health loop and a crash, in a temporary database')
    .description(
      'For a first look: start three small agents under agentctl run and the health loop (agentctl monitor) in a\n' +
        "temporary database and show status --watch; once all three beat and the health loop has passed (and not before\n" +
        "--kill-after), kill demo-2's worker with SIGKILL: the screen shows it go offline (and, with --restart, come back).\n" +
        'Ctrl-C (or the end of --duration) stops every process it started and removes the temporary database\n' +
        '(--keep keeps it and says where). AGENTCTL_DB is ignored: the demo never writes to your fleet\'s database\n' +
        'unless you pass --db. When stdout is not a terminal (a pipe, a log), it prints one line per change instead of\n' +
        'the screen.',
    )
    .option('--restart', "the killed agent comes back (its wrapper runs with --restart on-failure)")
    .option('--kill-after <dur>', "kill demo-2's worker this long after the start, or once all are running if later", '5s')
    .option('--duration <dur>', `end by itself after this long (default: at Ctrl-C on a terminal, after ${UNATTENDED_DURATION} otherwise)`)
    .option('--refresh <dur>', 'redraw interval', '500ms')
    .option('--keep', 'keep the temporary database (and the health loop\'s logs beside it) afterwards, and say where it is')
    .addHelpText('after', '\nExamples:\n  agentctl demo\n  agentctl demo --restart --kill-after 3s\n  agentctl --db /tmp/demo.db demo --duration 30s')
    .action(async (flags: Flags, cmd: Command) => {
      const g = cmd.optsWithGlobals() as GlobalOptions;
      if (g.json) throw new UsageError("demo is a screen for people and has no --json (run it with --keep, then 'agentctl --db PATH status --json')");
      const killAfterMs = parseDuration(flags.killAfter, '--kill-after', { allowZero: true });
      const refreshMs = parseDuration(flags.refresh, '--refresh');
      const duration = flags.duration ?? (process.stdout.isTTY ? undefined : UNATTENDED_DURATION);
      const durationMs = duration === undefined ? null : parseDuration(duration, '--duration');
      await runDemo(g, { restart: Boolean(flags.restart), keep: Boolean(flags.keep), killAfterMs, refreshMs, durationMs });
    });
}

interface DemoOptions {
  restart: boolean;
  keep: boolean;
  killAfterMs: number;
  refreshMs: number;
  durationMs: number | null;
}

/** Runs the demo until a signal or the duration, then stops everything it started, whatever happened meanwhile. */
async function runDemo(g: GlobalOptions, o: DemoOptions): Promise<void> {
  // Only an explicit --db: AGENTCTL_DB may point at a real fleet, which a demo must not touch.
  const tempDir = g.db === undefined ? mkdtempSync(join(tmpdir(), 'agentctl-demo-')) : undefined;
  const db = g.db ?? join(tempDir!, 'demo.db');
  const stop = untilSignal(SIGNALS);
  const procs: DemoProcess[] = [];
  let store: Store | undefined;
  // Last resort for an exit we do not control (the CLI exits at once on EPIPE, as in 'agentctl demo | head'):
  // nothing can be awaited then, so kill synchronously rather than leave agents running.
  const onExit = () => emergencyStop(procs, store, tempDir, o.keep);
  process.on('exit', onExit);
  // A reader that goes away ('agentctl demo | head') ends the demo like Ctrl-C, so the processes are stopped
  // properly; the CLI's own EPIPE handler would exit on the spot, leaving that to the last resort above.
  const pipeHandlers = process.stdout.listeners('error') as ((err: Error) => void)[];
  process.stdout.removeAllListeners('error');
  const onPipe = (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    stop.stop();
  };
  process.stdout.on('error', onPipe);
  let durationTimer: NodeJS.Timeout | undefined;
  try {
    const ctx = contextFrom({ ...g, db });
    // Created and migrated once here, before four processes race to do it (and an unusable file stops us first).
    store = await ctx.open('create');
    for (const name of AGENTS) procs.push(startAgentctl(name, db, runArgs(name, db, o.restart)));
    procs.push(startAgentctl('monitor', db, ['monitor', '--every', '1s']));
    const startedAt = Date.now();
    if (o.durationMs !== null) durationTimer = setTimeout(() => stop.stop(), o.durationMs);
    const story = new DemoStory({
      agents: AGENTS, victim: VICTIM, startedAt, killAt: startedAt + o.killAfterMs, restart: o.restart,
      backoffMs: parseDuration(RESTART_BACKOFF), db, kept: tempDir === undefined || o.keep,
    });
    const endsAt = o.durationMs === null ? null : startedAt + o.durationMs;
    const s = store;
    const tick = () => observe(ctx, s, story);
    // A screen redrawn in place is for a terminal; a pipe or a log gets one line per change instead of every frame.
    if (process.stdout.isTTY) await watchFrames(o.refreshMs, async () => frame(ctx, s, await tick(), procs, endsAt), stop);
    else await printChanges(ctx, tick, procs, startedAt, endsAt, o.refreshMs, stop);
  } finally {
    clearTimeout(durationTimer);
    await cleanUp(procs, store);
    await store?.close();
    store = undefined;
    if (tempDir && !o.keep) rmSync(tempDir, { recursive: true, force: true });
    process.off('exit', onExit);
    stop.dispose();
    // After an error before anything started (an unusable --db), the error line says it all.
    if (procs.length && process.stdout.writable) process.stdout.write(`${goodbye(db, tempDir !== undefined && !o.keep)}\n`);
    process.stdout.off('error', onPipe);
    for (const h of pipeHandlers) process.stdout.on('error', h);
  }
}

/** `agentctl run` for one demo agent: short contracts so the screen moves within seconds. */
function runArgs(name: string, db: string, restart: boolean): string[] {
  return [
    'run', '--name', name, '--interval', '1s', '--stale-after', '3', '--offline-after', '10s',
    ...(restart ? ['--restart', 'on-failure', '--backoff', RESTART_BACKOFF] : []),
    '--', process.execPath, '-e', WORKERS[name]!, '--', name, db,
  ];
}

type Observed = DemoTick & { now: number };

/** Reads the demo's agents and the health loop's last pass, advances the story, and does its killing. */
async function observe(ctx: CliContext, store: Store, story: DemoStory): Promise<Observed> {
  const now = ctx.now();
  const agents = (await getRegisteredAgents(store, now)).filter((a) => AGENTS.includes(a.name));
  const lastPassAt = (await healthLoopStatus(store, now)).lastPassAt;
  const step = story.tick({ agents, lastPassAt }, now);
  // The victim's recorded pid, checked with its start time right before, so a recycled pid is never hit.
  if (step.kill && isSameProcess(step.kill)) process.kill(step.kill.pid, 'SIGKILL');
  return { now, step, agents, lastPassAt };
}

function whenText(now: number, endsAt: number | null): string {
  return endsAt === null ? 'Ctrl-C to stop and clean up' : `ends in ${formatDuration(Math.max(0, Math.ceil((endsAt - now) / 1000)) * 1000)}, Ctrl-C to stop now`;
}

/** Without a terminal: a header once, then a timestamped line for each change, until stopped. */
async function printChanges(
  ctx: CliContext, tick: () => Promise<Observed>, procs: DemoProcess[], startedAt: number, endsAt: number | null, refreshMs: number, stop: Stopper,
): Promise<void> {
  process.stdout.write(`agentctl demo · ${safeText(ctx.config.dbLabel)} · ${whenText(startedAt, endsAt)} · not a terminal: one line per change\n`);
  const changes = new DemoChanges(startedAt);
  while (!stop.stopped) {
    const t = await tick();
    for (const line of changes.next(t, procs)) process.stdout.write(`${clockTime(t.now)}  ${line}\n`);
    await stop.sleep(refreshMs);
  }
}

/** One screen: where and when, what is happening, the status table, and the last line each process wrote. */
async function frame(ctx: CliContext, store: Store, t: Observed, procs: DemoProcess[], endsAt: number | null): Promise<string> {
  const { now, step } = t;
  const c = painter(ctx.color);
  const when = whenText(now, endsAt);
  const width = Math.max(...procs.map((p) => p.label.length));
  // The monitor's log lines start with an ISO timestamp: the header already says when. What a process wrote and
  // the story's line (which quotes the agent's reason) are shown through safeText, as everything from agents is.
  const output = procs.map((p) => `  ${p.label.padEnd(width)} › ${safeText(p.lastLine.replace(/^\d{4}-\d\d-\d\dT[\d:.]+Z\s+/, ''))}${p.exit ? c.dim(` [exited: ${p.exit.signal ?? `code ${p.exit.code}`}]`) : ''}`);
  return [
    c.dim(`agentctl demo · ${safeText(ctx.config.dbLabel)} · ${new Date(now).toLocaleTimeString()} · ${when}`),
    c.bold(safeText(step.line + (step.countdown ?? ''))),
    '',
    await renderStatus(ctx, store, {}),
    '',
    c.dim('last output of each process:'),
    ...output,
  ].join('\n');
}

/**
 * Stops the wrappers and the monitor (SIGTERM, SIGKILL after a grace or at a second Ctrl-C), then kills any worker
 * the database still names as alive: a wrapper that had to be SIGKILLed cannot have stopped its own.
 */
async function cleanUp(procs: DemoProcess[], store: Store | undefined): Promise<void> {
  let hurryNow = () => {};
  const hurry = new Promise<void>((r) => (hurryNow = r));
  const again = () => hurryNow();
  for (const s of SIGNALS) process.on(s, again);
  try {
    if (procs.some(isRunning)) process.stderr.write('stopping the demo agents and the health loop…\n');
    await stopAll(procs, STOP_GRACE_MS, hurry);
    const left = (await workerRefs(store)).filter((r) => signalProcess(r, 'SIGKILL') !== null);
    if (left.length) await waitGone(left, STOP_GRACE_MS);
  } finally {
    for (const s of SIGNALS) process.off(s, again);
  }
}

/** The demo agents' recorded worker processes (none if the database cannot be read). */
async function workerRefs(store: Store | undefined): Promise<ProcessRef[]> {
  const refs: ProcessRef[] = [];
  try {
    for (const name of AGENTS) {
      const a = await store?.getAgent(name);
      if (a?.pid) refs.push({ pid: a.pid, startTime: a.pidStartTime });
    }
  } catch {
    // An unreadable database names no workers; the wrappers were stopped all the same.
  }
  return refs;
}

/** workerRefs at process exit, when nothing can be awaited: read straight from the demo's own SQLite file. */
function workerRefsNow(store: Store | undefined): ProcessRef[] {
  const refs: ProcessRef[] = [];
  try {
    const read = store?.db.prepare('SELECT pid, pid_start_time FROM agents WHERE name = ?');
    for (const name of AGENTS) {
      const a = read?.get(name) as { pid: number | null; pid_start_time: number | null } | undefined;
      if (a?.pid) refs.push({ pid: a.pid, startTime: a.pid_start_time });
    }
  } catch {
    // An unreadable database names no workers; the wrappers were stopped all the same.
  }
  return refs;
}

/**
 * Synchronous stop at process exit, when nothing can be awaited: SIGTERM to the wrappers (they forward it to a worker
 * the database may not name yet), SIGKILL to the monitor and to the workers the database names.
 */
function emergencyStop(procs: DemoProcess[], store: Store | undefined, tempDir: string | undefined, keep: boolean): void {
  const running = procs.filter(isRunning);
  for (const p of running) p.child.kill(p.label === 'monitor' ? 'SIGKILL' : 'SIGTERM');
  for (const r of workerRefsNow(store)) signalProcess(r, 'SIGKILL');
  // The wrappers still write their goodbyes: removing the directory under them would race (and fail).
  const exited = waitExitedSync(running, STOP_GRACE_MS);
  if (tempDir && !keep && exited) rmSync(tempDir, { recursive: true, force: true, maxRetries: 3 });
}

function goodbye(db: string, removed: boolean): string {
  return removed
    ? 'agentctl demo: every agent and the health loop stopped; the temporary database is removed (--keep keeps it). Next: agentctl --help'
    : `agentctl demo: every agent and the health loop stopped; the database is at ${db} (see what happened: agentctl --db ${db} history)`;
}
