import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import { join } from 'node:path';
import { type AddressInfo, type Socket, createServer as createNetServer } from 'node:net';
import { afterEach } from 'vitest';
import { FIXTURES, exited, startCli } from './helpers.js';
import { openStore, registerAgent, updateHeartbeat } from '../dist/index.js';

const servers = new Set<Server>();

afterEach(async () => {
  await Promise.all([...servers].map((s) => new Promise((r) => s.close(r))));
  servers.clear();
});

/** The test-only certificate of the HTTPS receiver (trust it with NODE_EXTRA_CA_CERTS=TLS_CERT). */
export const TLS_CERT = join(FIXTURES, 'tls', 'cert.pem');

/**
 * A webhook receiver on loopback that records every JSON body it takes; closed after the test. With `tls`, it
 * speaks HTTPS with the certificate in test/fixtures/tls. `status(n)` chooses the answer to the n-th request (from
 * 1; default 200): only bodies answered with a 2xx are in `bodies`, every request is in `requests`.
 */
export async function receiver(
  port = 0,
  opts: { tls?: boolean; status?: (n: number) => number } = {},
): Promise<{ url: string; port: number; bodies: any[]; requests: any[]; close(): Promise<void> }> {
  const bodies: any[] = [];
  const requests: any[] = [];
  const handle = (req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      const parsed = JSON.parse(body);
      requests.push(parsed);
      const code = opts.status?.(requests.length) ?? 200;
      if (code >= 200 && code < 300) bodies.push(parsed);
      res.writeHead(code, { connection: 'close' }).end(code < 300 ? 'ok' : 'not now');
    });
  };
  const server = opts.tls
    ? createTlsServer({ cert: readFileSync(TLS_CERT), key: readFileSync(join(FIXTURES, 'tls', 'key.pem')) }, handle)
    : createServer(handle);
  servers.add(server);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const actual = (server.address() as AddressInfo).port;
  return {
    url: `${opts.tls ? 'https' : 'http'}://127.0.0.1:${actual}/hook`,
    port: actual,
    bodies,
    requests,
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
export async function cliAsync(args: string[], opts: { db?: string; env?: Record<string, string | undefined> } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = startCli(args, opts);
  const { code } = await exited(child); // with all its output read
  return { code, stdout: child.output(), stderr: child.errors() };
}

/** Registers NAME with a contract and beats once, both at the same instant (a slow machine cannot slip a gap in). */
export async function beatOnce(db: string, name: string, contract: { intervalMs: number; staleMultiplier?: number; offlineAfterMs?: number }): Promise<void> {
  const store = await openStore({ path: db });
  const now = Date.now();
  await registerAgent(store, { name, ...contract }, now);
  await updateHeartbeat(store, { name }, now);
  await store.close();
}

/**
 * A receiver that accepts connections on loopback and never answers (a hung webhook): it reads and drops what it
 * is sent, and records when each connection opened and closed (the client gave up). Closed after the test.
 */
export async function blindReceiver(port = 0): Promise<{ url: string; port: number; opened: number[]; closed: number[]; open(): number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const opened: number[] = [];
  const closed: number[] = [];
  const server = createNetServer((s) => {
    opened.push(Date.now());
    sockets.add(s);
    s.on('data', () => undefined);
    s.on('error', () => undefined);
    s.on('close', () => {
      sockets.delete(s);
      closed.push(Date.now());
    });
  });
  const close = () =>
    new Promise<void>((r) => {
      blind.delete(close);
      for (const s of sockets) s.destroy();
      server.close(() => r());
    });
  blind.add(close);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const actual = (server.address() as AddressInfo).port;
  return { url: `http://127.0.0.1:${actual}/hook`, port: actual, opened, closed, open: () => sockets.size, close };
}

const blind = new Set<() => Promise<void>>();
afterEach(async () => {
  await Promise.all([...blind].map((c) => c()));
});
