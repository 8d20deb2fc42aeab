import type { Command } from 'commander';
import Table from 'cli-table3';
import { type AgentView, getRegisteredAgents } from '../../core/agents.js';
import { formatDuration, parseDuration } from '../../core/duration.js';
import { parseList, validateGroup } from '../../core/validate.js';
import { DatabaseMissingError, UsageError } from '../../errors.js';
import { AGENT_STATES, type AgentState } from '../../store/rows.js';
import type { Store } from '../../store/store.js';
import { type CliContext, cliContext } from '../context.js';
import { countStates } from '../../core/state.js';
import { agentJson, lastSeen, oneLine, paintState, painter, summaryLine } from '../render.js';
import { healthLoopStatus } from '../../core/health/loop-status.js';
import { type Stopper, untilSignal } from '../signals.js';

interface Flags {
  state?: string;
  group?: string;
  watch?: boolean;
  refresh: string; // commander's default fills it in
  all?: boolean;
}

/** Parses --state a,b,c into states, rejecting unknown words. */
export function parseStates(text: string | undefined): AgentState[] | undefined {
  return text === undefined ? undefined : parseList(text, AGENT_STATES, '--state');
}

export function define(program: Command): void {
  program
    .command('status')
    .summary('show agents and their states')
    .description(
      'Show each agent: state (computed now from its last heartbeat and its own contract), last heartbeat, uptime,\n' +
        'interval, pid, host, restarts and message, then a summary line.',
    )
    .argument('[names...]', 'only these agents')
    .option('--state <states>', `only agents in these states, comma-separated (${AGENT_STATES.join(',')})`)
    .option('--group <group>', 'only agents of this group')
    .option('--all', 'include deregistered agents')
    .option('--watch', 'redraw in place until Ctrl-C')
    .option('--refresh <dur>', 'redraw interval for --watch', '2s')
    .addHelpText('after', '\nExamples:\n  agentctl status\n  agentctl status --state stale,offline --group batch\n  agentctl status --watch --refresh 1s\n  agentctl status --json | jq \'.agents[] | select(.state=="offline") | .name\'')
    .action(async (names: string[], flags: Flags, cmd: Command) => {
      const ctx = cliContext(cmd);
      const states = parseStates(flags.state);
      if (flags.group !== undefined) validateGroup(flags.group);
      const refreshMs = parseDuration(flags.refresh, '--refresh');
      if (flags.watch && ctx.json) throw new UsageError('--watch and --json do not go together (poll status --json instead)');
      const query = { names, states, ...(flags.group !== undefined ? { group: flags.group } : {}), includeDeregistered: Boolean(flags.all) };
      let store: Store | undefined;
      try {
        try {
          store = ctx.open('existing');
        } catch (err) {
          if (!(err instanceof DatabaseMissingError) || names.length) throw err;
        }
        if (!flags.watch) {
          ctx.out(renderStatus(ctx, store, query));
          return;
        }
        await watchFrames(refreshMs, () => {
          if (!store) {
            try {
              store = ctx.open('existing');
            } catch (err) {
              if (!(err instanceof DatabaseMissingError)) throw err;
            }
          }
          return renderStatus(ctx, store, query, refreshMs);
        });
      } finally {
        store?.close();
      }
    });
}

type Query = Parameters<typeof getRegisteredAgents>[2];

/**
 * One status screen (or its JSON): the table, the summary and the health-loop warning; with `refreshMs`, the
 * --watch header above. `store` undefined means the database does not exist yet. Also the table of `agentctl demo`.
 */
