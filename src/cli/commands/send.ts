import type { Command } from 'commander';
import { sendCommand, waitForCommand } from '../../core/commands.js';
import { parseDuration } from '../../core/duration.js';
import { safeText } from '../../core/text.js';
import { UsageError } from '../../errors.js';
import { ExitCode } from '../../exit-codes.js';
import { cliContext, hadDoubleDash } from '../context.js';
import { commandJson } from './commands.js';

interface Flags {
  timeout?: string;
  queue?: boolean;
  wait?: boolean;
}

export function define(program: Command): void {
  program
    .command('send')
    .summary('send a command to an agent')
    .description(
      'Queue PAYLOAD (the words after --, joined by spaces) for agent NAME; prints the command id. The agent claims it\n' +
        '(agent.onCommand in the library, or the claim SQL in state_database.md), runs it and completes it with a result.\n' +
        'Refused for an offline or failed agent unless --queue. --wait waits for the result and prints it.',
    )
    .argument('<name>', 'agent name')
    .argument('<payload...>', 'the payload, after --')
    .option('--timeout <dur>', 'the command must be finished within this long; after it a queued one is cancelled, an executing one failed')
    .option('--queue', 'queue it even if the agent is offline or failed')
    .option('--wait', 'wait for the command to finish (up to --timeout; default: 30s) and print its result (controls escaped; --json: exact); exit 1 unless it completed')
    .addHelpText('after', '\nExamples:\n  agentctl send worker-1 -- \'{"op":"reload"}\'\n  agentctl send worker-1 --wait --timeout 10s -- ping')
    .action(async (name: string, payload: string[], flags: Flags, cmd: Command) => {
      const ctx = cliContext(cmd);
      if (!hadDoubleDash(cmd)) throw new UsageError(`put the payload after --, as in 'agentctl send ${name} -- PAYLOAD'`);
      const timeoutMs = flags.timeout !== undefined ? parseDuration(flags.timeout, '--timeout') : undefined;
      const store = await ctx.open('existing');
      try {
        const sent = await sendCommand(store, name, payload.join(' '), ctx.now(), { timeoutMs, queue: flags.queue });
        if (!flags.wait) {
          ctx.out(ctx.json ? JSON.stringify(commandJson(sent), null, 2) : String(sent.id));
          return;
        }
        const done = await waitForCommand(store, sent.id, timeoutMs ?? 30_000);
        if (ctx.json) ctx.out(JSON.stringify(commandJson(done), null, 2));
        // The result and the error are the agent's text: shown through safeText (--json gives them exact).
        else if (done.state === 'completed') ctx.out(safeText(done.result));
        else ctx.err(`agentctl: command ${done.id} ${done.state === 'queued' || done.state === 'executing' ? `still ${done.state} after the timeout` : done.state}${done.error ? `: ${safeText(done.error)}` : ''}`);
        if (done.state !== 'completed') process.exitCode = ExitCode.FAILED;
      } finally {
        await store.close();
      }
    });
}
