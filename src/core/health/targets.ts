import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { UsageError } from '../../errors.js';
import { procStat } from '../host.js';
import { redactUrl, redactUrls } from '../redact.js';
import { envText } from '../text.js';

/** How one attempt is bounded: its own timeout, and a signal that aborts it (the pass's deadline, a stopping monitor). */
export interface AttemptOptions {
  timeoutMs: number;
  signal?: AbortSignal;
}

/**
 * A receiver of alerts. `id` names it in the outbox ('webhook:URL', 'exec:CMD'); `label` is the same with any
 * credentials redacted, for logs and output. `send` makes one attempt and rejects if it was not delivered; it must
 * give up when `signal` aborts, and within `timeoutMs`.
 */
export interface AlertTarget {
  id: string;
  label?: string;
  send(payload: Record<string, unknown>, attempt?: AttemptOptions): Promise<void>;
  /** Further attempts within one pass after a failure; else the delivery's setting. */
  retries?: number;
  /** Per attempt; else the delivery's setting. */
  timeoutMs?: number;
}

export interface TargetOptions {
  /** Per attempt (default 5 s). */
  timeoutMs?: number;
  /** Further attempts within one pass after a failure (default: the delivery's, 2). */
  retries?: number;
}

export const DEFAULT_TIMEOUT_MS = 5000;

/** A failed attempt that got no answer in time (or was cut short): the receiver is not worth more tries this pass. */
export class NoAnswerError extends Error {
  readonly noAnswer = true;
}

/** Parses a command line into argv without a shell: words split on blanks, '…' and "…" quote, \ escapes one character. */
export function splitCommand(cmd: string): string[] {
  const out: string[] = [];
  let cur = '';
  let has = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < cmd.length; i++) {
    const ch = cmd[i]!;
    if (quote) {
      if (ch === quote) quote = null;
      else if (ch === '\\' && quote === '"' && i + 1 < cmd.length) cur += cmd[++i];
      else cur += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      has = true;
    } else if (ch === '\\' && i + 1 < cmd.length) {
      cur += cmd[++i];
      has = true;
    } else if (/\s/.test(ch)) {
      if (has || cur) out.push(cur);
      cur = '';
      has = false;
    } else cur += ch;
  }
  if (quote) throw new UsageError(`unbalanced quote in --alert-exec '${redactUrls(cmd)}'`);
  if (has || cur) out.push(cur);
  if (!out.length) throw new UsageError('--alert-exec needs a command');
  return out;
}

/** A signal that aborts after `ms` or with `outer`, and its disposal. */
function bounded(ms: number, outer: AbortSignal | undefined): { signal: AbortSignal; timedOut: () => boolean; dispose: () => void } {
  const ac = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    ac.abort();
  }, ms);
  const onOuter = () => ac.abort();
  if (outer?.aborted) ac.abort();
  else outer?.addEventListener('abort', onOuter, { once: true });
  return { signal: ac.signal, timedOut: () => timedOut, dispose: () => (clearTimeout(timer), outer?.removeEventListener('abort', onOuter)) };
}

/** POSTs the alert as JSON to `url`; a 2xx answer (headers and body) within the timeout is a delivery. */
export function webhookTarget(url: string, opts: TargetOptions = {}): AlertTarget {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`invalid --alert-webhook '${redactUrl(url)}': not a URL`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new UsageError(`invalid --alert-webhook '${redactUrl(url)}': use http:// or https://`);
  const defaultTimeout = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const send = (payload: Record<string, unknown>, attempt?: AttemptOptions) =>
    new Promise<void>((resolve, reject) => {
      const timeoutMs = attempt?.timeoutMs ?? defaultTimeout;
      // The whole exchange is bounded, not only the idle time between bytes: a receiver that trickles an answer
      // must not hold the delivery longer than one that says nothing.
      const limit = bounded(timeoutMs, attempt?.signal);
      let settled = false;
      const settle = (err?: Error) => {
        if (settled) return;
        settled = true;
        limit.dispose();
        if (err) reject(err);
        else resolve();
      };
      const cutShort = () => new NoAnswerError(limit.timedOut() ? `no answer within ${timeoutMs}ms` : 'cut short: the monitor is stopping or the pass ran out of time');
      // Settled at the limit whatever state the exchange is in (an answer whose body never ends included).
      limit.signal.addEventListener('abort', () => settle(cutShort()), { once: true });
      const body = Buffer.from(JSON.stringify(payload));
      const req = (parsed.protocol === 'https:' ? httpsRequest : httpRequest)(parsed, {
        method: 'POST',
        // No keep-alive: a monitor run from cron must not be held open by an idle socket.
        agent: false,
        headers: { 'content-type': 'application/json', 'content-length': body.length, 'user-agent': 'agentctl', connection: 'close' },
        signal: limit.signal,
      });
      req.on('error', (err) => settle(limit.signal.aborted ? cutShort() : new Error(redactUrls(err.message))));
      req.on('response', (res) => {
        res.resume();
        res.on('end', () => settle(res.statusCode! >= 200 && res.statusCode! < 300 ? undefined : new Error(`HTTP ${res.statusCode}`)));
        res.on('error', () => undefined); // reported through the request's error (aborted)
      });
      req.end(body);
    });
  return { id: `webhook:${url}`, label: `webhook:${redactUrl(url)}`, send, ...(opts.retries !== undefined ? { retries: opts.retries } : {}), ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}) };
}

