import type { ChalkInstance } from 'chalk';
import { MAX_CLOCK_OFFSET_MS, hostClockOffsets } from '../store/fleet.js';
import { type AgentQuery, type ReadAgent, CLOCK_COLUMNS, readAgents, uptimeOf } from '../core/agents.js';
import { formatDuration } from '../core/duration.js';
import { healthLoopStatus } from '../core/health/loop-status.js';
import { countStates } from '../core/state.js';
import { safeText } from '../core/text.js';
import type { AgentState } from '../store/rows.js';
import type { Store } from '../store/store.js';
import type { CliContext } from './context.js';
import { lastSeen, oneLine, summaryLine } from './format.js';
import { ChunkedWriter } from './output.js';
import { Columns, paintState, painter } from './render.js';
import { type Stopper, untilSignal } from './signals.js';

// The status table (loaded only for it: `status --json` needs neither colours nor columns).

const HEAD = ['NAME', 'STATE', 'LAST HEARTBEAT', 'UPTIME', 'INTERVAL', 'PID', 'HOST', 'RESTARTS', 'MESSAGE'];
const TABLE_COLUMNS = ['name', 'pid', 'host', 'restart_count', 'message'] as const;
const K = CLOCK_COLUMNS.length;

/** One agent's cells, as plain text made safe for a terminal (the state is painted when the line is rendered). */
function cells({ row, clock, derived: d }: ReadAgent, now: number): string[] {
  const age = clock.lastHeartbeatAt === null ? null : now - clock.lastHeartbeatAt;
  const uptime = uptimeOf(clock, d, now);
  const message = row[K + 4] ?? (d.state !== clock.state || d.state === 'offline' ? (d.reason ?? '') : '');
  return [
    safeText(String(row[K])),
    d.state + (d.state === 'maintenance' && clock.maintenanceUntil ? ` ${formatDuration(clock.maintenanceUntil - now)} left` : ''),
    lastSeen({ lastHeartbeatAt: clock.lastHeartbeatAt, heartbeatAgeMs: age, state: d.state, intervalMs: clock.intervalMs }),
    uptime === null ? '-' : formatDuration(uptime),
    formatDuration(clock.intervalMs),
    row[K + 1] === null ? '-' : String(row[K + 1]),
    row[K + 2] === null ? '-' : safeText(String(row[K + 2])),
    String(Number(row[K + 3])),
    oneLine(String(message), 48),
  ];
}

/** The state cell painted: the state in its colour, a maintenance window's time left dimmed. */
function paintStateCell(c: ChalkInstance, cell: string): string {
  const sp = cell.indexOf(' ');
  return sp < 0 ? paintState(c, cell as AgentState) : paintState(c, cell.slice(0, sp) as AgentState) + c.dim(cell.slice(sp));
}

interface Table {
  columns: Columns;
  counts: Record<AgentState, number>;
}

async function readTable(store: Store, q: AgentQuery, now: number, c: ChalkInstance): Promise<Table> {
  const columns = new Columns(HEAD, [undefined, (cell) => paintStateCell(c, cell)]);
  const counts = countStates([]);
  for await (const batch of readAgents(store, now, q, TABLE_COLUMNS)) {
    for (const a of batch) {
      counts[a.derived.state]++;
      columns.add(cells(a, now));
    }
  }
  return { columns, counts };
}

function nothingToShow(ctx: CliContext, store: Store | undefined, q: AgentQuery): string {
  if (!store) return `No agents yet: ${ctx.config.dbLabel} does not exist. Register one with 'agentctl register NAME' or 'agentctl heartbeat NAME'.`;
  return q.states || q.group || q.names?.length ? 'No agents match.' : "No agents registered. Register one with 'agentctl register NAME' or 'agentctl heartbeat NAME'.";
}

/**
 * One status screen as text: the table and the summary; with `refreshMs`, the --watch header above. The warning
 * that no health loop keeps up goes to `warn` when given (stderr: stdout carries only the data), else it is the
 * screen's last line (the demo's frame). `store` undefined means the database does not exist yet.
 */
