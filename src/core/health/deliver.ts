import { spawn } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { UsageError } from '../../errors.js';
import { claimDeliveries, finishDelivery } from '../../store/alerts.js';
import type { Store } from '../../store/store.js';
import { setTimeout as sleep } from 'node:timers/promises';

/** A receiver of alerts. `id` names it in the outbox ('webhook:URL', 'exec:CMD'); `send` rejects if it was not delivered. */
export interface AlertTarget {
  id: string;
  send(payload: Record<string, unknown>): Promise<void>;
}

export interface DeliveryOptions {
  /** Per attempt (default 5 s). */
  timeoutMs?: number;
  /** Further attempts within one pass after a failure (default 2), with a short backoff. Later passes retry again. */
  retries?: number;
}

const DEFAULT_TIMEOUT_MS = 5000;
const DEFAULT_RETRIES = 2;

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
  if (quote) throw new UsageError(`unbalanced quote in --alert-exec '${cmd}'`);
  if (has || cur) out.push(cur);
  if (!out.length) throw new UsageError('--alert-exec needs a command');
  return out;
}

/** POSTs the alert as JSON to `url`; a 2xx answer within the timeout is a delivery. */
export function webhookTarget(url: string, opts: DeliveryOptions = {}): AlertTarget {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`invalid --alert-webhook '${url}': not a URL`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new UsageError(`invalid --alert-webhook '${url}': use http:// or https://`);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const once = (payload: Record<string, unknown>) =>
    new Promise<void>((resolve, reject) => {
      const body = Buffer.from(JSON.stringify(payload));
      const req = (parsed.protocol === 'https:' ? httpsRequest : httpRequest)(parsed, {
        method: 'POST',
        // No keep-alive: a monitor run from cron must not be held open by an idle socket.
        agent: false,
        headers: { 'content-type': 'application/json', 'content-length': body.length, 'user-agent': 'agentctl', connection: 'close' },
        timeout: timeoutMs,
      });
      req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs}ms`)));
      req.on('error', reject);
      req.on('response', (res) => {
        res.resume();
        res.on('end', () => (res.statusCode! >= 200 && res.statusCode! < 300 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`))));
        res.on('error', reject);
      });
      req.end(body);
    });
  return { id: `webhook:${url}`, send: (p) => withRetries(() => once(p), opts.retries ?? DEFAULT_RETRIES) };
}

/**
 * Runs `cmd` (no shell) for each alert: the JSON on stdin, the essentials in AGENTCTL_ALERT_* / AGENTCTL_AGENT_*
 * variables. Exit status 0 within the timeout is a delivery.
 */
export function execTarget(cmd: string, opts: DeliveryOptions = {}): AlertTarget {
  const argv = splitCommand(cmd);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const once = (payload: Record<string, unknown>) =>
    new Promise<void>((resolve, reject) => {
      const agent = (payload.agent ?? {}) as Record<string, unknown>;
      const env = {
        ...process.env,
        AGENTCTL_ALERT_ID: String(payload.alert_id ?? ''),
        AGENTCTL_ALERT_KIND: String(payload.kind ?? ''),
        AGENTCTL_ALERT_MESSAGE: String(payload.message ?? ''),
        AGENTCTL_AGENT: String(agent.name ?? ''),
        AGENTCTL_AGENT_STATE: String(payload.state ?? ''),
        AGENTCTL_AGENT_PREVIOUS_STATE: String(payload.previous_state ?? ''),
        AGENTCTL_AGENT_REASON: String(payload.reason ?? ''),
        AGENTCTL_AGENT_GROUP: String(agent.group ?? ''),
        AGENTCTL_DOWN_FOR_MS: payload.down_for_ms == null ? '' : String(payload.down_for_ms),
        AGENTCTL_ALERT_AT: String(payload.at ?? ''),
      };
      const child = spawn(argv[0]!, argv.slice(1), { env, stdio: ['pipe', 'ignore', 'pipe'], timeout: timeoutMs, killSignal: 'SIGKILL' });
      let stderr = '';
      child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-500)));
      child.stdin!.on('error', () => undefined); // a command that does not read stdin closes it early
      child.stdin!.end(JSON.stringify(payload));
      child.on('error', reject);
      child.on('close', (code, signal) => {
        if (code === 0) resolve();
        else reject(new Error(signal ? `killed by ${signal}${signal === 'SIGKILL' ? ` (timeout ${timeoutMs}ms?)` : ''}` : `exit ${code}${stderr.trim() ? `: ${stderr.trim().split('\n').pop()}` : ''}`));
      });
    });
  return { id: `exec:${cmd}`, send: (p) => withRetries(() => once(p), opts.retries ?? DEFAULT_RETRIES) };
}

async function withRetries(fn: () => Promise<void>, retries: number): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (attempt >= retries) throw err;
      await sleep(200 * 2 ** attempt);
    }
  }
}

export interface DeliveryResult {
  sent: { alertId: number; target: string }[];
  failed: { alertId: number; target: string; error: string; gaveUp: boolean }[];
}

/**
 * Delivers the outbox's open deliveries to these targets: claims them (so a racing monitor skips them), sends, and
 * marks each sent, or pending again for a later pass, or failed once it is older than `maxAgeMs` (default 24 h).
 */
export async function deliverAlerts(store: Store, targets: readonly AlertTarget[], now: number, opts: DeliveryOptions & { maxAgeMs?: number } = {}): Promise<DeliveryResult> {
  const result: DeliveryResult = { sent: [], failed: [] };
  if (!targets.length) return result;
  const byId = new Map(targets.map((t) => [t.id, t]));
  const perTry = (opts.timeoutMs ?? DEFAULT_TIMEOUT_MS) + 1000;
  const claimUntil = now + perTry * ((opts.retries ?? DEFAULT_RETRIES) + 1) * 4;
  const claimed = claimDeliveries(store, [...byId.keys()], now, claimUntil);
  await Promise.all(
    [...byId.keys()].map(async (id) => {
      // One target's alerts in order; targets in parallel.
      for (const d of claimed.filter((c) => c.target === id)) {
        try {
          await byId.get(id)!.send(d.payload);
          finishDelivery(store, d, 'sent', now, null);
          result.sent.push({ alertId: d.alertId, target: id });
        } catch (err) {
          // A test alert is one-shot: it tells whether the receivers work now, and is never retried later.
          const gaveUp = d.payload.kind === 'test' || now - d.createdAt > (opts.maxAgeMs ?? 86_400_000);
          const error = (err as Error).message ?? String(err);
          finishDelivery(store, d, gaveUp ? 'failed' : 'pending', now, error);
          result.failed.push({ alertId: d.alertId, target: id, error, gaveUp });
        }
      }
    }),
  );
  return result;
}
