import type { Command } from 'commander';
import { prepareRegister, viewAgent } from '../../core/agents.js';
import { formatDuration } from '../../core/duration.js';
import { staleAfterMs } from '../../core/state.js';
import { safeText } from '../../core/text.js';
import { UsageError } from '../../errors.js';
import { cliContext, hadDoubleDash } from '../context.js';
import { agentJson } from '../render.js';
import { CONTRACT_HELP, type ContractFlags, parseContract, parseMeta, parsePid } from './options.js';

interface Flags extends ContractFlags {
  group?: string;
  meta?: string;
  pid?: string;
}

export function define(program: Command): void {
  program
    .command('register')
    .summary('register an agent or update its contract')
    .description('Register an agent, or update the contract of a registered one (idempotent). A command after -- is kept as its launch command, for restart.')
    .argument('<name>', "agent name: 1-128 letters, digits, '.', '_', '-', ':' or '@'")
    .argument('[command...]', 'launch command and its arguments, after --')
    .option('--interval <dur>', 'heartbeat interval (default: 30s)')
    .option('--stale-after <n>', 'stale after this many intervals without a heartbeat (default: 3)')
    .option('--offline-after <dur>', 'offline after this long without a heartbeat (default: 300s)')
    .option('--group <group>', 'group the agent belongs to (for status --group)')
    .option('--meta <json>', 'metadata: a JSON object, merged into what is stored (null removes a key)')
    .option('--pid <pid>', "the agent's process id, when you know it (enables crash detection)")
    .addHelpText('after', `${CONTRACT_HELP}\n\nExamples:\n  agentctl register worker-1 --interval 10s --group batch\n  agentctl register worker-1 --meta '{"region":"eu"}' -- /usr/bin/python3 worker.py --queue a`)
    .action(async (name: string, command: string[], flags: Flags, cmd: Command) => {
      const ctx = cliContext(cmd);
      if (command.length && !hadDoubleDash(cmd)) {
        throw new UsageError(`unexpected argument '${command[0]}': put the launch command after --, as in 'agentctl register ${name} -- CMD ARGS'`);
      }
      const contract = parseContract(flags);
      const input = {
        name,
        ...contract,
        group: flags.group,
        metadata: parseMeta(flags.meta),
        pid: parsePid(flags.pid, true),
        launch: command.length ? { argv: command, cwd: process.cwd() } : undefined,
      };
      const params = prepareRegister(input); // before opening: bad input creates and writes nothing
      const store = await ctx.open('create');
      try {
        const now = ctx.now();
        const { registered, agent } = await store.register(params, now);
        const existed = !registered;
        if (ctx.json) {
          ctx.out(JSON.stringify({ created: !existed, agent: agentJson(viewAgent(agent, now)) }, null, 2));
          return;
        }
        ctx.out(
          `${existed ? 'updated' : 'registered'} ${safeText(agent.name)}: interval ${formatDuration(agent.intervalMs)}, ` +
            `stale after ${formatDuration(staleAfterMs(agent))}, offline after ${formatDuration(agent.offlineAfterMs)}` +
            (agent.launch ? `, launch: ${safeText(agent.launch.argv.join(' '))}` : ''),
        );
      } finally {
        await store.close();
      }
    });
}