export function renderStatus(ctx: CliContext, store: Store | undefined, q: Query, refreshMs?: number): string {
  const now = ctx.now();
  const agents = store ? getRegisteredAgents(store, now, q) : [];
  if (ctx.json) return JSON.stringify(statusJson(store, ctx.config.dbPath, now, agents), null, 2);
  const c = painter(ctx.color);
  const lines: string[] = [];
  if (refreshMs !== undefined) lines.push(c.dim(`agentctl status · ${ctx.config.dbPath} · ${new Date(now).toLocaleTimeString()} · every ${formatDuration(refreshMs)}, Ctrl-C to quit`), '');
  if (!store) {
    lines.push(`No agents yet: ${ctx.config.dbPath} does not exist. Register one with 'agentctl register NAME' or 'agentctl heartbeat NAME'.`);
    return lines.join('\n');
  }
  if (!agents.length) {
    lines.push(q?.states || q?.group || q?.names?.length ? 'No agents match.' : "No agents registered. Register one with 'agentctl register NAME' or 'agentctl heartbeat NAME'.");
    return lines.join('\n');
  }
  lines.push(table(agents, c, now), summaryLine(agents, c));
  // Principle 4: status is right without a health loop, but nobody persists, alerts or cancels: say so.
  const loop = healthLoopStatus(store, now);
  if (loop.warning) lines.push(c.yellow(`warning: ${loop.warning}`));
  return lines.join('\n');
}

/** The document of `status --json` (and of the HTTP API's agent list) for `agents`, as read at `now`. */
export function statusJson(store: Store | undefined, dbPath: string, now: number, agents: AgentView[]) {
  return { generatedAt: new Date(now).toISOString(), database: dbPath, agents: agents.map(agentJson), summary: { total: agents.length, ...countStates(agents) }, healthLoop: store ? healthLoopStatus(store, now) : null };
}

function table(agents: AgentView[], c: ReturnType<typeof painter>, now: number): string {
  const head = ['NAME', 'STATE', 'LAST HEARTBEAT', 'UPTIME', 'INTERVAL', 'PID', 'HOST', 'RESTARTS', 'MESSAGE'];
  const rows = agents.map((a) => [
    a.name,
    paintState(c, a.state) + (a.state === 'maintenance' && a.maintenanceUntil ? c.dim(` ${formatDuration(a.maintenanceUntil - now)} left`) : ''),
    lastSeen(a),
    a.uptimeMs === null ? '-' : formatDuration(a.uptimeMs),
    formatDuration(a.intervalMs),
    a.pid === null ? '-' : String(a.pid),
    a.host ?? '-',
    String(a.restartCount),
    oneLine(a.message ?? (a.state !== a.persistedState || a.state === 'offline' ? (a.stateReason ?? '') : ''), 48),
  ]);
  return plainTable(head.map((h) => c.bold(h)), rows);
}

/** A borderless table (cli-table3, loaded only here): columns two spaces apart, widths measured without colour codes. */
function plainTable(head: string[], rows: string[][]): string {
  const blank = { top: '', 'top-mid': '', 'top-left': '', 'top-right': '', bottom: '', 'bottom-mid': '', 'bottom-left': '', 'bottom-right': '', left: '', 'left-mid': '', mid: '', 'mid-mid': '', right: '', 'right-mid': '', middle: '  ' };
  const t = new Table({ head, chars: blank, style: { head: [], border: [], 'padding-left': 0, 'padding-right': 0 } });
  t.push(...rows);
  return t.toString().split('\n').map((l) => l.trimEnd()).join('\n');
}


/**
 * Redraws `frame()` every refreshMs until `stop` is raised (by default: SIGINT/SIGTERM): in place on a terminal, as
 * successive snapshots otherwise. A stopper passed in stays the caller's to dispose (the demo keeps its signal
 * handlers through its cleanup).
 */
export async function watchFrames(refreshMs: number, frame: () => string, given?: Stopper): Promise<void> {
  const tty = Boolean(process.stdout.isTTY);
  const stop = given ?? untilSignal(['SIGINT', 'SIGTERM']);
  if (tty) process.stdout.write('\x1b[?25l');
  try {
    while (!stop.stopped) {
      const text = frame();
      process.stdout.write(tty ? `\x1b[H\x1b[2J${text}\n` : `${text}\n\n`);
      await stop.sleep(refreshMs);
    }
  } finally {
    if (tty) process.stdout.write('\x1b[?25h');
    if (!given) stop.dispose();
  }
}
