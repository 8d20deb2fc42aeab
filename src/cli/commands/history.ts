import type { Command } from 'commander';
import { formatDuration, parseDuration } from '../../core/duration.js';
import { parseCount, validateName } from '../../core/validate.js';
import { AgentNotFoundError, UsageError } from '../../errors.js';
import { AGENT_STATES, type AgentState, type EventRecord } from '../../store/rows.js';
import type { Store } from '../../store/store.js';
import type { ChalkInstance } from 'chalk';
import { jsonIso, jsonNumber, jsonNumberOrNull, jsonStringOrNull } from '../../core/json-text.js';
import { safeText } from '../../core/text.js';
import { cliContext } from '../context.js';
import { ChunkedWriter } from '../output.js';
import { untilSignal } from '../signals.js';

interface Flags {
  limit: string; // commander's default fills it in
  since?: string;
  follow?: boolean;
  refresh?: string;
}

export function define(program: Command): void {
  program
    .command('history')
    .summary('list state transitions with their evidence')
    .description('List state transitions (oldest first) with the reason and evidence of each; --follow keeps printing new ones.')
    .argument('[name]', 'only this agent')
    .option('--limit <n>', 'at most the newest N events', '50')
    .option('--since <dur>', 'only events of the last DUR (e.g. 1h)')
    .option('--follow', 'keep printing new events until Ctrl-C (with --json: one JSON object per line)')
    .option('--refresh <dur>', 'how often --follow looks for new events in an SQLite file, and on PostgreSQL while the server\'s announcements cannot be received (default: 500ms)')
    .addHelpText('after', '\nExamples:\n  agentctl history worker-1 --since 1h\n  agentctl history --follow --json | jq -c \'select(.toState=="offline")\'')
    .action(async (name: string | undefined, flags: Flags, cmd: Command) => {
      const ctx = cliContext(cmd);
      if (name !== undefined) validateName(name);
      const limit = parseCount(flags.limit, '--limit', { min: 1, max: 1_000_000 });
      const sinceMs = flags.since !== undefined ? parseDuration(flags.since, '--since') : undefined;
      const refreshMs = parseDuration(flags.refresh ?? '500ms', '--refresh');
      if (flags.refresh !== undefined && !flags.follow) throw new UsageError('--refresh applies only to --follow');
      let store = await ctx.open('read');
      try {
        if (name !== undefined && !await store.getAgent(name) && (await store.listEvents({ agent: name, limit: 1 })).length === 0) throw new AgentNotFoundError(name);
        const base = { ...(name !== undefined ? { agent: name } : {}), ...(sinceMs !== undefined ? { sinceMs: ctx.now() - sinceMs } : {}) };
        if (ctx.json && !flags.follow) return await printEventsJson(store, { ...base, limit });
        const events = await store.listEvents({ ...base, limit });
        // Colours only for people: the JSON lines of --follow --json need none.
        const render = ctx.json ? undefined : await import('../render.js');
        const c = render?.painter(ctx.color);
        const format = (e: EventRecord) => (c && render ? formatEvent(c, render.paintState, e) : JSON.stringify(eventJson(e)));
        for (const e of events) ctx.out(format(e));
        if (!flags.follow) return;
        let last = events.length ? events[events.length - 1]!.id : await store.lastEventId();
        const stop = untilSignal(['SIGINT', 'SIGTERM']);
        let failed: unknown;
        // Woken every --refresh on SQLite; on PostgreSQL by each new event's notification (and after a reconnect), or
        // every --refresh while the listener has no connection (said once each time it is lost or cannot be made).
        const unwatch = await store.watchEvents(async () => {
          try {
            // A snapshot (a reader without write access, no writer present) never sees new events: open again.
            if (store.snapshot) {
              await store.close();
              store = await ctx.open('read');
            }
            for (const e of await store.listEvents({ ...(name !== undefined ? { agent: name } : {}), afterId: last })) {
              ctx.out(format(e));
              last = e.id;
            }
          } catch (err) {
            failed ??= err;
            stop.stop();
          }
        }, {
          pollMs: refreshMs,
          onError: (err) => ctx.err(`agentctl: live notifications from the database server are unavailable (${safeText(err.message)}); looking for new events every ${formatDuration(refreshMs)} until they are back`),
        }).catch((err: unknown) => {
          stop.dispose();
          throw err;
        });
        try {
          while (!stop.stopped) await stop.sleep(60_000);
        } finally {
          await unwatch();
          stop.dispose();
        }
        if (failed !== undefined) throw failed;
      } finally {
        await store.close();
      }
    });
}

/** An event as the JSON outputs give it (history --json, the HTTP API and its stream). */
export function eventJson(e: EventRecord) {
  return { ...e, atIso: new Date(e.at).toISOString() };
}

/**
 * One event for people. Everything in it that a writer of the database chose (the agent's name, the states of a
 * foreign row, the reason, the evidence) is shown through safeText: one event is one line, and a terminal obeys
 * none of it.
 */
function formatEvent(c: ChalkInstance, paintState: (c: ChalkInstance, s: AgentState) => string, e: EventRecord): string {
  const when = new Date(e.at).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  const state = (s: string) => ((AGENT_STATES as readonly string[]).includes(s) ? paintState(c, s as AgentState) : safeText(s));
  const from = e.fromState ? state(e.fromState) : c.dim('(new)');
  const evidence = e.evidence
    ? Object.entries(e.evidence)
        .filter(([, v]) => v !== null && v !== undefined)
        .map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
        .join(' ')
    : '';
  return `${c.dim(when)}  ${safeText(e.agentName)}  ${from} → ${state(e.toState)}  ${safeText(e.reason)}${evidence ? c.dim(`  [${safeText(evidence)}]`) : ''}`;
}

/**
 * history --json: the array JSON.stringify(events.map(eventJson), null, 2) gives, written as the events are read,
 * each stored evidence spliced as stored (the schema holds it to valid JSON).
 */
async function printEventsJson(store: Store, q: Parameters<Store['eventRowBatches']>[0]): Promise<void> {
  const w = new ChunkedWriter();
  void w.write('[');
  let n = 0;
  for await (const rows of store.eventRowBatches(q)) for (const r of rows) {
    const at = Number(r[3]);
    const wait = w.write(
      `${n++ ? ',' : ''}\n  {\n    "id": ${jsonNumber(r[0])},\n    "agentId": ${jsonNumberOrNull(r[1])},\n    "agentName": ${JSON.stringify(String(r[2]))},` +
        `\n    "at": ${jsonNumber(at)},\n    "fromState": ${JSON.stringify(r[4] ?? null)},\n    "toState": ${JSON.stringify(r[5])},\n    "reason": ${jsonStringOrNull(r[6])},` +
        `\n    "evidence": ${typeof r[7] === 'string' ? r[7] : 'null'},\n    "atIso": ${jsonIso(at)}\n  }`,
    );
    if (wait) await wait;
  }
  void w.write(`${n ? '\n' : ''}]\n`);
  await w.flush();
}
