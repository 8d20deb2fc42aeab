import type { Command } from 'commander';
import { parseDuration } from '../../core/duration.js';
import { parseCount, parseList } from '../../core/validate.js';
import { HeartbeatHealthAgent } from '../../core/health/agent.js';
import { type AlertTarget, execTarget, webhookTarget } from '../../core/health/deliver.js';
import { dailyFileLogger } from '../../core/health/log.js';
import { MIN_LOCK_STALE_MS } from '../../config.js';
import { LockHeldError, UsageError } from '../../errors.js';
import type { AgentState } from '../../store/rows.js';
import { cliContext, collect } from '../context.js';

interface Flags {
  once?: boolean;
  every: string; // commander's default fills it in
  alertWebhook?: string[];
  alertExec?: string[];
  alertOn?: string;
  alertCooldown: string; // commander's default fills it in
  alertTimeout: string; // commander's default fills it in
  alertRetries: string; // commander's default fills it in
  testAlert?: boolean;
  map?: string;
  metrics?: string;
  logDir?: string;
  logKeep: string; // commander's default fills it in
  lockStale?: string;
  restartStale?: boolean;
  allowSharedDb?: boolean;
}

const ALERTABLE: AgentState[] = ['offline', 'stale', 'error', 'failed'];

/** Parses --alert-on: offline is always included (it is the default, and the reason alerts exist). */
export function parseAlertOn(text: string | undefined): AgentState[] {
  return [...new Set<AgentState>(['offline', ...(text === undefined ? [] : parseList(text, ALERTABLE, '--alert-on'))])];
}

