import type { Command } from 'commander';
import { type HeartbeatInput, type PreparedHeartbeat, prepareHeartbeat, writeHeartbeat } from '../../core/agents.js';
import { parseCount } from '../../core/validate.js';
import { formatDuration } from '../../core/duration.js';
import { safeText } from '../../core/text.js';
import { type CliContext, cliContext } from '../context.js';
import { parseContract, parseMeta, parsePid } from './options.js';

export interface HeartbeatFlags {
  status?: string;
  message?: string;
  meta?: string;
  progress?: string;
  interval?: string;
  pid?: string;
}

export function define(program: Command): void {
  program
    .command('heartbeat')
    .summary('record a heartbeat (registers on first use)')
    .description(
      'Record one heartbeat for NAME: one write, committed or an error. An unknown name is registered with the default contract.\n' +
        "A heartbeat from a shell records no pid of its own (it would die at once); pass --pid when you know the agent's process.",
    )
    .argument('<name>', 'agent name')
    .option('--status <status>', 'ok, busy or error (busy also sets availability busy, ok sets available)')
    .option('--message <text>', 'status message (replaces the previous one; at most 1024 characters)')
    .option('--meta <json>', 'metadata: a JSON object merged into what is stored (null removes a key)')
    .option('--progress <n>', 'progress counter (a whole number)')
    .option('--interval <dur>', 'change the heartbeat interval in the contract')
    .option('--pid <pid>', "the agent's process id")
    .addHelpText('after', `\nExamples:\n  agentctl heartbeat worker-1\n  agentctl heartbeat worker-1 --status error --message "queue unreachable"\n  while sleep 30; do agentctl heartbeat backup --progress "$n"; done`)
    .action(async (name: string, flags: HeartbeatFlags, cmd: Command) => await writeCliHeartbeat(prepareCliHeartbeat(name, flags), cliContext(cmd)));
}

/** Parses and validates every flag of a heartbeat, before any database is opened: bad input writes nothing. */
export function prepareCliHeartbeat(name: string, flags: HeartbeatFlags): PreparedHeartbeat {
  return prepareHeartbeat({
    name,
    ...parseContract({ interval: flags.interval }),
    status: flags.status as HeartbeatInput['status'], // prepareHeartbeat checks it
    message: flags.message,
    metadata: parseMeta(flags.meta),
    progress: flags.progress !== undefined ? parseCount(flags.progress, '--progress') : undefined,
    pid: parsePid(flags.pid),
  });
}

/**
 * Writes a prepared heartbeat: one write. Shared by the command and the fast path in bin/agentctl. `migrate: false`
 * makes it throw MigrationNeededError instead of creating the schema.
 */
export async function writeCliHeartbeat(prepared: PreparedHeartbeat, ctx: CliContext, opts: { migrate?: boolean } = {}): Promise<void> {
  const store = await ctx.open('create', opts);
  try {
    // The database's clock decides the time of the write: on a server, ctx.open has just read it (no second query).
    const now = ctx.now();
    const result = await writeHeartbeat(store, prepared, now);
    const name = prepared.beat.name;
    if (ctx.json) ctx.out(JSON.stringify({ name, at: new Date(now).toISOString(), registered: result.registered }));
    else if (result.registered) ctx.err(`agentctl: registered new agent ${safeText(name)} (interval ${formatDuration(result.agent?.intervalMs ?? store.contract.intervalMs)})`);
  } finally {
    await store.close();
  }
}
