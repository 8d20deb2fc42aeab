import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { formatDuration, parseDuration } from '../../core/duration.js';
import { ensureLoginToken } from '../../core/tokens.js';
import { safeText } from '../../core/text.js';
import { parseCount } from '../../core/validate.js';
import { OperationError, UsageError } from '../../errors.js';
import { HeartbeatHealthAgent } from '../../core/health/agent.js';
import { dailyFileLogger } from '../../core/health/log.js';
import { LockHeldError } from '../../errors.js';
import type { Store } from '../../store/store.js';
import { startServer } from '../../server/server.js';
import { cliContext } from '../context.js';
import { untilSignal } from '../signals.js';

interface Flags {
  listen: string; // commander's default fills it in
  headersTimeout: string;
  requestTimeout: string;
  keepAlive: string;
  poll: string;
  monitor?: boolean;
  every: string;
  tlsCert?: string;
  tlsKey?: string; // commander's default fills it in
}

/** Parses HOST:PORT (IPv6 in brackets: [::1]:8080); port 0 means any free port. */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(text.trim());
  if (!m) throw new UsageError(`invalid --listen '${text}': use HOST:PORT, like 127.0.0.1:8080 or [::1]:8080`);
  const port = parseCount(m[3]!, '--listen port', { min: 0, max: 65535 });
  return { host: m[1] ?? m[2]!, port };
}

