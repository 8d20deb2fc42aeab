import { HttpError, sendJson } from '../http.js';
import type { Route, RouteContext } from './types.js';

/**
 * GET /login?token=…: opens a browser session (an HttpOnly, SameSite=Strict cookie, and the CSRF token the page
 * sends back on every change) and sends the browser on to the dashboard. A one-time login link works once.
 */
async function login(ctx: RouteContext): Promise<void> {
  const token = ctx.url.searchParams.get('token');
  if (token === null || token === '') throw new HttpError(400, 'use /login?token=TOKEN');
  const s = await ctx.app.auth.login(ctx.req, token);
  ctx.res.writeHead(303, { Location: '/', 'Set-Cookie': s.cookies, 'Content-Length': 0 });
  ctx.res.end();
}

/** POST /logout: ends the session (with its CSRF token, like every change made by cookie). */
function logout(ctx: RouteContext): void {
  ctx.app.auth.logout(ctx.principal!);
  sendJson(ctx.res, 200, { loggedOut: true }, { 'Set-Cookie': `agentctl_session=; HttpOnly; ${ctx.app.auth.cookieAttributes}; Max-Age=0` });
}

export const sessionRoutes: Route[] = [
  { methods: ['GET'], path: /^\/login$/, access: 'public', handle: login },
  { methods: ['POST'], path: /^\/logout$/, access: 'viewer', handle: logout },
];
