import type { Command } from 'commander';
import { basename } from 'node:path';
import { parseDuration } from '../../core/duration.js';
import { RESTART_BACKOFF } from '../../core/backoff.js';
import { LOG_MAX_BYTES } from '../../core/log-file.js';
import { supervise } from '../../core/supervisor.js';
import { parseCount, validateName } from '../../core/validate.js';
import { UsageError } from '../../errors.js';
import { RESTART_POLICIES, type RestartPolicy } from '../../store/rows.js';
import { cliContext, hadDoubleDash } from '../context.js';
import { stderrLogger } from '../logger.js';
import { CONTRACT_HELP, parseContract } from './options.js';

interface Flags {
  name?: string;
  interval?: string;
  staleAfter?: string;
  offlineAfter?: string;
  restart?: string;
  maxRestarts: string; // commander's default fills it in
  backoff: string; // commander's default fills it in
  log?: string;
  logMaxSize?: string;
  restarted?: string;
  server?: string;
  token?: string;
  reportTimeout: string; // commander's default fills it in
}

/**
 * --server URL and its token (--token, else AGENTCTL_TOKEN): an http(s) URL, and a token with it. The token is
 * never part of any message.
 */
export function parseServer(flags: Pick<Flags, 'server' | 'token'>, env: NodeJS.ProcessEnv): { url: string; token: string } | undefined {
  const token = flags.token ?? (env.AGENTCTL_TOKEN || undefined);
  if (flags.server === undefined) {
    if (flags.token !== undefined) throw new UsageError('--token goes with --server URL');
    return undefined;
  }
  let url: URL;
  try {
    url = new URL(flags.server);
  } catch {
    throw new UsageError(`invalid --server: use the URL of agentctl serve, like http://monitor.example.org:8080`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError('invalid --server: use an http:// or https:// URL');
  if (url.username || url.password || url.search || url.hash) throw new UsageError('invalid --server: give the token with --token or AGENTCTL_TOKEN, not in the URL');
  if (token === undefined) throw new UsageError('--server needs an agent token: --token TOKEN or AGENTCTL_TOKEN (see agentctl token create NAME --role agent)');
  if (!/^[!-~]{1,512}$/.test(token)) throw new UsageError('invalid token: printable characters without spaces');
  return { url: url.href.replace(/\/+$/, ''), token };
}

export function define(program: Command): void {
  program
    .command('run')
    .summary('run a command as an agent: heartbeat for it, restart it, pass its exit on')
    .description(
      'Run CMD (without a shell) as an agent named by --name (default: the command\'s file name): register it (its pid\n' +
        'and start time), heartbeat for it while it lives, pass its output through (or to --log), forward\n' +
        'SIGINT/SIGTERM/SIGHUP to it, and mark it offline the moment it\n' +
        'exits, with the exit code or signal in the event. Restart policy: backoff ×1.5 from 1s, capped at 60s, reset\n' +
        'after 60s of stable uptime; failed after --max-restarts unstable exits in a row.\n' +
        'Exits with the child\'s exit code, 128 + the signal number if it died of a signal, or 127 if it cannot start.\n' +
        'CMD runs in its own session and process group, so agentctl restart can stop it with its children.\n' +
        'With --server URL the agent lives on agentctl serve on another host: no database is opened, beats go over\n' +
        'HTTP with an agent token, and the child\'s exit is reported (offline at once) before run exits.',
    )
    .argument('<command...>', 'the command and its arguments, after --')
    .option('--name <name>', 'agent name (default: the command\'s file name)')
    .option('--interval <dur>', 'heartbeat interval (default: the agent\'s, else 30s)')
    .option('--stale-after <n>', 'stale after this many intervals without a heartbeat')
    .option('--offline-after <dur>', 'offline after this long without a heartbeat')
    .option('--restart <policy>', `restart policy: ${RESTART_POLICIES.join(', ')}`, 'never')
    .option('--max-restarts <n>', 'unstable exits in a row before the agent is failed', String(RESTART_BACKOFF.maxRestarts))
    .option('--backoff <dur>', 'wait before the first restart; it grows ×1.5 up to 60s', '1s')
    .option('--log <file>', "write the command's output to FILE (rotated by size) instead of passing it through")
    .option('--log-max-size <bytes>', 'rotate --log at this size', String(LOG_MAX_BYTES))
    .option('--server <url>', 'heartbeat over HTTP to agentctl serve at URL instead of the database (none is opened)')
    .option('--token <token>', 'with --server: an agent token (default: $AGENTCTL_TOKEN, which keeps it out of ps)')
    .option('--report-timeout <dur>', "with --server: how long to keep trying to report the child's exit before giving up", '30s')
    .addOption(hidden(program, '--restarted <json>', 'set by agentctl restart: the evidence of the restart'))
    .addHelpText('after', `${CONTRACT_HELP}\n\nExamples:\n  agentctl run --name ingest --interval 10s -- python3 ingest.py --queue a\n  agentctl run --name crawler --restart on-failure --max-restarts 5 --log /var/log/crawler.log -- ./crawler\n  AGENTCTL_TOKEN=$KEY agentctl run --server https://monitor.example.org --name nightly -- ./nightly.sh\n\nIn a crontab (started once, kept alive):  @reboot agentctl run --name backup --restart always -- /usr/local/bin/backup-daemon`)
    .action(async (command: string[], flags: Flags, cmd: Command) => {
      const ctx = cliContext(cmd);
      if (!hadDoubleDash(cmd)) throw new UsageError(`put the command after --, as in 'agentctl run --name NAME -- ${command.join(' ') || 'CMD ARGS'}'`);
      if (!command.length) throw new UsageError("nothing to run: put the command after --, as in 'agentctl run --name NAME -- CMD ARGS'");
      const name = flags.name ?? defaultName(command[0]!);
      validateName(name);
      const policy = flags.restart as RestartPolicy;
      if (!(RESTART_POLICIES as readonly string[]).includes(policy)) throw new UsageError(`invalid --restart '${flags.restart}': use ${RESTART_POLICIES.join(', ')}`);
      const maxRestarts = parseCount(flags.maxRestarts, '--max-restarts', { max: 1_000_000 });
      const initialMs = parseDuration(flags.backoff, '--backoff');
      const logMaxBytes = parseCount(flags.logMaxSize ?? String(LOG_MAX_BYTES), '--log-max-size', { min: 1024 });
      const contract = parseContract(flags);
      const server = parseServer(flags, process.env);
      const reportTimeoutMs = parseDuration(flags.reportTimeout, '--report-timeout');
      let start: { reason: string; evidence: Record<string, unknown> } | undefined;
      if (flags.restarted !== undefined) {
        const evidence = JSON.parse(flags.restarted) as Record<string, unknown>;
        start = { reason: `restarted by ${String(evidence.by ?? 'agentctl restart')}`, evidence };
      }
      // An agent registered before keeps its own contract unless flags change it (on the server: the server's).
      let existing;
      if (!server) {
        const store = await ctx.open('create');
        try {
          existing = await store.getAgent(name);
        } finally {
          await store.close();
        }
      }
      const result = await supervise({
        name,
        db: ctx.config.dbPath,
        argv: command,
        cwd: process.cwd(),
        intervalMs: contract.intervalMs ?? existing?.intervalMs ?? ctx.config.contract.intervalMs,
        staleMultiplier: contract.staleMultiplier ?? existing?.staleMultiplier ?? ctx.config.contract.staleMultiplier,
        offlineAfterMs: contract.offlineAfterMs ?? existing?.offlineAfterMs ?? ctx.config.contract.offlineAfterMs,
        policy,
        maxRestarts,
        ...(server ? { server: { ...server, staleMultiplier: contract.staleMultiplier, offlineAfterMs: contract.offlineAfterMs, reportTimeoutMs } } : {}),
        ...(flags.log !== undefined ? { logFile: flags.log, logMaxBytes } : {}),
        backoff: { ...RESTART_BACKOFF, initialMs },
        ...(start ? { start } : {}),
        busyTimeoutMs: ctx.config.busyTimeoutMs,
        logger: stderrLogger(ctx.config.logLevel),
      });
      process.exitCode = result.exitCode;
    });
}

/** A hidden option (kept out of --help): for flags only agentctl itself passes. */
function hidden(program: Command, flags: string, description: string) {
  const opt = program.createOption(flags, description);
  opt.hideHelp();
  return opt;
}

/** The default agent name: the command's file name, reduced to the name alphabet. */
export function defaultName(command: string): string {
  const base = basename(command).replace(/[^A-Za-z0-9._:@-]/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 128);
  return base || 'agent';
}