/** The AGENTCTL_* variables of an alert command: control characters (NUL included) replaced; the JSON on stdin is exact. */
export function alertEnv(payload: Record<string, unknown>): Record<string, string> {
  const agent = (payload.agent ?? {}) as Record<string, unknown>;
  const text = (v: unknown) => envText(v === null || v === undefined ? '' : String(v));
  return {
    AGENTCTL_ALERT_ID: text(payload.alert_id),
    AGENTCTL_ALERT_KIND: text(payload.kind),
    AGENTCTL_ALERT_MESSAGE: text(payload.message),
    AGENTCTL_AGENT: text(agent.name),
    AGENTCTL_AGENT_STATE: text(payload.state),
    AGENTCTL_AGENT_PREVIOUS_STATE: text(payload.previous_state),
    AGENTCTL_AGENT_REASON: text(payload.reason),
    AGENTCTL_AGENT_GROUP: text(agent.group),
    AGENTCTL_DOWN_FOR_MS: text(payload.down_for_ms),
    AGENTCTL_ALERT_AT: text(payload.at),
  };
}

/**
 * Whether process group `pgid` still has a live member. A member killed but not reaped (a zombie: where pid 1 is no
 * real init, orphans are never reaped) counts as gone, so /proc is asked when signal 0 says the group exists.
 */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((f) => /^\d+$/.test(f));
  } catch {
    return true; // no /proc: trust the signal
  }
  return pids.some((p) => {
    const f = procStat(Number(p));
    return f !== null && Number(f[2]) === pgid && f[0] !== 'Z' && f[0] !== 'X';
  });
}

function killGroup(pgid: number): void {
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/**
 * Runs `cmd` (no shell) for each alert: the JSON on stdin, the essentials in AGENTCTL_ALERT_* / AGENTCTL_AGENT_*
 * variables. Exit status 0 within the timeout is a delivery.
 *
 * The command runs in a process group of its own, and the timeout ends the whole group: nothing it started outlives
 * the attempt, and a background child holding its output open cannot stretch the attempt past the timeout. A
 * command that exits 0 while its children still run is waited for until the timeout, then the group is killed, and
 * the delivery counts as made: the command's exit status is its verdict (running it again would repeat whatever it
 * had already sent); a command that hands the sending to a background child must wait for it before exiting.
 */
export function execTarget(cmd: string, opts: TargetOptions & { onLeftover?: (message: string) => void } = {}): AlertTarget {
  const argv = splitCommand(cmd);
  const label = `exec:${redactUrls(cmd)}`;
  const defaultTimeout = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const send = (payload: Record<string, unknown>, attempt?: AttemptOptions) =>
    new Promise<void>((resolve, reject) => {
      const timeoutMs = attempt?.timeoutMs ?? defaultTimeout;
      let child: ReturnType<typeof spawn>;
      try {
        child = spawn(argv[0]!, argv.slice(1), { env: { ...process.env, ...alertEnv(payload) }, stdio: ['pipe', 'ignore', 'pipe'], detached: true });
      } catch (err) {
        reject(new Error(redactUrls((err as Error).message)));
        return;
      }
      const limit = bounded(timeoutMs, attempt?.signal);
      const pgid = child.pid;
      let stderr = '';
      let exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
      let done = false;
      let poll: NodeJS.Timeout | undefined;
      const finish = (err?: Error) => {
        if (done) return;
        done = true;
        clearInterval(poll);
        limit.signal.removeEventListener('abort', onLimit);
        limit.dispose();
        // A grandchild may hold these open for as long as it lives: never wait for them to close.
        child.stdin?.destroy();
        child.stderr?.destroy();
        if (err) reject(err);
        else resolve();
      };
      const lastLine = () => (stderr.trim() ? `: ${redactUrls(stderr.trim().split('\n').pop()!)}` : '');
      const onLimit = () => {
        if (pgid) killGroup(pgid);
        const why = limit.timedOut() ? `timeout ${timeoutMs}ms` : 'the monitor is stopping or the pass ran out of time';
        if (exit?.code === 0) {
          opts.onLeftover?.(`${label} exited 0 but left processes running; killed them (${why})`);
          finish();
        } else finish(new NoAnswerError(exit ? `exit ${exit.code ?? exit.signal}${lastLine()}; its leftover processes killed (${why})` : `killed: ${why}`));
      };
      limit.signal.addEventListener('abort', onLimit, { once: true });
      child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-500)));
      child.stderr!.on('error', () => undefined);
      child.stdin!.on('error', () => undefined); // a command that does not read stdin closes it early
      child.stdin!.end(JSON.stringify(payload));
      child.on('error', (err) => finish(new Error(redactUrls(err.message))));
      child.on('exit', (code, signal) => {
        exit = { code, signal };
        if (code !== 0) {
          // Failed: nothing it started may go on; its last words arrive once the pipes close (at once, the group gone).
          if (pgid) killGroup(pgid);
          child.once('close', () => finish(new Error(signal ? `killed by ${signal}` : `exit ${code}${lastLine()}`)));
          return;
        }
        // Exited 0: done once nothing it started is left, else at the timeout (onLimit kills the rest).
        const check = () => {
          if (!pgid || !groupAlive(pgid)) finish();
        };
        check();
        if (!done) poll = setInterval(check, 100);
      });
    });
  return { id: `exec:${cmd}`, label, send, ...(opts.retries !== undefined ? { retries: opts.retries } : {}), ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}) };
}
