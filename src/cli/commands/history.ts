import type { Command } from 'commander';
import { parseDuration } from '../../core/duration.js';
import { parseCount, validateName } from '../../core/validate.js';
import { AgentNotFoundError, UsageError } from '../../errors.js';
import type { EventRecord } from '../../store/rows.js';
import type { ChalkInstance } from 'chalk';
import { cliContext } from '../context.js';
import { paintState, painter } from '../render.js';
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
    .option('--refresh <dur>', 'how often --follow looks for new events (default 500ms)')
    .addHelpText('after', '\nExamples:\n  agentctl history worker-1 --since 1h\n  agentctl history --follow --json | jq -c \'select(.toState=="offline")\'')
    .action(async (name: string | undefined, flags: Flags, cmd: Command) => {
      const ctx = cliContext(cmd);
      if (name !== undefined) validateName(name);
      const limit = parseCount(flags.limit, '--limit', { min: 1, max: 1_000_000 });
      const sinceMs = flags.since !== undefined ? parseDuration(flags.since, '--since') : undefined;
      const refreshMs = parseDuration(flags.refresh ?? '500ms', '--refresh');
      if (flags.refresh !== undefined && !flags.follow) throw new UsageError('--refresh applies only to --follow');
      const store = ctx.open('existing');
      try {
        if (name !== undefined && !store.getAgent(name) && store.listEvents({ agent: name, limit: 1 }).length === 0) throw new AgentNotFoundError(name);
        const base = { ...(name !== undefined ? { agent: name } : {}), ...(sinceMs !== undefined ? { sinceMs: ctx.now() - sinceMs } : {}) };
        const events = store.listEvents({ ...base, limit });
        const c = painter(ctx.color);
        const format = (e: EventRecord) => (ctx.json ? JSON.stringify(eventJson(e)) : formatEvent(c, e));
        if (ctx.json && !flags.follow) ctx.out(JSON.stringify(events.map(eventJson), null, 2));
        else for (const e of events) ctx.out(format(e));
        if (!flags.follow) return;
        let last = events.length ? events[events.length - 1]!.id : store.lastEventId();
        const stop = untilSignal(['SIGINT', 'SIGTERM']);
        try {
          while (!stop.stopped) {
            await stop.sleep(refreshMs);
            for (const e of store.listEvents({ ...(name !== undefined ? { agent: name } : {}), afterId: last })) {
              ctx.out(format(e));
              last = e.id;
            }
          }
        } finally {
          stop.dispose();
        }
      } finally {
        store.close();
      }
    });
}

/** An event as the JSON outputs give it (history --json, the HTTP API and its stream). */
export function eventJson(e: EventRecord) {
  return { ...e, atIso: new Date(e.at).toISOString() };
}

function formatEvent(c: ChalkInstance, e: EventRecord): string {
  const when = new Date(e.at).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  const from = e.fromState ? paintState(c, e.fromState) : c.dim('(new)');
  const evidence = e.evidence
    ? Object.entries(e.evidence)
        .filter(([, v]) => v !== null && v !== undefined)
        .map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
        .join(' ')
    : '';
  return `${c.dim(when)}  ${e.agentName}  ${from} → ${paintState(c, e.toState)}  ${e.reason ?? ''}${evidence ? c.dim(`  [${evidence}]`) : ''}`;
}
