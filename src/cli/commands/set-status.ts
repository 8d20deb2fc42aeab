import type { Command } from 'commander';
import { type StatusTarget, updateAgentState, viewAgent } from '../../core/agents.js';
import { formatDuration, parseDuration } from '../../core/duration.js';
import { safeText } from '../../core/text.js';
import { validateMessage, validateName } from '../../core/validate.js';
import { UsageError } from '../../errors.js';
import { cliContext } from '../context.js';
import { agentJson } from '../render.js';

/** What an operator may set, here and through the HTTP API. */
export const TARGETS = ['available', 'busy', 'offline', 'maintenance'] as const;

export function define(program: Command): void {
  program
    .command('set-status')
    .summary('set available, busy, offline or maintenance by hand')
    .description(
      "Seed 000's manual controls. available/busy set the agent's availability (and end a maintenance window);\n" +
        'offline marks it gone now (its executing commands are cancelled; its next heartbeat brings it back);\n' +
        'maintenance pauses it, with no alerts, until --for runs out or it is set available/busy again.',
    )
    .argument('<name>', 'agent name')
    .argument('<status>', TARGETS.join('|'))
    .option('--for <dur>', 'maintenance only: how long the window lasts')
    .option('--reason <text>', 'why, recorded in the event')
    .addHelpText('after', '\nExamples:\n  agentctl set-status worker-1 maintenance --for 30m --reason "kernel upgrade"\n  agentctl set-status worker-1 available')
    .action((name: string, status: string, flags: { for?: string; reason?: string }, cmd: Command) => {
      const ctx = cliContext(cmd);
      validateName(name);
      if (!(TARGETS as readonly string[]).includes(status)) throw new UsageError(`invalid status '${status}': use one of ${TARGETS.join(', ')}`);
      if (flags.for !== undefined && status !== 'maintenance') throw new UsageError('--for applies only to maintenance');
      const forMs = flags.for !== undefined ? parseDuration(flags.for, '--for') : undefined;
      if (flags.reason !== undefined) validateMessage(flags.reason);
      const store = ctx.open('existing');
      try {
        const now = ctx.now();
        const r = updateAgentState(store, name, status as StatusTarget, now, { reason: flags.reason, forMs });
        const after = viewAgent(r.after, now);
        if (ctx.json) {
          ctx.out(JSON.stringify({ name, from: viewAgent(r.before, now).state, agent: agentJson(after) }, null, 2));
          return;
        }
        let line = `${safeText(name)}: ${after.state}`;
        if (status === 'available' || status === 'busy') line += `, ${after.availability}`;
        if (status === 'maintenance') line += forMs !== undefined ? ` for ${formatDuration(forMs)} (until ${new Date(now + forMs).toISOString()})` : ' until set available again';
        if ((status === 'available' || status === 'busy') && (after.state === 'offline' || after.state === 'failed')) {
          line += ` (it shows ${after.state} until its next heartbeat)`;
        }
        ctx.out(line);
      } finally {
        store.close();
      }
    });
}
