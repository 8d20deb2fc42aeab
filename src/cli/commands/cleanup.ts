import type { Command } from 'commander';
import { convict, findVerdicts } from '../../core/health/convict.js';
import { agentsToPurge, countHistoryOlderThan, purgeAgents, pruneHistory } from '../../store/cleanup.js';
import { parseDuration } from '../../core/duration.js';
import { safeText } from '../../core/text.js';
import { UsageError } from '../../errors.js';
import { exclusive } from '../../store/lease.js';
import { cliContext } from '../context.js';
import { plural } from '../render.js';

interface Flags {
  stale?: boolean;
  purgeOlderThan?: string;
  eventsOlderThan?: string;
  dryRun?: boolean;
}

export function define(program: Command): void {
  program
    .command('cleanup')
    .summary('convict stale agents, purge gone ones, prune old history')
    .description(
      'Clean the database, safely on a live fleet (it takes the exclusive maintenance lock):\n' +
        '  --stale                  convict overdue and crashed agents now, exactly as a health-loop pass would\n' +
        '                           (events, cancelled commands; no mass-conviction hold: you asked)\n' +
        '  --purge-older-than DUR   delete agents that are offline, failed or deregistered and unseen for DUR,\n' +
        '                           with their events and commands\n' +
        '  --events-older-than DUR  delete history older than DUR: events, alerts every receiver has settled, and\n' +
        '                           finished commands (pending alerts and open commands stay; in small batches,\n' +
        '                           writers keep going)\n' +
        'With --dry-run it only says what it would do.',
    )
    .option('--stale', 'convict overdue and crashed agents now')
    .option('--purge-older-than <dur>', 'delete gone agents unseen for this long')
    .option('--events-older-than <dur>', 'delete events, settled alerts and finished commands older than this')
    .option('--dry-run', 'show what would change, change nothing')
    .addHelpText('after', '\nExamples:\n  agentctl cleanup --purge-older-than 7d --dry-run\n  agentctl cleanup --events-older-than 30d --json')
    .action(async (flags: Flags, cmd: Command) => {
      const ctx = cliContext(cmd);
      const purgeMs = flags.purgeOlderThan !== undefined ? parseDuration(flags.purgeOlderThan, '--purge-older-than') : undefined;
      const eventsMs = flags.eventsOlderThan !== undefined ? parseDuration(flags.eventsOlderThan, '--events-older-than') : undefined;
      if (!flags.stale && purgeMs === undefined && eventsMs === undefined) {
        throw new UsageError('nothing to do: give --stale, --purge-older-than DUR or --events-older-than DUR (see agentctl cleanup --help)');
      }
      const store = await ctx.open('existing');
      try {
        const now = ctx.now();
        const report = await exclusive(store, { name: 'maintenance', staleMs: ctx.config.lockStaleMs, onWarning: (m) => ctx.err(`agentctl: ${m}`) }, async (lock) => {
          const out: Report = { dryRun: Boolean(flags.dryRun) };
          if (flags.stale) {
            out.convicted = flags.dryRun
              ? (await findVerdicts(store, now)).map((v) => ({ agent: v.agent.name, from: v.agent.state, to: v.to, reason: v.reason }))
              : (await convict(store, now, { hold: false })).applied.map((t) => ({ agent: t.agent, from: t.from, to: t.to, reason: t.reason }));
          }
          if (purgeMs !== undefined) {
            out.purged = flags.dryRun ? { agents: await agentsToPurge(store, now, purgeMs), events: 0, commands: 0 } : await purgeAgents(store, now, purgeMs);
          }
          if (eventsMs !== undefined) {
            const pruned = flags.dryRun ? await countHistoryOlderThan(store, now, eventsMs) : await pruneHistory(store, now, eventsMs, lock.signal);
            out.prunedEvents = pruned.events;
            out.prunedAlerts = pruned.alerts;
            out.prunedCommands = pruned.commands;
          }
          return out;
        });
        if (ctx.json) {
          ctx.out(JSON.stringify(report, null, 2));
          return;
        }
        ctx.out(summary(report));
      } finally {
        await store.close();
      }
    });
}

interface Report {
  dryRun: boolean;
  convicted?: { agent: string; from: string; to: string; reason: string }[];
  purged?: { agents: string[]; events: number; commands: number };
  prunedEvents?: number;
  prunedAlerts?: number;
  prunedCommands?: number;
}


/** The one-line summary: what was done, or with --dry-run what would be. Agent names come from rows, so through safeText. */
function summary(r: Report): string {
  const parts: string[] = [];
  if (r.convicted) {
    const shown = r.convicted.slice(0, 10).map((c) => `${safeText(c.agent)} → ${c.to}`).join(', ');
    parts.push(`${r.dryRun ? 'would convict' : 'convicted'} ${plural(r.convicted.length, 'agent')}${shown ? ` (${shown}${r.convicted.length > 10 ? ', …' : ''})` : ''}`);
  }
  if (r.purged) {
    const names = r.purged.agents.length ? ` (${r.purged.agents.slice(0, 10).map(safeText).join(', ')}${r.purged.agents.length > 10 ? ', …' : ''})` : '';
    parts.push(
      r.dryRun
        ? `would purge ${plural(r.purged.agents.length, 'agent')}${names}`
        : `purged ${plural(r.purged.agents.length, 'agent')}${names} with ${plural(r.purged.events, 'event')} and ${plural(r.purged.commands, 'command')}`,
    );
  }
  if (r.prunedEvents !== undefined) {
    parts.push(
      `${r.dryRun ? 'would delete' : 'deleted'} ${plural(r.prunedEvents, 'old event')}, ${plural(r.prunedAlerts ?? 0, 'settled alert')} ` +
        `and ${plural(r.prunedCommands ?? 0, 'finished command')}`,
    );
  }
  return parts.join('; ');
}
