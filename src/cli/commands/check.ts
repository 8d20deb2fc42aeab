import type { Command } from 'commander';
import { CLOCK_COLUMNS, readAgents } from '../../core/agents.js';
import { formatDuration } from '../../core/duration.js';
import { healthLoopStatus } from '../../core/health/loop-status.js';
import { countStates, stateSeverity } from '../../core/state.js';
import { pluginText } from '../../core/text.js';
import { validateGroup, validateName } from '../../core/validate.js';
import { AgentctlError, AgentNotFoundError } from '../../errors.js';
import { CheckCode } from '../../exit-codes.js';
import type { AgentState } from '../../store/rows.js';
import { type FleetScope, type ProblemAgent, countDerivedStates, worstAgents } from '../../store/fleet.js';
import type { Store } from '../../store/store.js';
import { cliContext } from '../context.js';
import { summaryLine } from '../format.js';
import { ChunkedWriter } from '../output.js';

const LABELS = ['OK', 'WARNING', 'CRITICAL', 'UNKNOWN'] as const;
const SHOWN = 5;

/** What check says of a fleet: the counts per state and the worst agents, both computed in SQL. */
export interface FleetCounts {
  counts: Record<AgentState, number>;
  total: number;
  worst: ProblemAgent[];
}

/** Counts and worst agents of `scope` at `now`; an unknown name throws AgentNotFoundError. */
export async function readFleetCounts(store: Store, now: number, scope: FleetScope): Promise<FleetCounts> {
  for (const name of new Set(scope.names ?? [])) {
    validateName(name);
    if (!(await store.agentRow(['id'], name))) throw new AgentNotFoundError(name);
  }
  const counts = { ...countStates([]), ...(await countDerivedStates(store, now, scope)) };
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  return { counts, total, worst: await worstAgents(store, now, scope, SHOWN) };
}

/**
 * The check verdict: the worst state decides; problems are named first, worst first. Agent text goes through
 * `text`: pluginText for the plugin line, so it stays one line and only its own `|` starts the performance data;
 * as it is for --json.
 */
export function verdict(f: FleetCounts, now: number, text: (s: string) => string = pluginText): { code: 0 | 1 | 2 | 3; line: string } {
  if (!f.total) return { code: CheckCode.UNKNOWN, line: 'no agents registered' };
  const worst = Math.max(0, ...(Object.entries(f.counts) as [AgentState, number][]).filter(([, n]) => n > 0).map(([s]) => stateSeverity(s))) as 0 | 1 | 2;
  const problems = f.counts.offline + f.counts.failed + f.counts.stale + f.counts.error;
  const named = f.worst.map((a) => {
    const seen = a.lastHeartbeatAt === null ? 'never beat' : `last heartbeat ${formatDuration(now - a.lastHeartbeatAt)} ago`;
    return `${text(a.name)} ${a.state} (${a.state === 'error' && a.message ? text(a.message) : seen})`;
  });
  const shown = named.join(', ') + (problems > named.length ? `, and ${problems - named.length} more` : '');
  const perf = Object.entries(f.counts).map(([s, n]) => `${s}=${n}`).join(' ');
  return { code: worst, line: `${shown ? `${shown}; ` : ''}${summaryLine(f.counts)} | total=${f.total} ${perf}` };
}

export function define(program: Command): void {
  program
    .command('check')
    .summary('one line and a monitoring-plugin exit code')
    .description(
      'Check agents (all registered ones, or those named) and print one line, Nagios/Icinga style.\n' +
        'Exit 0 OK; 1 WARNING (stale, error, stuck initializing); 2 CRITICAL (offline, failed);\n' +
        '3 UNKNOWN (unknown name, no agents, unusable database, bad arguments). Maintenance counts as OK.',
    )
    .argument('[names...]', 'only these agents')
    .option('--group <group>', 'only agents of this group')
    .addHelpText('after', '\nExamples:\n  agentctl check                      # every agent\n  agentctl check db-writer backup     # just these\n  */1 * * * * agentctl check --group batch || notify-me')
    .action(async (names: string[], flags: { group?: string }, cmd: Command) => {
      const ctx = cliContext(cmd);
      const scope: FleetScope = { names, ...(flags.group !== undefined ? { group: flags.group } : {}) };
      let now = ctx.now();
      const text = ctx.json ? (s: string) => s : pluginText;
      let result: { code: number; line: string };
      let store: Store | undefined;
      try {
        try {
          if (flags.group !== undefined) validateGroup(flags.group);
          store = await ctx.open('read');
          now = ctx.now(); // by the database server's clock, when there is one
          result = verdict(await readFleetCounts(store, now, scope), now, text);
          // A health loop that has run here and then stopped is a problem of its own; a site without one is not warned.
          const loop = await healthLoopStatus(store, now);
          if (loop.ran && loop.warning && result.code < CheckCode.WARNING) result = { ...result, code: CheckCode.WARNING };
          if (loop.ran && loop.warning && result.code !== CheckCode.UNKNOWN) result = { ...result, line: `${loop.warning}; ${result.line}` };
        } catch (err) {
          if (!(err instanceof AgentctlError)) throw err;
          result = { code: CheckCode.UNKNOWN, line: err instanceof AgentNotFoundError ? `no agent named '${text(err.agentName)}'` : text(err.message) };
          await store?.close();
          store = undefined;
        }
        if (ctx.json) await printCheckJson(store, now, scope, result);
        else ctx.out(`${LABELS[result.code]}: ${result.line}`);
        process.exitCode = result.code;
      } finally {
        await store?.close();
      }
    });
}

/** check --json: the verdict, then every agent (written as it is read) with its state and severity. */
async function printCheckJson(store: Store | undefined, now: number, scope: FleetScope, result: { code: number; line: string }): Promise<void> {
  const w = new ChunkedWriter();
  void w.write(`{"status":${JSON.stringify(LABELS[result.code])},"code":${result.code},"message":${JSON.stringify(result.line)},"agents":[`);
  let n = 0;
  if (store) {
    for await (const batch of readAgents(store, now, scope, ['name'])) {
      for (const a of batch) {
        const age = a.clock.lastHeartbeatAt === null ? null : now - a.clock.lastHeartbeatAt;
        const s = a.derived.state;
        const wait = w.write(`${n++ ? ',' : ''}{"name":${JSON.stringify(String(a.row[CLOCK_COLUMNS.length]))},"state":"${s}","severity":"${LABELS[stateSeverity(s)]}","heartbeatAgeMs":${age === null ? 'null' : age}}`);
        if (wait) await wait;
      }
    }
  }
  void w.write(']}\n');
  await w.flush();
}
