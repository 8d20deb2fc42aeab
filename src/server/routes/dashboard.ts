import { readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';
import { HttpError, PAGE_CSP } from '../http.js';
import type { Route, RouteContext } from './types.js';

/** Where `npm run build` puts the dashboard (tsconfig.web.json and scripts/copy-assets.mjs). */
const WEB_DIR = new URL('../../web/', import.meta.url);

const JS = 'text/javascript; charset=utf-8';

/**
 * Every file the dashboard is made of, by its URL. Only these are ever served: no path from a request is joined
 * onto a directory, so nothing outside the dashboard's files can be reached.
 */
const ASSETS: Record<string, { file: string; type: string }> = {
  '/assets/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
  '/assets/app.js': { file: 'app.js', type: JS },
  '/assets/api.js': { file: 'api.js', type: JS },
  '/assets/dom.js': { file: 'dom.js', type: JS },
  '/assets/format.js': { file: 'format.js', type: JS },
  '/assets/fleet.js': { file: 'fleet.js', type: JS },
  '/assets/agent.js': { file: 'agent.js', type: JS },
  '/assets/controls.js': { file: 'controls.js', type: JS },
  '/assets/model.js': { file: 'model.js', type: JS },
  '/assets/favicon.svg': { file: 'favicon.svg', type: 'image/svg+xml' },
};

const cache = new Map<string, Buffer>();

/** A file of the build, read once. A build without the dashboard is a 404 that says how to build it. */
function webFile(file: string): Buffer {
  let body = cache.get(file);
  if (!body) {
    try {
      body = readFileSync(fileURLToPath(new URL(file, WEB_DIR)));
    } catch {
      throw new HttpError(404, "the dashboard is not built: run 'npm run build'");
    }
    cache.set(file, body);
  }
  return body;
}

function send(res: ServerResponse, status: number, body: Buffer, type: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { ...headers, 'Content-Security-Policy': PAGE_CSP, 'Content-Type': type, 'Content-Length': body.length });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

/** The page shell: the script reads the path and the query (filters) and draws the fleet or one agent. */
function page(ctx: RouteContext): void {
  send(ctx.res, 200, webFile('index.html'), 'text/html; charset=utf-8');
}

function asset(ctx: RouteContext): void {
  const a = ASSETS[ctx.url.pathname];
  if (!a) throw new HttpError(404, 'not found');
  send(ctx.res, 200, webFile(a.file), a.type);
}

/** The answer to a browser that opens a page without a session: 401 and a page that says how to log in. */
export function sendLoginHint(res: ServerResponse, headers: Record<string, string>): void {
  let body: Buffer;
  try {
    body = webFile('login.html');
  } catch {
    body = Buffer.from('Log in with the link agentctl serve printed (/login?token=...).\n');
  }
  send(res, 401, body, 'text/html; charset=utf-8', headers);
}

/**
 * The dashboard: its pages need a viewer's session (or token); its scripts and styles, which hold no data, are
 * public, so that the login hint is styled too.
 */
export const dashboardRoutes: Route[] = [
  { methods: ['GET', 'HEAD'], path: /^\/$/, access: 'viewer', page: true, handle: page },
  { methods: ['GET', 'HEAD'], path: /^\/agents\/([^/]+)$/, access: 'viewer', page: true, handle: page },
  { methods: ['GET', 'HEAD'], path: /^\/assets\/[a-z-]+\.(?:js|css|svg)$/, access: 'public', handle: asset },
];
