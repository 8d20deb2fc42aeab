import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { constants } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { AgentctlError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import { type ExitStatus, exitCodeOf, reconnectDelay } from './backoff.js';
import { hostName } from './host.js';
import { type Logger, SILENT } from './logger.js';
import { redactUrl } from './redact.js';

/** The server refused the token (401/403): retrying with the same token cannot help. Exit code 1. */
export class ServerRefusedError extends AgentctlError {
  constructor(message: string) {
    super('E_REFUSED', ExitCode.FAILED, message);
  }
}

export interface HttpAgentOptions {
  name: string;
  /** The base URL of `agentctl serve` (http or https; a path prefix behind a reverse proxy is kept). */
  server: string;
  /** An agent token. Sent in a header or in a ping's path, never printed. */
  token: string;
  intervalMs: number;
  staleMultiplier?: number | undefined;
  offlineAfterMs?: number | undefined;
  /** The child's pid, in the first beat's metadata with this host's name (never its own field: that is for local crash proofs). */
  pid: number;
  /** Longest wait between reconnect tries (default: the interval, at least 30 s, as the library agent). */
  maxBackoffMs?: number;
  /** How long reporting the exit may take in all, tries included, before it gives up loudly (default 30 s). */
  exitDeadlineMs?: number;
  /** One request's time limit (default 10 s). */
  requestTimeoutMs?: number;
  logger?: Logger;
}

/** One answer from the server, or the network error that stood in for it. */
type Outcome = { ok: true } | { ok: false; refused: boolean; why: string };

/**
 * `agentctl run --server`: the heartbeat agent of a wrapped child, over HTTP instead of the database. It beats
 * through the JSON heartbeat endpoint (registering the agent and its contract with the first beat), with the same
 * interval and the same reconnect backoff as the database agent: a failure is logged on every try and never stops
 * the child. The child's exit goes to the exit-status ping with `?exited=1` (offline at once, the exit status or
 * signal in the event), retried until the server acknowledges it or `exitDeadlineMs` passes.
 */
export class HttpHeartbeatAgent {
  private readonly o: HttpAgentOptions;
  private readonly log: Logger;
  private readonly base: string;
  private readonly shown: string;
  private readonly maxBackoffMs: number;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private running = false;
  private failures = 0;
  private registered = false;

  constructor(o: HttpAgentOptions) {
    this.o = o;
    this.log = o.logger ?? SILENT;
    this.base = o.server.replace(/\/+$/, '');
    this.shown = redactUrl(this.base);
    this.maxBackoffMs = o.maxBackoffMs ?? Math.max(o.intervalMs, 30_000);
  }

  /**
   * Sends the first beat and starts the timer. Throws ServerRefusedError when the server refuses the token; a
   * server that cannot be reached is logged and retried with backoff while the child runs.
   */
  async start(): Promise<void> {
    this.running = true;
    const first = await this.beatOnce(true);
    if (!first.ok && first.refused) {
      this.running = false;
      throw new ServerRefusedError(`${this.shown} refused the token for ${this.o.name}: ${first.why} (check --token or AGENTCTL_TOKEN: an agent token that may act for this name)`);
    }
    this.schedule();
  }

  /**
   * Stops beating and reports the child's exit. Resolves once the server acknowledged it, or after a bounded retry
   * gave up (an error line: the server then convicts the agent by its heartbeat age alone). Never throws.
   */
  async stop(reason: string, opts: { evidence?: Record<string, unknown> } = {}): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    await this.inFlight;
    const ev = opts.evidence ?? {};
    const exit = { code: (ev.exit_code as number | null) ?? null, signal: (ev.signal as NodeJS.Signals | null) ?? null };
    await this.reportExit(exit, reason, ev);
    this.closeConnections();
  }

  private schedule(): void {
    if (!this.running) return;
    const delay = this.failures ? reconnectDelay(this.failures, this.o.intervalMs, this.maxBackoffMs) : this.o.intervalMs;
    this.timer = setTimeout(() => {
      this.inFlight = this.beatOnce().then(() => {
        this.inFlight = undefined;
        this.schedule();
      });
    }, delay);
    this.timer.unref();
  }

  /** One beat; failures are counted and logged (with the wait before the next try), never thrown. */
  private async beatOnce(first = false): Promise<Outcome> {
    const body: Record<string, unknown> = { status: 'ok' };
    if (!this.registered) {
      // The contract and where the process runs, once per child life (it registers in the same transaction).
      body.interval = `${this.o.intervalMs}ms`;
      if (this.o.staleMultiplier !== undefined) body.staleAfter = this.o.staleMultiplier;
      if (this.o.offlineAfterMs !== undefined) body.offlineAfter = `${this.o.offlineAfterMs}ms`;
      body.metadata = { run_host: hostName(), run_pid: this.o.pid };
    }
    const outcome = await this.request(`/api/v1/agents/${encodeURIComponent(this.o.name)}/heartbeat?create=1`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${this.o.token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (outcome.ok) {
      this.registered = true;
      if (this.failures) this.log.info?.(`agentctl run: heartbeats to ${this.shown} recovered after ${this.failures} failure(s)`);
      this.failures = 0;
    } else {
      this.failures++;
      const retryInMs = reconnectDelay(this.failures, this.o.intervalMs, this.maxBackoffMs);
      // A refusal of the first beat ends the run (start() says so); any other failure is said on every try.
      if (this.running && !(first && outcome.refused)) this.log.warn?.(`agentctl run: heartbeat of ${this.o.name} to ${this.shown} failed (${this.failures} in a row), retrying in ${retryInMs} ms: ${outcome.why}`);
    }
    return outcome;
  }

  /** The exit-status ping with ?exited=1, retried with backoff until acknowledged or the deadline. */
  private async reportExit(exit: ExitStatus, reason: string, evidence: Record<string, unknown>): Promise<void> {
    const status = exitCodeOf(exit, constants.signals as Record<string, number>);
    const q = new URLSearchParams({ exited: '1' });
    if (exit.signal) q.set('signal', exit.signal);
    // The rest of what `agentctl run` records on the database: the child's pid, its uptime, a signal it forwarded.
    for (const k of ['pid', 'uptime_ms', 'forwarded_signal']) if (evidence[k] !== undefined && evidence[k] !== null) q.set(k, String(evidence[k]));
    const path = `/ping/${encodeURIComponent(this.o.token)}/${encodeURIComponent(this.o.name)}/${Math.min(255, status)}?${q}`;
    const deadline = Date.now() + (this.o.exitDeadlineMs ?? 30_000);
    for (let attempt = 1; ; attempt++) {
      const outcome = await this.request(path, { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: reason });
      if (outcome.ok) return;
      const wait = reconnectDelay(attempt, Math.min(this.o.intervalMs, 1000), 5_000);
      if (outcome.refused || Date.now() + wait > deadline) {
        this.log.error?.(`agentctl run: could not report that ${this.o.name} ${reason} to ${this.shown} (${attempt} tries): ${outcome.why}; the server will judge it by its heartbeat age alone`);
        return;
      }
      this.log.warn?.(`agentctl run: reporting the exit of ${this.o.name} to ${this.shown} failed (try ${attempt}), retrying in ${wait} ms: ${outcome.why}`);
      await sleep(wait);
    }
  }

  /**
   * One request through node:http(s) on a keep-alive connection (not fetch, which refuses ports such as 6000 or
   * 10080 that a server may well listen on). Any answer but 2xx is a failure; 401/403 a refusal.
   */
  private request(path: string, init: { method: string; headers: Record<string, string>; body: string }): Promise<Outcome> {
    const url = new URL(this.base + path);
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise<Outcome>((resolve) => {
      const req = send(url, { method: init.method, headers: { ...init.headers, 'Content-Length': Buffer.byteLength(init.body) }, agent: this.agent(url.protocol), timeout: this.o.requestTimeoutMs ?? 10_000 }, (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (d: string) => {
          if (text.length < 200) text += d;
        });
        res.once('end', () => {
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) return resolve({ ok: true });
          let why = text.slice(0, 200);
          try {
            why = String((JSON.parse(text) as { error?: unknown }).error ?? why);
          } catch {
            // a plain-text answer (pings)
          }
          resolve({ ok: false, refused: status === 401 || status === 403, why: `${status} ${why.replace(/\s+/g, ' ').trim()}` });
        });
        res.once('error', (err) => resolve({ ok: false, refused: false, why: err.message }));
      });
      // The error's text names the host and port at most, never the path (which holds a ping's key).
      req.once('timeout', () => req.destroy(Object.assign(new Error('no answer in time'), { code: 'ETIMEDOUT_ANSWER' })));
      req.once('error', (err: NodeJS.ErrnoException) => resolve({ ok: false, refused: false, why: err.code === 'ETIMEDOUT_ANSWER' ? 'no answer in time' : (err.code ?? err.message) }));
      req.end(init.body);
    });
  }

  private agents: { http?: HttpAgent; https?: HttpsAgent } = {};

  /** One keep-alive agent per scheme, for the life of this wrapper's child. */
  private agent(protocol: string): HttpAgent {
    if (protocol === 'https:') return (this.agents.https ??= new HttpsAgent({ keepAlive: true, maxSockets: 2 }));
    return (this.agents.http ??= new HttpAgent({ keepAlive: true, maxSockets: 2 }));
  }

  /** Closes the kept-alive connections (after the exit is reported). */
  private closeConnections(): void {
    this.agents.http?.destroy();
    this.agents.https?.destroy();
    this.agents = {};
  }
}
