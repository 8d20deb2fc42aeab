import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach } from 'vitest';
import { exited, startCli } from './helpers.js';
import { openStore, registerAgent, updateHeartbeat } from '../dist/index.js';

const servers = new Set<Server>();

afterEach(async () => {
  await Promise.all([...servers].map((s) => new Promise((r) => s.close(r))));
  servers.clear();
});

/** A webhook receiver on loopback that records every JSON body it gets; closed after the test. */
export async function receiver(port = 0): Promise<{ url: string; port: number; bodies: any[]; close(): Promise<void> }> {
  const bodies: any[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      bodies.push(JSON.parse(body));
      res.writeHead(200, { connection: 'close' }).end('ok');
    });
  });
  servers.add(server);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const actual = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${actual}/hook`,
    port: actual,
    bodies,
    close: () => new Promise((r) => { servers.delete(server); server.close(() => r()); }),
  };
}

/** A loopback port nobody listens on (for now). */
export async function freePort(): Promise<number> {
  const r = await receiver();
  await r.close();
  return r.port;
}

/**
 * Runs the CLI without blocking this process (cli() uses spawnSync, which would stop the in-process receiver from
 * answering while the monitor waits for it).
 */
export async function cliAsync(args: string[], opts: { db?: string } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = startCli(args, opts);
  const { code } = await exited(child);
  // 'exit' can come before the last output: wait for the streams to end too.
  await Promise.all([child.stdout, child.stderr].map((s) => (s!.readableEnded ? undefined : new Promise((r) => s!.once('end', r)))));
  return { code, stdout: child.output(), stderr: child.errors() };
}

/** Registers NAME with a contract and beats once, both at the same instant (a slow machine cannot slip a gap in). */
export function beatOnce(db: string, name: string, contract: { intervalMs: number; staleMultiplier?: number; offlineAfterMs?: number }): void {
  const store = openStore({ path: db });
  const now = Date.now();
  registerAgent(store, { name, ...contract }, now);
  updateHeartbeat(store, { name }, now);
  store.close();
}
