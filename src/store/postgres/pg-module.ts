import { createRequire } from 'node:module';
import type pg from 'pg';

let loaded: typeof pg | undefined;

/**
 * The pg module, loaded once. On load pg asks whether it runs in a Cloudflare Worker: where Node has no global
 * `navigator` (Node 20) it answers by building a `Response`, and touching that global loads Node's whole fetch
 * implementation, about a third of a short-lived `agentctl heartbeat --db postgres://…`. A plain `navigator` for
 * the length of that synchronous load gives pg its answer at once; it is removed before any other code runs.
 */
export function loadPg(): typeof pg {
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  const g = globalThis as { navigator?: unknown };
  if ('navigator' in g) return (loaded = require('pg') as typeof pg);
  Object.defineProperty(g, 'navigator', { value: { userAgent: 'Node.js' }, configurable: true, writable: true, enumerable: false });
  try {
    return (loaded = require('pg') as typeof pg);
  } finally {
    delete g.navigator;
  }
}
