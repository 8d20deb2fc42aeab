import type { Command } from 'commander';
import { type AgentQuery, readAgents } from '../../core/agents.js';
import { parseDuration } from '../../core/duration.js';
import { redactUrl } from '../../core/redact.js';
import { healthLoopStatus } from '../../core/health/loop-status.js';
import { countStates } from '../../core/state.js';
import { parseList, validateGroup } from '../../core/validate.js';
import { DatabaseMissingError, UsageError } from '../../errors.js';
import { AGENT_STATES, type AgentState } from '../../store/rows.js';
import type { Store } from '../../store/store.js';
import { type CliContext, cliContext } from '../context.js';
import { AGENT_JSON_COLUMNS, agentJsonText } from '../format.js';
import { type Pieces, nestedJson } from '../../core/json-text.js';
import { writePieces } from '../output.js';

// Only what `status --json` needs is imported here; the table (colours, columns) is loaded when it is drawn.

interface Flags {
  state?: string;
  group?: string;
  watch?: boolean;
  refresh?: string;
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
        'interval, pid, host, restarts and message, then a summary line. A warning (no health loop keeping up) goes to\n' +
        'stderr, so the summary is the last line of stdout; with --watch it is the last line of the screen.',
    )
    .argument('[names...]', 'only these agents')
    .option('--state <states>', `only agents in these states, comma-separated (${AGENT_STATES.join(',')})`)
    .option('--group <group>', 'only agents of this group')
    .option('--all', 'include deregistered agents')
    .option('--watch', 'redraw in place until Ctrl-C')
    .option('--refresh <dur>', 'redraw interval for --watch (default: 2s)')
    .addHelpText('after', '\nExamples:\n  agentctl status\n  agentctl status --state stale,offline --group batch\n  agentctl status --watch --refresh 1s\n  agentctl status --json | jq \'.agents[] | select(.state=="offline") | .name\'')
    .action(async (names: string[], flags: Flags, cmd: Command) => {
      const ctx = cliContext(cmd);
      const states = parseStates(flags.state);
      if (flags.group !== undefined) validateGroup(flags.group);
      const refreshMs = parseDuration(flags.refresh ?? '2s', '--refresh');
      if (flags.refresh !== undefined && !flags.watch) throw new UsageError('--refresh applies only to --watch (agentctl status --watch --refresh 1s)');
      if (flags.watch && ctx.json) throw new UsageError('--watch and --json do not go together (poll status --json instead)');
      const query: AgentQuery = { names, states, ...(flags.group !== undefined ? { group: flags.group } : {}), includeDeregistered: Boolean(flags.all) };
      let store: Store | undefined;
      try {
        try {
          store = await ctx.open('read');
        } catch (err) {
          // Only a live view waits for the file to appear; a one-off status says it is missing (exit 1).
          if (!(err instanceof DatabaseMissingError) || names.length || !flags.watch) throw err;
        }
        if (ctx.json) return await printStatusJson(ctx, store, query);
        const screen = await import('../status-screen.js');
        if (!flags.watch) return await screen.printStatus(ctx, store, query);
        // A live screen for a person: the warning is its last line, redrawn with it.
        await screen.watchFrames(refreshMs, async () => {
          // A snapshot (a reader without write access, no writer present) never sees new writes: look again.
          if (store?.snapshot) {
            await store.close();
            store = undefined;
          }
          if (!store) {
            try {
              store = await ctx.open('read');
            } catch (err) {
              if (!(err instanceof DatabaseMissingError)) throw err;
            }
          }
          return screen.renderStatus(ctx, store, query, refreshMs);
        });
      } finally {
        await store?.close();
      }
    });
}

/**
 * `status --json`, written as it is read: each agent's row becomes its JSON text once and goes out in chunks, so
 * memory does not grow with the fleet. The document is the one JSON.stringify(…, null, 2) gives for
 * { generatedAt, database, agents: agentJson(view)…, summary, healthLoop }, with stored JSON (metadata, evidence)
 * spliced as stored.
 */
export async function printStatusJson(ctx: CliContext, store: Store | undefined, q: AgentQuery): Promise<void> {
  await writePieces(statusJsonText(ctx, store, q, ctx.now()));
}

/** The text of `status --json` at `now`, in pieces (one per agent), read in one snapshot of the database. */
export function statusJsonText(ctx: Pick<CliContext, 'config'>, store: Store | undefined, q: AgentQuery, now: number): Pieces {
  return store ? store.readStream((s) => statusJsonPieces(ctx, s, q, now)) : statusJsonPieces(ctx, store, q, now);
}

async function* statusJsonPieces(ctx: Pick<CliContext, 'config'>, store: Store | undefined, q: AgentQuery, now: number): AsyncGenerator<string | string[]> {
  yield `{\n  "generatedAt": ${JSON.stringify(new Date(now).toISOString())},\n  "database": ${JSON.stringify(redactUrl(ctx.config.dbPath))},\n  "agents": [`;
  const counts = countStates([]);
  let total = 0;
  // Read first: the connection is busy while the agents are iterated.
  const loop = store ? await healthLoopStatus(store, now) : null;
  if (store) {
    for await (const batch of readAgents(store, now, q, AGENT_JSON_COLUMNS)) {
      const piece: string[] = [];
      for (const a of batch) {
        counts[a.derived.state]++;
        piece.push(`${total++ ? ',' : ''}\n    ${agentJsonText(a, now, '    ')}`);
      }
      yield piece;
    }
  }
  yield `${total ? '\n  ' : ''}],\n  "summary": ${nestedJson({ total, ...counts }, '  ')},\n  "healthLoop": ${nestedJson(loop, '  ')}\n}\n`;
}