export async function renderStatus(ctx: CliContext, store: Store | undefined, q: AgentQuery, refreshMs?: number, warn?: (line: string) => void): Promise<string> {
  const now = ctx.now();
  const c = painter(ctx.color);
  const lines: string[] = [];
  if (refreshMs !== undefined) lines.push(c.dim(`agentctl status · ${safeText(ctx.config.dbLabel)} · ${new Date(now).toLocaleTimeString()} · every ${formatDuration(refreshMs)}, Ctrl-C to quit`), '');
  const loop = store ? await healthLoopStatus(store, now) : null;
  const t = store ? await readTable(store, q, now, c) : null;
  if (!store || !t || !t.columns.size) {
    lines.push(nothingToShow(ctx, store, q));
    return lines.join('\n');
  }
  lines.push(...t.columns.lines((h) => c.bold(h)), summaryLine(t.counts, (s) => paintState(c, s)));
  // Principle 4: status is right without a health loop, but nobody persists, alerts or cancels: say so.
  if (loop?.warning) {
    if (warn) warn(`warning: ${loop.warning}`);
    else lines.push(c.yellow(`warning: ${loop.warning}`));
  }
  for (const w of store ? await clockWarnings(store) : []) {
    if (warn) warn(w);
    else lines.push(c.yellow(w));
  }
  return lines.join('\n');
}

/**
 * `agentctl status` once: the table written line by line in chunks as it is rendered, then the summary; the
 * health-loop warning on stderr.
 */
export async function printStatus(ctx: CliContext, store: Store | undefined, q: AgentQuery): Promise<void> {
  const now = ctx.now();
  const c = painter(ctx.color);
  const loop = store ? await healthLoopStatus(store, now) : null;
  const t = store ? await readTable(store, q, now, c) : null;
  if (!store || !t || !t.columns.size) {
    ctx.out(nothingToShow(ctx, store, q));
    return;
  }
  const w = new ChunkedWriter();
  for (const line of t.columns.lines((h) => c.bold(h))) {
    const wait = w.write(`${line}\n`);
    if (wait) await wait;
  }
  void w.write(`${summaryLine(t.counts, (s) => paintState(c, s))}\n`);
  await w.flush();
  if (loop?.warning) ctx.err(c.yellow(`warning: ${loop.warning}`));
  for (const w of await clockWarnings(store)) ctx.err(c.yellow(w));
}

/** One warning line per host whose clock is off the database server's by more than a second (PostgreSQL only). */
async function clockWarnings(store: Store): Promise<string[]> {
  return (await hostClockOffsets(store, MAX_CLOCK_OFFSET_MS)).map(
    (h) => `warning: the clock of host ${safeText(h.host)} is off by ${formatDuration(h.maxOffsetMs)} (${h.agents === 1 ? '1 agent' : `${h.agents} agents`}); the database server's clock judges its agents, but fix its time sync`,
  );
}

/**
 * Redraws `frame()` every refreshMs until `stop` is raised (by default: SIGINT/SIGTERM): in place on a terminal, as
 * successive snapshots otherwise. A stopper passed in stays the caller's to dispose (the demo keeps its signal
 * handlers through its cleanup).
 */
export async function watchFrames(refreshMs: number, frame: () => string | Promise<string>, given?: Stopper): Promise<void> {
  const tty = Boolean(process.stdout.isTTY);
  const stop = given ?? untilSignal(['SIGINT', 'SIGTERM']);
  if (tty) process.stdout.write('\x1b[?25l');
  try {
    while (!stop.stopped) {
      const text = await frame();
      process.stdout.write(tty ? `\x1b[H\x1b[2J${text}\n` : `${text}\n\n`);
      await stop.sleep(refreshMs);
    }
  } finally {
    if (tty) process.stdout.write('\x1b[?25h');
    if (!given) stop.dispose();
  }
}
