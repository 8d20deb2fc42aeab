import type { Command } from 'commander';
import { cancelCommand, listCommands, parseCommandStates } from '../../core/commands.js';
import { formatDuration, iso } from '../../core/duration.js';
import { safeText } from '../../core/text.js';
import { parseCount } from '../../core/validate.js';
import { UsageError } from '../../errors.js';
import type { CommandRecord } from '../../store/rows.js';
import { cliContext } from '../context.js';
import { oneLine, painter } from '../render.js';

interface Flags {
  state?: string;
  limit: string; // commander's default fills it in
  reason?: string;
}

/** A command as the JSON outputs give it. */
export function commandJson(c: CommandRecord) {
  return { ...c, claimToken: undefined, createdAtIso: iso(c.createdAt), deadlineAtIso: iso(c.deadlineAt), finishedAtIso: iso(c.finishedAt) };
}

export function define(program: Command): void {
  program
    .command('commands')
    .summary('list commands sent to agents, or cancel one')
    .description("List commands, newest first (those past their deadline are settled first). 'commands cancel ID' cancels a queued or executing one.")
    .argument('[args...]', "[NAME] to list one agent's commands, or: cancel ID")
    .option('--state <states>', 'only commands in these states (queued,executing,completed,failed,cancelled)')
    .option('--limit <n>', 'at most this many', '50')
    .option('--reason <text>', "with cancel: why, recorded as the command's error")
    .addHelpText('after', '\nExamples:\n  agentctl commands worker-1 --state queued,executing\n  agentctl commands cancel 42')
    .action(async (args: string[], flags: Flags, cmd: Command) => {
      const ctx = cliContext(cmd);
      // Listing only reads (a reader may not write the file); cancelling writes.
      const store = await ctx.open(args[0] === 'cancel' ? 'existing' : 'read');
      try {
        if (args[0] === 'cancel') {
          if (args.length !== 2) throw new UsageError('usage: agentctl commands cancel ID');
          const id = parseCount(args[1]!, 'command id', { min: 1 });
          const r = await cancelCommand(store, id, ctx.now(), flags.reason);
          if (ctx.json) ctx.out(JSON.stringify({ cancelled: r.cancelled, command: commandJson(r.command) }, null, 2));
          else if (r.cancelled) ctx.out(`cancelled command ${id}`);
          else throw new UsageError(`command ${id} is already ${r.command.state}; nothing to cancel`);
          return;
        }
        if (args.length > 1) throw new UsageError('give at most one agent name');
        const states = flags.state !== undefined ? parseCommandStates(flags.state) : undefined;
        const limit = parseCount(flags.limit, '--limit', { min: 1, max: 100_000 });
        const now = ctx.now();
        const list = await listCommands(store, now, { agent: args[0], states, limit });
        if (ctx.json) ctx.out(JSON.stringify(list.map(commandJson), null, 2));
        else ctx.out(table(list, now, ctx.color));
      } finally {
        await store.close();
      }
    });
}

/** The table for people: names, payloads, results and errors are agent text, shown through safeText. */
function table(list: CommandRecord[], now: number, color: boolean): string {
  if (!list.length) return 'No commands.';
  const c = painter(color);
  const paint = (s: string) => (s === 'completed' ? c.green(s) : s === 'failed' ? c.red(s) : s === 'cancelled' ? c.yellow(s) : s === 'executing' ? c.cyan(s) : s);
  const rows = list.map((x) => [
    String(x.id),
    safeText(x.agentName),
    safeText(x.state),
    `${formatDuration(now - x.createdAt)} ago`,
    safeText(oneLine(x.payload, 40)),
    safeText(oneLine(x.state === 'completed' ? (x.result ?? '') : (x.error ?? ''), 40)),
  ]);
  const head = ['ID', 'AGENT', 'STATE', 'SENT', 'PAYLOAD', 'RESULT / ERROR'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[], paintState: boolean) => r.map((v, i) => (i === 2 && paintState ? paint(v) + ' '.repeat(widths[i]! - v.length) : v.padEnd(widths[i]!))).join('  ').trimEnd();
  return [c.bold(line(head, false)), ...rows.map((r) => line(r, true))].join('\n');
}

