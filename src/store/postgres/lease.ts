import { loadPg } from './pg-module.js';
import { LockCompromisedError, LockHeldError } from '../../errors.js';
import type { LockHandle, LockOptions } from '../sqlite/lock.js';
import { clientConfig, describePgError } from './executor.js';

const { Client } = loadPg();

/** The first key of every agentctl advisory lock ('AGCT', as the migrations' lock). */
export const ADVISORY_CLASS = 0x41474354;

/** The second key of the advisory lock of a lease name: a stable 31-bit hash of the name. */
export function advisoryKey(name: string): number {
  let h = 0x811c9dc5;
  for (const ch of Buffer.from(name)) h = Math.imul(h ^ ch, 0x01000193) >>> 0;
  return h & 0x7fffffff;
}

/** How a lease is named in messages: there is no file to name. */
export function advisoryName(name: string): string {
  return `advisory '${name}'`;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * `fn` while this process holds the lease `opts.name` of the database at `url`: pg_try_advisory_lock on a
 * DEDICATED connection (never a pooled one, whose session another statement would share), held as long as that
 * connection lives. Another holder: LockHeldError (after opts.retries tries a second apart). A lost connection
 * drops the lease with it: `handle.signal` aborts, and fn's result is replaced by LockCompromisedError.
 */
export async function withAdvisoryLease<T>(url: string, opts: LockOptions, fn: (handle: LockHandle) => Promise<T>): Promise<T> {
  const lockPath = advisoryName(opts.name);
  const key = advisoryKey(opts.name);
  const client = new Client({ ...clientConfig({ url, applicationName: `agentctl ${opts.name}` }), keepAlive: true });
  const ac = new AbortController();
  const lost = (err?: unknown) => {
    if (!ac.signal.aborted) ac.abort(new LockCompromisedError(lockPath, { cause: err }));
  };
  client.on('error', lost);
  client.on('end', () => lost());
  try {
    await client.connect();
  } catch (err) {
    throw describePgError(err, url);
  }
  let ping: NodeJS.Timeout | undefined;
  try {
    for (let attempt = 0; ; attempt++) {
      const r = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS ok', [ADVISORY_CLASS, key]);
      if (r.rows[0]?.ok) break;
      if (attempt >= (opts.retries ?? 0)) throw new LockHeldError(opts.name, lockPath);
      await sleep(1000);
    }
    // An idle connection that died is noticed only when it is used: ask the server every few seconds.
    ping = setInterval(() => {
      void client.query('SELECT 1').catch(lost);
    }, 2000);
    ping.unref();
    const result = await fn({ signal: ac.signal, lockPath });
    if (ac.signal.aborted) throw ac.signal.reason as Error;
    await client.query('SELECT pg_advisory_unlock($1, $2)', [ADVISORY_CLASS, key]).catch(() => undefined);
    return result;
  } catch (err) {
    if (err instanceof LockHeldError || err instanceof LockCompromisedError) throw err;
    if (ac.signal.aborted) throw ac.signal.reason as Error;
    throw describePgError(err, url);
  } finally {
    clearInterval(ping);
    client.removeAllListeners('end');
    client.on('error', () => undefined);
    // Ending the session releases its advisory locks, whatever happened above.
    await client.end().catch(() => undefined);
  }
}