export function define(program: Command): void {
  program
    .command('monitor')
    .summary('the health loop: convict stale and crashed agents, send alerts (daemon or --once for cron)')
    .description(
      'Run the health loop (the library\'s HeartbeatHealthAgent): every --every, mark agents stale or offline by their own ' +
        'contract, offline at once when their process is proven gone (pid with start time, boot id), cancel the work of ' +
        'offline agents, end expired maintenance, settle commands past their deadline, send alerts, and rewrite the map ' +
        'and metrics files. Stops on ' +
        'SIGINT/SIGTERM after the current pass. Alerts are sent beside the passes, never holding up a conviction; ' +
        'what a receiver does not take in time stays in the outbox for a later pass. Only one health loop runs at a ' +
        'time: another one exits 0 at once.',
    )
    .option('--once', 'one pass, then exit (for cron)')
    .option('--every <dur>', 'time between passes; with --once, how often cron runs it, so status knows when to expect the next pass', '30s')
    .option('--alert-webhook <url>', 'POST each alert as JSON to this URL (repeatable)', collect)
    .option('--alert-exec <cmd>', 'run this command for each alert, without a shell: JSON on stdin, AGENTCTL_* variables (repeatable)', collect)
    .option('--alert-on <states>', `alert when agents enter these states besides offline (${ALERTABLE.join(',')})`)
    .option('--alert-cooldown <dur>', 'at most one down alert per agent per this long, and a reminder as often while it stays down', '30m')
    .option('--alert-timeout <dur>', 'timeout of one webhook request or command; a command\'s whole process group is killed then', '5s')
    .option('--alert-retries <n>', 'further tries within a pass after a failed answer (none after no answer); later passes retry again', '2')
    .option('--test-alert', 'send one synthetic alert to the receivers and exit (1 if any did not get it)')
    .option('--map <file>', 'rewrite the heartbeat map JSON (as agentctl map prints it) here after every pass')
    .option('--metrics <file>', 'rewrite Prometheus metrics here after every pass (node_exporter textfile collector)')
    .option('--log-dir <dir>', 'directory of the daily health-YYYY-MM-DD.log files (else AGENTCTL_LOG_DIR, else logs/ beside the database)')
    .option('--log-keep <days>', 'days of log files to keep', '14')
    .option('--restart-stale', 'restart convicted agents by their launch command (backoff ×1.5 from 1s, failed after their restart limit)')
    .option('--allow-shared-db', 'with --restart-stale as root: act even though others may write the database (also AGENTCTL_ALLOW_SHARED_DB=1)')
    .option('--lock-stale <dur>', 'take over the lock of a monitor that stopped refreshing it this long ago (default: AGENTCTL_LOCK_STALE, else 30s)')
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  * * * * * agentctl --db /var/lib/agents/agentctl.db monitor --once --every 1m\n' +
        '  agentctl monitor --every 10s --alert-webhook https://hooks.example.org/agents --map /srv/www/agents.json\n' +
        "  agentctl monitor --alert-exec '/usr/local/bin/page-oncall --team infra' --alert-on stale,failed\n" +
        '  agentctl monitor --restart-stale --every 10s\n' +
        '  agentctl monitor --alert-webhook http://127.0.0.1:9000/hook --test-alert',
    )
    .action(async (flags: Flags, cmd: Command) => {
      const ctx = cliContext(cmd, { ...(flags.logDir !== undefined ? { logDir: flags.logDir } : {}), allowSharedDb: flags.allowSharedDb });
      const everyMs = parseDuration(flags.every, '--every');
      const cooldownMs = parseDuration(flags.alertCooldown, '--alert-cooldown', { allowZero: true });
      const timeoutMs = parseDuration(flags.alertTimeout, '--alert-timeout');
      const retries = parseCount(flags.alertRetries, '--alert-retries', { min: 0, max: 10 });
      const keepDays = parseCount(flags.logKeep, '--log-keep', { min: 1, max: 3650 });
      const lockStaleMs = flags.lockStale === undefined ? ctx.config.lockStaleMs : parseDuration(flags.lockStale, '--lock-stale');
      if (lockStaleMs < MIN_LOCK_STALE_MS) throw new UsageError(`invalid --lock-stale '${flags.lockStale}': at least 2s`);
      const alertOn = parseAlertOn(flags.alertOn);
      const logger = dailyFileLogger({ dir: ctx.config.logDir, level: ctx.config.logLevel, keepDays, echo: (line) => process.stderr.write(line) });
      const targets: AlertTarget[] = [
        ...(flags.alertWebhook ?? []).map((u) => webhookTarget(u, { timeoutMs, retries })),
        ...(flags.alertExec ?? []).map((c) => execTarget(c, { timeoutMs, retries, onLeftover: (m) => logger.warn(m) })),
      ];
      if (flags.testAlert && !targets.length) throw new UsageError('--test-alert needs --alert-webhook or --alert-exec');
      const store = await ctx.open('create');
      const agent = new HeartbeatHealthAgent({
        store,
        everyMs,
        policy: { alertOn, alertCooldownMs: cooldownMs },
        alertTargets: targets,
        alertTimeoutMs: timeoutMs,
        alertRetries: retries,
        ...(flags.map !== undefined ? { mapFile: flags.map } : {}),
        ...(flags.metrics !== undefined ? { metricsFile: flags.metrics } : {}),
        logger,
        lockStaleMs,
        ...(flags.restartStale ? { restartStale: { logDir: ctx.config.logDir, allowSharedDb: ctx.config.allowSharedDb } } : {}),
      });
      if (ctx.json) agent.on('pass', (outcome) => ctx.out(JSON.stringify(outcome)));
      try {
        if (flags.testAlert) {
          const r = await agent.sendTestAlert();
          for (const s of r.sent) ctx.err(`test alert delivered to ${s.target}`);
          for (const f of r.failed) ctx.err(`test alert NOT delivered to ${f.target}: ${f.error}`);
          process.exitCode = r.failed.length ? 1 : 0;
          return;
        }
        if (flags.once) {
          await agent.runOnce();
          return;
        }
        const stop = () => void agent.stop();
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
        try {
          await agent.start();
        } finally {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
        }
      } catch (err) {
        // Overlapping cron runs are normal: say so in one line and succeed.
        if (!(err instanceof LockHeldError)) throw err;
        ctx.err(`agentctl: ${err.message}; nothing to do`);
      } finally {
        await store.close();
      }
    });
}
