import type { Command } from 'commander';
import { deregisterAgent } from '../../core/agents.js';
import { safeText } from '../../core/text.js';
import { validateMessage, validateName } from '../../core/validate.js';
import { cliContext } from '../context.js';

export function define(program: Command): void {
  program
    .command('deregister')
    .summary('remove an agent from the fleet')
    .description(
      'Mark an agent deregistered: offline now (executing commands cancelled) and hidden from status and check.\n' +
        "Its history is kept; it comes back if it registers or heartbeats again. 'cleanup --purge-older-than' deletes it for good.",
    )
    .argument('<name>', 'agent name')
    .option('--reason <text>', 'why, recorded in the event')
    .action(async (name: string, flags: { reason?: string }, cmd: Command) => {
      const ctx = cliContext(cmd);
      validateName(name);
      if (flags.reason !== undefined) validateMessage(flags.reason);
      const store = await ctx.open('existing');
      try {
        const r = await deregisterAgent(store, name, ctx.now(), flags.reason);
        if (ctx.json) ctx.out(JSON.stringify({ name, deregistered: true, previousState: r.before.state }));
        else ctx.out(`deregistered ${safeText(name)}`);
      } finally {
        await store.close();
      }
    });
}
