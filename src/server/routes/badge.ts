import { createHash } from 'node:crypto';
import { viewAgent } from '../../core/agents.js';
import { validateGroup, validateName } from '../../core/validate.js';
import type { AgentState } from '../../store/rows.js';
import { HttpError } from '../http.js';
import type { Route, RouteContext } from './types.js';

/** A state's colour on a badge (shields.io's palette: green up, yellow suspect, red down, grey paused). */
const COLOUR: Record<AgentState, string> = {
  active: '#4c1',
  initializing: '#9f9f9f',
  maintenance: '#9f9f9f',
  stale: '#dfb317',
  error: '#e05d44',
  offline: '#e05d44',
  failed: '#e05d44',
};

/** Which state a group's badge shows when its agents differ: the worst one. */
const WORST_FIRST: readonly AgentState[] = ['failed', 'offline', 'error', 'stale', 'initializing', 'maintenance', 'active'];

/** Text for an XML attribute or element: the five characters XML gives meaning escaped, control characters dropped. */
export function xmlText(s: string): string {
  return s
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f\ufffe\uffff]/g, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

/** A width for `s` in Verdana 11px, near enough for a badge (wide letters count more). */
function textWidth(s: string): number {
  let w = 0;
  for (const ch of s) w += /[mwMW@]/.test(ch) ? 10 : /[il.:,;|!'1 ]/.test(ch) ? 4 : /[A-Z]/.test(ch) ? 8 : 7;
  return w;
}

/** A two-part flat badge, `label | message`, in the message's colour. Both texts are escaped here. */
export function badgeSvg(label: string, message: string, colour: string): string {
  const lw = textWidth(label) + 10;
  const mw = textWidth(message) + 10;
  const w = lw + mw;
  const l = xmlText(label);
  const m = xmlText(message);
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="20" role="img" aria-label="${l}: ${m}">` +
    `<title>${l}: ${m}</title>` +
    `<rect width="${lw}" height="20" fill="#555"/><rect x="${lw}" width="${mw}" height="20" fill="${colour}"/>` +
    `<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">` +
    `<text x="${lw / 2}" y="14">${l}</text><text x="${lw + mw / 2}" y="14">${m}</text></g></svg>`
  );
}

/**
 * Sends an SVG badge: image/svg+xml under a CSP that lets the image, opened on its own, run and load nothing (no
 * script, no style sheet, no fetch, sandboxed: it is drawn with presentation attributes only), revalidated on every view (`no-cache` with an ETag: a badge shows the state
 * of now, and an unchanged one costs a 304), kept out of shared caches since it needs a token.
 */
function sendSvg(ctx: RouteContext, svg: string): void {
  const etag = `"${createHash('sha256').update(svg).digest('base64url').slice(0, 22)}"`;
  const headers = {
    'Content-Type': 'image/svg+xml; charset=utf-8',
    'Content-Security-Policy': "default-src 'none'; frame-ancestors 'none'; sandbox",
    'Cache-Control': 'private, no-cache',
    ETag: etag,
  };
  if (ctx.req.headers['if-none-match'] === etag) {
    ctx.res.writeHead(304, headers);
    ctx.res.end();
    return;
  }
  ctx.res.writeHead(200, { ...headers, 'Content-Length': Buffer.byteLength(svg) });
  ctx.res.end(ctx.req.method === 'HEAD' ? undefined : svg);
}

/** GET /badge/<name>.svg: the agent's name and its state, in the state's colour. */
async function agentBadge(ctx: RouteContext): Promise<void> {
  const name = validateName(ctx.params[0]);
  const record = await ctx.app.store.getAgent(name);
  if (!record || record.deregisteredAt !== null) throw new HttpError(404, 'not found');
  const { state } = viewAgent(record, ctx.app.now());
  sendSvg(ctx, badgeSvg(name, state, COLOUR[state]));
}

/** GET /badge/group/<group>.svg: the group's name, how many of its agents are active, in its worst state's colour. */
async function groupBadge(ctx: RouteContext): Promise<void> {
  const group = ctx.params[0]!;
  validateGroup(group);
  const now = ctx.app.now();
  const states = (await ctx.app.store.listAgents({ group })).map((a) => viewAgent(a, now).state);
  if (!states.length) throw new HttpError(404, 'not found');
  const worst = WORST_FIRST.find((s) => states.includes(s))!;
  const active = states.filter((s) => s === 'active').length;
  const message = worst === 'active' ? `${active} active` : `${active}/${states.length} active, ${states.filter((s) => s === worst).length} ${worst}`;
  sendSvg(ctx, badgeSvg(group, message, COLOUR[worst]));
}

/**
 * Status badges for a README or a wiki page. They need a viewer token like the rest of the read API; since an
 * `<img>` sends no Authorization header, the token may come as `?token=` here (and only here): make a viewer
 * token for badges alone, so that one leaked with a page can be revoked without touching anyone else's.
 */
export const badgeRoutes: Route[] = [
  { methods: ['GET', 'HEAD'], path: /^\/badge\/group\/([^/]+)\.svg$/, access: 'viewer', queryToken: true, handle: groupBadge },
  { methods: ['GET', 'HEAD'], path: /^\/badge\/([^/]+)\.svg$/, access: 'viewer', queryToken: true, handle: agentBadge },
];
