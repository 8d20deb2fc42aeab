import type { Command } from 'commander';
import { getRegisteredAgents } from '../../core/agents.js';
import { parseDuration } from '../../core/duration.js';
import { type RestartResult, restartAgents } from '../../core/restart.js';
import { safeText } from '../../core/text.js';
import { validateName } from '../../core/validate.js';
import { UsageError } from '../../errors.js';
import { ExitCode } from '../../exit-codes.js';
import { cliContext } from '../context.js';

interface Flags {
  stale?: boolean;
  failed?: boolean;
  all?: boolean;
  grace: string; // commander's default fills it in
  dryRun?: boolean;
  allowSharedDb?: boolean;
}

export function define(program: Command): void {
  program
    .command('restart')
    .summary('stop agents and start them again by their launch command')
    .description(
      'For agents registered with a launch command (agentctl register NAME -- CMD, or started by agentctl run):\n' +
        'if the recorded process is alive and still that agent (pid and start time match), send SIGTERM to its\n' +
        'process group (and its agentctl run), SIGKILL after --grace; then start the command anew, detached, under\n' +
        'agentctl run, with output to NAME.log in the logs directory. A pid that now belongs to another process is\n' +
        'never signalled. Holds the exclusive maintenance lock. An operator\'s restart resets the restart backoff.\n' +
        'As root, never more than the database\'s owner could do: the command runs as the owner of the database file,\n' +
        'only the owner\'s processes are signalled (never pid 1 or agentctl\'s own group), and a database that others\n' +
        'may write is refused (strict mode) unless --allow-shared-db.',
    )
    .argument('[names...]', 'agents to restart')
    .option('--stale', 'every agent that stopped beating (stale or offline)')
    .option('--failed', 'every failed agent')
    .option('--all', 'every agent with a launch command')
    .option('--grace <dur>', 'time between SIGTERM and SIGKILL', '10s')
    .option('--dry-run', 'only print what would be done')
    .option('--allow-shared-db', 'as root, act even though others may write the database (also AGENTCTL_ALLOW_SHARED_DB=1)')
    .addHelpText('after', '\nExamples:\n  agentctl restart worker-1\n  agentctl restart --stale --dry-run\n  agentctl restart --failed --grace 30s')
    .action(async (names: string[], flags: Flags, cmd: Command) => {
      const ctx = cliContext(cmd, { allowSharedDb: flags.allowSharedDb });
      for (const n of names) validateName(n);
      const selectors = [flags.stale, flags.failed, flags.all].filter(Boolean).length;
      if (names.length && selectors) throw new UsageError('give agent names or one of --stale, --failed, --all, not both');
      if (!names.length && selectors !== 1) throw new UsageError('say which agents: NAME…, --stale, --failed or --all');
      const graceMs = parseDuration(flags.grace, '--grace', { allowZero: true });
      const store = await ctx.open('existing');
      try {
        const now = ctx.now();
        let targets = names;
        if (!names.length) {
          const views = (await getRegisteredAgents(store, now)).filter((a) => a.launch !== null);
          targets = views
            .filter((a) => flags.all || (flags.failed && a.state === 'failed') || (flags.stale && (a.state === 'stale' || a.state === 'offline')))
            .map((a) => a.name);
        } else await getRegisteredAgents(store, now, { names }); // unknown names: exit 3 before anything is done
        const results = targets.length ? await restartAgents(store, targets, { logDir: ctx.config.logDir, graceMs, dryRun: Boolean(flags.dryRun), now: ctx.now, allowSharedDb: ctx.config.allowSharedDb }) : [];
        report(ctx, results);
        const errors = results.filter((r) => r.error);
        if (errors.length === 1 && results.length === 1) throw errors[0]!.error;
        if (errors.length) process.exitCode = ExitCode.FAILED;
      } finally {
        await store.close();
      }
    });
}

function report(ctx: ReturnType<typeof cliContext>, results: RestartResult[]): void {
  if (ctx.json) {
    ctx.out(JSON.stringify(results.map((r) => ({ name: r.name, action: r.action, steps: r.steps, pid: r.pid ?? null, logFile: r.logFile ?? null, error: r.error?.message ?? null })), null, 2));
    return;
  }
  if (!results.length) {
    ctx.out('No agents to restart.');
    return;
  }
  for (const r of results) {
    if (r.error) {
      if (results.length > 1) ctx.err(`agentctl: ${safeText(r.name)}: ${safeText(r.error.message)}`);
      continue;
    }
    // Names and steps (which quote the launch command) come from rows anyone could have written.
    const name = safeText(r.name);
    const head = r.action === 'restarted' ? `restarted ${name}: pid ${r.pid}` : r.action === 'would-restart' ? `would restart ${name}` : `${name}: ${r.action}`;
    ctx.out([head, ...r.steps.map((s) => `  ${safeText(s)}`)].join('\n'));
  }
}
