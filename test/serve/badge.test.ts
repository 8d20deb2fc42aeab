import { describe, expect, it } from 'vitest';
import { cli, tempDb } from '../helpers.js';
import { badgeSvg, xmlText } from '../../src/server/routes/badge.js';
import { bearer, createToken, serve } from './serve-helpers.js';

describe('serve: badges', () => {
  it('/badge/NAME.svg: the state in its colour, image/svg+xml under a CSP that runs nothing, revalidated by ETag', async () => {
    const db = tempDb();
    const viewer = createToken(db, 'badges', 'viewer');
    expect(cli(['heartbeat', 'web-1'], { db }).code).toBe(0);
    expect(cli(['heartbeat', 'web-2', '--status', 'error', '--message', 'down'], { db }).code).toBe(0);
    const s = await serve(db);
    let r = await fetch(`${s.base}/badge/web-1.svg`, { headers: bearer(viewer) });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('image/svg+xml; charset=utf-8');
    expect(r.headers.get('content-security-policy')).toBe("default-src 'none'; frame-ancestors 'none'; sandbox");
    expect(r.headers.get('x-content-type-options')).toBe('nosniff');
    expect(r.headers.get('cache-control')).toBe('private, no-cache');
    const svg = await r.text();
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" [^>]*aria-label="web-1: active">/);
    expect(svg).toContain('fill="#4c1"');
    expect(svg).not.toMatch(/<script|<style|on\w+=|href=/i);
    const etag = r.headers.get('etag')!;
    expect(etag).toMatch(/^"[\w-]+"$/);
    // Unchanged: 304 without a body. Changed: a new image.
    r = await fetch(`${s.base}/badge/web-1.svg`, { headers: bearer(viewer, { 'If-None-Match': etag }) });
    expect([r.status, await r.text()]).toEqual([304, '']);
    expect(cli(['set-status', 'web-1', 'maintenance'], { db }).code).toBe(0);
    r = await fetch(`${s.base}/badge/web-1.svg`, { headers: bearer(viewer, { 'If-None-Match': etag }) });
    expect(r.status).toBe(200);
    expect(await r.text()).toContain('aria-label="web-1: maintenance"');
    r = await fetch(`${s.base}/badge/web-2.svg`, { headers: bearer(viewer) });
    const red = await r.text();
    expect(red).toContain('aria-label="web-2: error"');
    expect(red).toContain('fill="#e05d44"');
    // HEAD: the headers without the image.
    r = await fetch(`${s.base}/badge/web-2.svg`, { method: 'HEAD', headers: bearer(viewer) });
    expect([r.status, await r.text(), r.headers.get('content-type')]).toEqual([200, '', 'image/svg+xml; charset=utf-8']);
    // Unknown, or not a name: 404 / 400, as text.
    expect((await fetch(`${s.base}/badge/nobody.svg`, { headers: bearer(viewer) })).status).toBe(404);
    expect((await fetch(`${s.base}/badge/%3Cx%3E.svg`, { headers: bearer(viewer) })).status).toBe(400);
    expect(await s.stop()).toEqual({ code: 0, signal: null });
  });

  it('/badge/group/GROUP.svg: active of all, in the colour of the worst state; unknown group 404', async () => {
    const db = tempDb();
    const viewer = createToken(db, 'badges', 'viewer');
    for (const n of ['a', 'b', 'c']) {
      expect(cli(['register', `web-${n}`, '--group', 'web'], { db }).code).toBe(0);
      expect(cli(['heartbeat', `web-${n}`], { db }).code).toBe(0);
    }
    const s = await serve(db);
    const badge = async (group: string) => (await fetch(`${s.base}/badge/group/${encodeURIComponent(group)}.svg`, { headers: bearer(viewer) })).text();
    let svg = await badge('web');
    expect(svg).toContain('aria-label="web: 3 active"');
    expect(svg).toContain('fill="#4c1"');
    expect(cli(['set-status', 'web-b', 'offline'], { db }).code).toBe(0);
    svg = await badge('web');
    expect(svg).toContain('aria-label="web: 2/3 active, 1 offline"');
    expect(svg).toContain('fill="#e05d44"');
    const r = await fetch(`${s.base}/badge/group/none.svg`, { headers: bearer(viewer) });
    expect(r.status).toBe(404);
    expect(await s.stop()).toEqual({ code: 0, signal: null });
  });

  it('needs a viewer token: in a header, or as ?token= (an <img> sends no header); agent tokens and none are refused', async () => {
    const db = tempDb();
    const viewer = createToken(db, 'badges', 'viewer');
    const op = createToken(db, 'ops', 'operator');
    const agent = createToken(db, 'pinger', 'agent');
    expect(cli(['heartbeat', 'web-1'], { db }).code).toBe(0);
    const s = await serve(db);
    const status = async (q: string, headers: Record<string, string> = {}) => (await fetch(`${s.base}/badge/web-1.svg${q}`, { headers })).status;
    expect(await status('')).toBe(401);
    expect(await status(`?token=${viewer}`)).toBe(200);
    expect(await status(`?token=${op}`)).toBe(200);
    expect(await status(`?token=${agent}`)).toBe(403);
    expect(await status('?token=agentctl_wrong')).toBe(401);
    // ?token= is for badges only: the read API still wants the header.
    expect((await fetch(`${s.base}/api/v1/agents?token=${viewer}`)).status).toBe(401);
    expect(cli(['token', 'revoke', 'badges'], { db }).code).toBe(0);
    expect(await status(`?token=${viewer}`)).toBe(401);
    expect(await s.stop()).toEqual({ code: 0, signal: null });
  });

  it('text on a badge is escaped for XML (names cannot hold these characters today; the badge does not rely on it)', () => {
    expect(xmlText(`<a href="x">&'\u0000\u001b`)).toBe('&lt;a href=&quot;x&quot;&gt;&amp;&apos;');
    const svg = badgeSvg('<script>alert(1)</script>', 'a&b', '#4c1');
    expect(svg).not.toContain('<script>');
    expect(svg).toContain('<text x="');
    expect(svg).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(svg).toContain('aria-label="&lt;script&gt;alert(1)&lt;/script&gt;: a&amp;b"');
  });
});