/** The origin a browser uses for host:port. */
function origin(scheme: string, host: string, port: number): string {
  return `${scheme}://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** --tls-cert and --tls-key: both or neither (a usage error otherwise); a file that cannot be read is one line, exit 1. */
export function readTls(certPath: string | undefined, keyPath: string | undefined): { cert: Buffer; key: Buffer } | undefined {
  if (certPath === undefined && keyPath === undefined) return undefined;
  if (certPath === undefined || keyPath === undefined) throw new UsageError('--tls-cert and --tls-key go together: give both (PEM files) or neither');
  const read = (path: string, flag: string) => {
    try {
      return readFileSync(path);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const why = e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : e.code === 'EISDIR' ? 'it is a directory' : e.message;
      throw new OperationError(`cannot read ${flag} ${safeText(path)}: ${why}`, { cause: err });
    }
  };
  return { cert: read(certPath, '--tls-cert'), key: read(keyPath, '--tls-key') };
}

export function define(program: Command): void {
  program
    .command('serve')
    .summary('serve the dashboard, the HTTP API, the live event stream, healthchecks-compatible pings and /metrics')
    .description(
      'Serve the database over HTTP: the dashboard (/, for browsers), the read API (/api/v1/agents, /api/v1/events),\n' +
        'the live stream of events (/api/v1/events/stream, Server-Sent Events), pings in healthchecks\' slug form\n' +
        '(/ping/<key>/<name>), JSON heartbeats, the operator\'s controls, badges (/badge/<name>.svg), /metrics and\n' +
        '/healthz. Listens on 127.0.0.1:8080 unless --listen says otherwise; HTTPS with --tls-cert and --tls-key.\n' +
        "Access needs a token ('agentctl token create'); when none exists, a one-time operator login link is printed\n" +
        'on stderr. Stops cleanly on SIGINT/SIGTERM.',
    )
    .option('--listen <host:port>', 'address to listen on; port 0 takes any free port, printed on stderr', '127.0.0.1:8080')
    .option('--headers-timeout <dur>', 'time a client has to send its request headers', '10s')
    .option('--request-timeout <dur>', 'time a client has to send its whole request', '30s')
    .option('--keep-alive <dur>', 'interval of the comment that keeps an event stream open', '15s')
    .option('--poll <dur>', 'how often the event stream looks for new events in an SQLite file: a transition reaches the page within about this long; a PostgreSQL server announces them at once, and while its announcements cannot be received the stream looks this often too', '50ms')
    .option('--monitor', "also run the health loop in this process (as 'agentctl monitor' does, without alerts)")
    .option('--every <dur>', 'with --monitor: time between passes', '30s')
    .option('--tls-cert <file>', 'serve HTTPS with this certificate chain (PEM); needs --tls-key')
    .option('--tls-key <file>', 'the private key (PEM) of --tls-cert')
    .addHelpText(
      'after',
      '\nExamples:\n  agentctl serve\n  agentctl serve --listen 0.0.0.0:8443 --tls-cert cert.pem --tls-key key.pem\n' +
        "  agentctl token create cron-hosts --role agent && curl -fsS http://127.0.0.1:8080/ping/$KEY/backup\n" +
        '  HC_API_URL=http://127.0.0.1:8080/ping HC_PING_KEY=$KEY runitor -slug backup -- ./backup.sh',
    )
    .action(async (flags: Flags, cmd: Command) => {
      const ctx = cliContext(cmd);
      const { host, port } = parseListen(flags.listen);
      const headersTimeoutMs = parseDuration(flags.headersTimeout, '--headers-timeout');
      const requestTimeoutMs = parseDuration(flags.requestTimeout, '--request-timeout');
      if (headersTimeoutMs > requestTimeoutMs) throw new UsageError('--headers-timeout must not be longer than --request-timeout');
      const keepAliveMs = parseDuration(flags.keepAlive, '--keep-alive');
      const pollMs = parseDuration(flags.poll, '--poll');
      const everyMs = parseDuration(flags.every, '--every');
      const tls = readTls(flags.tlsCert, flags.tlsKey);
      const store = await ctx.open('create');
      const stop = untilSignal(['SIGINT', 'SIGTERM']);
      try {
        const running = await startServer({
          store,
          dbPath: ctx.config.dbPath,
          logDir: ctx.config.logDir,
          allowSharedDb: ctx.config.allowSharedDb,
          host,
          port,
          headersTimeoutMs,
          requestTimeoutMs,
          keepAliveMs,
          pollMs,
          log: (line) => ctx.err(safeText(line)),
          ...(tls ? { tls } : {}),
        }).catch((err: NodeJS.ErrnoException) => {
          // A certificate or key that OpenSSL refuses (not PEM, not a pair) fails before listening.
          if (tls && (err.code?.startsWith('ERR_OSSL') || /PEM|key values mismatch|certificate/i.test(err.message))) {
            throw new OperationError(`cannot serve HTTPS with --tls-cert ${safeText(flags.tlsCert!)} and --tls-key ${safeText(flags.tlsKey!)}: ${err.message}`);
          }
          throw new UsageError(`cannot listen on ${flags.listen}: ${err.code === 'EADDRINUSE' ? 'the address is in use' : err.message}`);
        });
        const at = origin(running.scheme, running.address.host, running.address.port);
        const loop = flags.monitor ? await startHealthLoop(ctx, everyMs) : undefined;
        const login = await ensureLoginToken(store, ctx.now());
        if (login) ctx.err(`agentctl: no access token exists yet; log in once at ${at}/login?token=${login}`);
        // The last line of start-up: whoever waits for it has the login link already.
        ctx.err(`agentctl: serving ${at} (database ${safeText(ctx.config.dbLabel)}); Ctrl-C stops`);
        while (!stop.stopped) await stop.sleep(3_600_000);
        ctx.err('agentctl: stopping');
        await Promise.all([running.close(), loop?.stop()]);
      } finally {
        stop.dispose();
        await store.close();
      }
    });
}

/**
 * The health loop beside the server (--monitor): HeartbeatHealthAgent on its own connection, logging as `monitor`
 * does. Another health loop already running is said in one line, and the server goes on without one.
 */
async function startHealthLoop(ctx: ReturnType<typeof cliContext>, everyMs: number): Promise<{ stop(): Promise<void> }> {
  const store: Store = await ctx.open('create');
  const logger = dailyFileLogger({ dir: ctx.config.logDir, level: ctx.config.logLevel, keepDays: 14, echo: (line) => process.stderr.write(line) });
  const agent = new HeartbeatHealthAgent({ store, everyMs, logger, lockStaleMs: ctx.config.lockStaleMs });
  const running = agent.start().catch((err: unknown) => {
    // The server goes on either way; what stopped the loop is said in one line.
    if (err instanceof LockHeldError) ctx.err(`agentctl: ${err.message}; serving without a health loop of its own`);
    else ctx.err(`agentctl: the health loop stopped: ${safeText((err as Error)?.message ?? String(err))}`);
  });
  ctx.err(`agentctl: health loop every ${formatDuration(everyMs)}`);
  return {
    async stop() {
      await agent.stop();
      try {
        await running;
      } finally {
        await store.close();
      }
    },
  };
}
