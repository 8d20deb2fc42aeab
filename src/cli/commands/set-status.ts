import type { Command } from 'commander';
import { type AgentView, type StatusTarget, updateAgentState, viewAgent } from '../../core/agents.js';
import { formatDuration, parseDuration } from '../../core/duration.js';
import { safeText } from '../../core/text.js';
import { validateMessage, validateName } from '../../core/validate.js';
import { UsageError } from '../../errors.js';
import { cliContext } from '../context.js';
import { agentJson } from '../render.js';

/** What an operator may set, here and through the HTTP API. */
export const TARGETS = ['available', 'busy', 'offline', 'maintenance'] as const;
type Target = (typeof TARGETS)[number];

export function define(program: Command): void {
  program
    .command('set-status')
    .summary('set available, busy, offline or maintenance by hand')
    .description(
      "Set an agent's status by hand. available/busy set its availability (and end a maintenance window);\n" +
        'offline marks it gone now (its executing commands are cancelled; its next heartbeat brings it back);\n' +
        'maintenance pauses it, with no alerts, until --for runs out or it is set available/busy again.',
    )
    .argument('<name>', 'agent name')
    .argument('<status>', TARGETS.join('|'))
    .option('--for <dur>', 'maintenance only: how long the window lasts')
    .option('--reason <text>', 'why, recorded in the event')
    .addHelpText('after', '\nExamples:\n  agentctl set-status worker-1 maintenance --for 30m --reason "kernel upgrade"\n  agentctl set-status worker-1 available')
    .action(async (name: string, status: string, flags: { for?: string; reason?: string }, cmd: Command) => {
      const ctx = cliContext(cmd);
      validateName(name);
      if (!(TARGETS as readonly string[]).includes(status)) throw new UsageError(`invalid status '${status}': use one of ${TARGETS.join(', ')}`);
      if (flags.for !== undefined && status !== 'maintenance') throw new UsageError('--for applies only to maintenance');
      const forMs = flags.for !== undefined ? parseDuration(flags.for, '--for') : undefined;
      if (flags.reason !== undefined) validateMessage(flags.reason);
      const store = await ctx.open('existing');
      try {
        const now = ctx.now();
        const r = await updateAgentState(store, name, status as StatusTarget, now, { reason: flags.reason, forMs });
        const after = viewAgent(r.after, now);
        if (ctx.json) {
          ctx.out(JSON.stringify({ name, from: viewAgent(r.before, now).state, agent: agentJson(after) }, null, 2));
          return;
        }
        const line = describeChange(safeText(name), status as Target, viewAgent(r.before, now), after, forMs, now);
        ctx.out(line);
      } finally {
        await store.close();
      }
    });
}

/**
 * What set-status did, in words: "worker-1 is now available", then what still holds for it when its state is not
 * simply active (an error it reports, a silence that only a heartbeat ends), or when the window ends.
 */
export function describeChange(name: string, status: Target, before: AgentView, after: AgentView, forMs: number | undefined, now: number): string {
  if (status === 'maintenance') {
    return forMs !== undefined
      ? `${name} is in maintenance for ${formatDuration(forMs)}, until ${new Date(now + forMs).toISOString()} (no alerts meanwhile)`
      : `${name} is in maintenance until it is set available or busy (no alerts meanwhile)`;
  }
  if (status === 'offline') {
    return before.state === 'offline'
      ? `${name} was already offline; nothing changed`
      : `${name} is now offline (it was ${before.state}); its executing commands are cancelled, and its next heartbeat brings it back`;
  }
  const ended = before.state === 'maintenance' ? ', and its maintenance window has ended' : '';
  const head = `${name} is now ${status}${ended}`;
  switch (after.state) {
    case 'active':
      return head;
    case 'error':
      return `${head}; it still reports an error${after.message ? ` ("${safeText(after.message)}")` : ''} until a heartbeat with status ok`;
    case 'initializing':
      return `${head}; it has not sent a heartbeat yet, so it shows initializing until its first one`;
    default:
      return `${head}; it shows ${after.state} until its next heartbeat`;
  }
}
