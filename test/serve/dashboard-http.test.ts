import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { cli, cliJson, tempDb, trackAgent, waitFor } from '../helpers.js';
import { agentOf, bearer, createToken, historyJson, serve } from './serve-helpers.js';

/** A raw request line, as a browser would never send it but an attacker may (fetch normalises dots away). */
function rawGet(base: string, path: string, headers: Record<string, string> = {}): Promise<string> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const sock = connect(Number(port), hostname, () => {
      sock.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`);
    });
    let out = '';
    sock.setEncoding('utf8').on('data', (d) => (out += d));
    sock.on('end', () => resolve(out));
    sock.on('error', reject);
  });
}

describe('serve: the dashboard over HTTP', () => {
  it('serves its pages to viewers under a strict CSP, a login hint to anybody else, and nothing outside its files', async () => {
    const db = tempDb();
    const viewer = createToken(db, 'viewer', 'viewer');
    const agent = createToken(db, 'pinger', 'agent');
    const s = await serve(db);
    for (const path of ['/', '/agents/web-1']) {
      const anon = await fetch(`${s.base}${path}`);
      expect(anon.status).toBe(401);
      expect(anon.headers.get('content-type')).toMatch(/^text\/html/);
      const hint = await anon.text();
      expect(hint).toContain('/login?token=');
      expect(hint).toContain('agentctl token create');
      // An agent token is no viewer: 403, not the page.
      expect((await fetch(`${s.base}${path}`, { headers: bearer(agent) })).status).toBe(403);
      const page = await fetch(`${s.base}${path}`, { headers: bearer(viewer) });
      expect(page.status).toBe(200);
      expect(page.headers.get('content-type')).toMatch(/^text\/html/);
      const csp = page.headers.get('content-security-policy')!;
      expect(csp).toMatch(/default-src 'self'/);
      expect(csp).toMatch(/script-src 'self'(;|$)/);
      expect(csp).toMatch(/style-src 'self'(;|$)/);
      expect(csp).toMatch(/frame-ancestors 'none'/);
      expect(page.headers.get('x-content-type-options')).toBe('nosniff');
      const html = await page.text();
      // No inline script, no inline style, no event-handler attribute: the CSP would refuse them anyway.
      expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/i);
      expect(html).not.toMatch(/<style|\sstyle=|\son[a-z]+=/i);
    }
    // The scripts and styles hold no data: public, with their types and nosniff.
    for (const [path, type] of [['/assets/app.js', 'text/javascript'], ['/assets/fleet.js', 'text/javascript'], ['/assets/style.css', 'text/css'], ['/assets/favicon.svg', 'image/svg\\+xml']]) {
      const r = await fetch(`${s.base}${path}`);
      expect(r.status, path).toBe(200);
      expect(r.headers.get('content-type')).toMatch(new RegExp(`^${type}`));
      expect(r.headers.get('x-content-type-options')).toBe('nosniff');
    }
    // Only the fixed list: no other file, no path that climbs out.
    for (const path of ['/assets/nope.js', '/assets/index.html', '/index.html', '/assets/app.js.map', '/assets/%2e%2e%2fpackage.json', '/assets/..%2F..%2Fpackage.json']) {
      expect((await fetch(`${s.base}${path}`, { headers: bearer(viewer) })).status, path).toBe(404);
    }
    for (const path of ['/assets/../../package.json', '/assets/../../../etc/passwd', '/../package.json']) {
      const raw = await rawGet(s.base, path, bearer(viewer));
      expect(raw, path).toMatch(/^HTTP\/1\.1 404 /);
      expect(raw).not.toContain('"name": "agentctl"');
    }
    // The login link opens the dashboard.
    const login = await fetch(`${s.base}/login?token=${viewer}`, { redirect: 'manual' });
    expect(login.status).toBe(303);
    expect(login.headers.get('location')).toBe('/');
    expect(await s.stop()).toEqual({ code: 0, signal: null });
  });
});

describe('serve: the operator controls the dashboard adds', () => {
  it('POST /api/v1/agents/NAME/restart restarts by the launch command, as agentctl restart does, and the event names the token', async () => {
    const db = tempDb();
    const op = createToken(db, 'olga', 'operator');
    const viewer = createToken(db, 'vic', 'viewer');
    expect(cli(['register', 'svc', '--', process.execPath, '-e', 'setInterval(() => {}, 1000)'], { db }).code).toBe(0);
    expect(cli(['register', 'bare'], { db }).code).toBe(0);
    const s = await serve(db);
    const post = (path: string, token: string, body: unknown = {}) => fetch(`${s.base}${path}`, { method: 'POST', headers: bearer(token, { 'Content-Type': 'application/json' }), body: JSON.stringify(body) });
    expect((await post('/api/v1/agents/svc/restart', viewer)).status).toBe(403);
    expect((await post('/api/v1/agents/svc/restart', op, { grace: '1s' })).status).toBe(400);
    expect((await post('/api/v1/agents/nobody/restart', op)).status).toBe(404);
    const bare = await post('/api/v1/agents/bare/restart', op);
    expect(bare.status).toBe(409);
    expect(((await bare.json()) as any).error).toMatch(/no launch command/);
    const r = await post('/api/v1/agents/svc/restart', op);
    const after = trackAgent(db, 'svc');
    const body = (await r.json()) as any;
    expect(r.status, JSON.stringify(body)).toBe(200);
    expect(body).toMatchObject({ name: 'svc', action: 'restarted', pid: expect.any(Number) });
    expect(after?.pid).toBe(body.pid);
    await waitFor(() => trackAgent(db, 'svc')?.supervisorPid != null, 'the new agentctl run to record itself');
    const note = historyJson(db, 'svc').find((e) => e.evidence?.control === 'restart');
    expect(note).toMatchObject({ reason: 'restarted by operator', evidence: { token: 'olga', action: 'restarted' } });
    expect(historyJson(db, 'bare').find((e) => e.evidence?.control === 'restart')).toMatchObject({ evidence: { token: 'olga' } });
    expect(await s.stop()).toEqual({ code: 0, signal: null });
  });

  it('POST /api/v1/agents/NAME/commands queues a command as agentctl send does; refused for an offline agent unless queue', async () => {
    const db = tempDb();
    const op = createToken(db, 'olga', 'operator');
    const viewer = createToken(db, 'vic', 'viewer');
    expect(cli(['heartbeat', 'svc'], { db }).code).toBe(0);
    expect(cli(['register', 'gone'], { db }).code).toBe(0);
    expect(cli(['set-status', 'gone', 'offline'], { db }).code).toBe(0);
    const s = await serve(db);
    const post = (name: string, token: string, body: unknown, headers: Record<string, string> = {}) =>
      fetch(`${s.base}/api/v1/agents/${name}/commands`, { method: 'POST', headers: bearer(token, { 'Content-Type': 'application/json', ...headers }), body: JSON.stringify(body) });
    expect((await post('svc', viewer, { payload: 'reload' })).status).toBe(403);
    for (const bad of [{}, { payload: '' }, { payload: 1 }, { payload: 'x', queue: 'yes' }, { payload: 'x', timeout: 'soon' }, { payload: 'x', extra: 1 }]) {
      expect((await post('svc', op, bad)).status, JSON.stringify(bad)).toBe(400);
    }
    expect((await post('nobody', op, { payload: 'x' })).status).toBe(404);
    const r = await post('svc', op, { payload: '{"op":"reload"}', timeout: '1m' });
    expect(r.status).toBe(201);
    const c = (await r.json()) as any;
    expect(c).toMatchObject({ agentName: 'svc', payload: '{"op":"reload"}', state: 'queued' });
    const listed = cliJson(['commands', 'svc'], { db }) as any[];
    expect(listed.map((x) => x.id)).toEqual([c.id]);
    expect(historyJson(db, 'svc').at(-1)).toMatchObject({ reason: `command ${c.id} sent by operator`, evidence: { control: 'send', token: 'olga', command_id: c.id } });
    const refused = await post('gone', op, { payload: 'x' });
    expect(refused.status).toBe(409);
    expect((await post('gone', op, { payload: 'x', queue: true })).status).toBe(201);
    expect(agentOf(db, 'gone').state).toBe('offline');
    expect(await s.stop()).toEqual({ code: 0, signal: null });
  });
});
