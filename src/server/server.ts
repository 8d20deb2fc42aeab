import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import type { Store } from '../store/store.js';
import { Auth, type AuthOptions } from './auth.js';
import { BeatWriter } from './beats.js';
import { HttpError, SECURITY_HEADERS, decodeSegment, sendJson, sendText, statusOf } from './http.js';
import { EventStream } from './sse.js';
import { apiRoutes } from './routes/api.js';
import { dashboardRoutes, sendLoginHint } from './routes/dashboard.js';
import { badgeRoutes } from './routes/badge.js';
import { pingRoutes } from './routes/ping.js';
import { sessionRoutes } from './routes/session.js';
import type { App, Route } from './routes/types.js';

export interface ServeOptions {
  store: Store;
  dbPath: string;
  /** Where a restarted agent's NAME.log goes (default: logs/ beside the database). */
  logDir?: string;
  /** As root, restart even though others may write the database. */
  allowSharedDb?: boolean;
  host: string;
  port: number;
  /** Time a client has to send the request headers (server.headersTimeout). */
  headersTimeoutMs: number;
  /** Time a client has to send the whole request (server.requestTimeout). */
  requestTimeoutMs: number;
  /** The event stream's poll interval and keep-alive comment interval. */
  pollMs: number;
  keepAliveMs: number;
  auth?: AuthOptions;
  /** HTTPS with this certificate chain and key (PEM); plain HTTP without. */
  tls?: { cert: Buffer; key: Buffer };
  /** Called with one line for each request that failed on the server's side (a 5xx). */
  log?: (line: string) => void;
  now?: () => number;
}

const ROUTES: Route[] = [...pingRoutes, ...sessionRoutes, ...apiRoutes, ...badgeRoutes, ...dashboardRoutes];

/** A running `agentctl serve`: its address, and close() that stops it cleanly. */
export interface RunningServer {
  server: Server;
  address: { host: string; port: number };
  /** 'https' when serving TLS. */
  scheme: 'http' | 'https';
  close(): Promise<void>;
}

/**
 * Handles one request: security headers, the route, authentication and roles (in this one place, before any
 * route runs), then the route's handler. Errors become their 4xx answer; only a failure of our own is a 5xx.
 */
async function handle(app: App, routes: Route[], req: IncomingMessage, res: ServerResponse, log: (line: string) => void): Promise<void> {
  for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
  let route: Route | undefined;
  try {
    const url = new URL(req.url ?? '/', 'http://agentctl.invalid');
    let params: string[] = [];
    const allowed: string[] = [];
    for (const r of routes) {
      const m = r.path.exec(url.pathname);
      if (!m) continue;
      allowed.push(...r.methods);
      if (!r.methods.includes(req.method ?? '')) continue;
      route = r;
      // An optional group that did not match stays undefined.
      params = m.slice(1).map((s) => (s === undefined ? (s as unknown as string) : decodeSegment(s)));
      break;
    }
    if (!route) {
      if (allowed.length) throw new HttpError(405, 'method not allowed', { Allow: allowed.join(', ') });
      throw new HttpError(404, 'not found');
    }
    let principal;
    if (route.access !== 'public') {
      const queryKey = route.queryToken ? (url.searchParams.get('token') ?? undefined) : undefined;
      principal = await app.auth.authenticate(req, route.pingKey?.(params), queryKey);
      app.auth.authorize(req, principal, route.access, route.agent?.(params));
    }
    await route.handle({ req, res, url, params, principal, app });
  } catch (err) {
    const { status, message, headers } = statusOf(err);
    if (status >= 500 && !(err instanceof HttpError)) log(`agentctl serve: ${req.method} ${logPath(req)}: ${(err as Error)?.message ?? String(err)}`);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    // Whatever the handler left unread is drained, so that a keep-alive connection stays in step.
    if (!req.complete) req.resume();
    // A browser that opens a page without a session is told how to log in.
    if (route?.page && status === 401) return sendLoginHint(res, headers);
    // The API answers in JSON, errors included; pings (for curl and runitor) and the rest in plain text.
    if ((req.url ?? '').startsWith('/api/')) sendJson(res, status, { error: message, status }, headers);
    else sendText(res, status, message, headers);
  }
}

/** The request path for a log line: no query, and no ping key. */
function logPath(req: IncomingMessage): string {
  return (req.url ?? '/').replace(/^(\/ping\/)[^/?]+/, '$1…').split('?')[0]!;
}

/** Starts serving on host:port (port 0: any free one) and resolves once it listens. */
export async function startServer(opts: ServeOptions): Promise<RunningServer> {
  const now = opts.now ?? Date.now;
  const auth = new Auth(opts.store, { ...opts.auth, now, secure: opts.tls !== undefined });
  const log = opts.log ?? (() => {});
  const stream = new EventStream(opts.store, { pollMs: opts.pollMs, keepAliveMs: opts.keepAliveMs, log });
  const app: App = { store: opts.store, beats: new BeatWriter(opts.store), auth, stream, dbPath: opts.dbPath, logDir: opts.logDir ?? join(dirname(opts.dbPath), 'logs'), allowSharedDb: Boolean(opts.allowSharedDb), now };
  const settings = { headersTimeout: opts.headersTimeoutMs, requestTimeout: opts.requestTimeoutMs, connectionsCheckingInterval: Math.min(1000, opts.headersTimeoutMs), maxHeaderSize: 16_384 };
  const onRequest = (req: IncomingMessage, res: ServerResponse) => void handle(app, ROUTES, req, res, log);
  // A certificate or key that does not parse throws here, before anything listens.
  const server: Server = opts.tls ? createTlsServer({ ...settings, cert: opts.tls.cert, key: opts.tls.key }, onRequest) : createServer(settings, onRequest);
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: opts.host, port: opts.port, backlog: 2048 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const a = server.address() as AddressInfo;
  return {
    server,
    address: { host: a.address, port: a.port },
    scheme: opts.tls ? 'https' : 'http',
    close: () =>
      new Promise<void>((resolve) => {
        stream.close();
        server.close(() => resolve());
        server.closeIdleConnections();
        // Requests in flight get a moment to finish; then every connection goes.
        setTimeout(() => server.closeAllConnections(), 2_000).unref();
      }),
  };
}
