import { describe, expect, it } from 'vitest';
import { cli, tempDb } from '../helpers.js';
import { agentOf, bearer, createToken, historyJson, serve } from './serve-helpers.js';


describe('serve: authentication and roles', () => {
  it('401 without a token or with a wrong one; /healthz answers without one', async () => {
    const db = tempDb();
    await createToken(db, 'viewer', 'viewer');
    const s = await serve(db);
    expect(s.login).toBeNull(); // a token exists: no login link
    const h = await fetch(`${s.base}/healthz`);
    expect([h.status, ((await h.json()) as any).status]).toEqual([200, 'ok']);
    for (const path of ['/api/v1/agents', '/api/v1/events', '/api/v1/events/stream', '/metrics', '/api/v1/agents/x']) {
      const r = await fetch(`${s.base}${path}`);
      expect({ path, status: r.status }).toEqual({ path, status: 401 });
      expect(r.headers.get('www-authenticate')).toMatch(/^Bearer/);
      const w = await fetch(`${s.base}${path}`, { headers: bearer('agentctl_not-a-token') });
      expect({ path, status: w.status }).toEqual({ path, status: 401 });
      const bad = await fetch(`${s.base}${path}`, { headers: { Authorization: 'Basic dXNlcjpwYXNz' } });
      expect({ path, status: bad.status }).toEqual({ path, status: 401 });
    }
    expect(await s.stop()).toEqual({ code: 0, signal: null });
  });

  it('403 for the wrong role and for an agent token outside its pattern', async () => {
    const db = tempDb();
    const viewer = await createToken(db, 'viewer', 'viewer');
    const agent = await createToken(db, 'agent', 'agent');
    const batch = await createToken(db, 'batch', 'agent', 'batch-*');
    const op = await createToken(db, 'ops', 'operator');
    expect(cli(['register', 'job'], { db }).code).toBe(0);
    const s = await serve(db);
    const post = (path: string, token: string, body: unknown) => fetch(`${s.base}${path}`, { method: 'POST', headers: bearer(token, { 'Content-Type': 'application/json' }), body: JSON.stringify(body) });
    // A viewer reads but controls nothing and pings nothing.
    expect((await fetch(`${s.base}/api/v1/agents`, { headers: bearer(viewer) })).status).toBe(200);
    expect((await post('/api/v1/agents/job/status', viewer, { status: 'offline' })).status).toBe(403);
    expect((await post('/api/v1/agents/job/heartbeat', viewer, {})).status).toBe(403);
    expect((await fetch(`${s.base}/ping/${viewer}/job`)).status).toBe(403);
    // An agent token pings and beats, and reads nothing.
    expect((await fetch(`${s.base}/api/v1/agents`, { headers: bearer(agent) })).status).toBe(403);
    expect((await fetch(`${s.base}/metrics`, { headers: bearer(agent) })).status).toBe(403);
    expect((await post('/api/v1/agents/job/status', agent, { status: 'offline' })).status).toBe(403);
    expect((await post('/api/v1/agents/job/heartbeat', agent, {})).status).toBe(200);
    // Its pattern limits the names it may act for.
    expect((await post('/api/v1/agents/job/heartbeat', batch, {})).status).toBe(403);
    expect((await post('/api/v1/agents/batch-1/heartbeat?create=1', batch, {})).status).toBe(201);
    // An operator controls, but is no agent.
    expect((await fetch(`${s.base}/ping/${op}/job`)).status).toBe(403);
    expect(agentOf(db, 'job')).toMatchObject({ state: 'active', heartbeatSeq: 1 });
    expect(await s.stop()).toEqual({ code: 0, signal: null });
  });

  it('a revoked token is refused at once, and so is the browser session made with it', async () => {
    const db = tempDb();
    const viewer = await createToken(db, 'viewer', 'viewer');
    const agent = await createToken(db, 'agent', 'agent');
    expect(cli(['register', 'job'], { db }).code).toBe(0);
    const s = await serve(db);
    const login = await fetch(`${s.base}/login?token=${viewer}`, { redirect: 'manual' });
    expect(login.status).toBe(303);
    const cookie = login.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
    expect((await fetch(`${s.base}/api/v1/agents`, { headers: { Cookie: cookie } })).status).toBe(200);
    expect((await fetch(`${s.base}/api/v1/agents`, { headers: bearer(viewer) })).status).toBe(200);
    expect((await fetch(`${s.base}/ping/${agent}/job`)).status).toBe(200);
    expect(cli(['token', 'revoke', 'viewer'], { db }).code).toBe(0);
    expect(cli(['token', 'revoke', 'agent'], { db }).code).toBe(0);
    expect((await fetch(`${s.base}/api/v1/agents`, { headers: bearer(viewer) })).status).toBe(401);
    expect((await fetch(`${s.base}/api/v1/agents`, { headers: { Cookie: cookie } })).status).toBe(401);
    expect((await fetch(`${s.base}/ping/${agent}/job`)).status).toBe(401);
    expect((await fetch(`${s.base}/login?token=${viewer}`, { redirect: 'manual' })).status).toBe(401);
    // Revoking twice, or a name that never was: exit 3.
    const again = cli(['token', 'revoke', 'viewer'], { db });
    expect([again.code, again.stderr]).toEqual([3, "agentctl: no live token named 'viewer' (see 'agentctl token list')\n"]);
    expect(agentOf(db, 'job').heartbeatSeq).toBe(1);
    expect(await s.stop()).toEqual({ code: 0, signal: null });
  });

  it('the printed login link works once; a cookie session needs the CSRF token for every change', async () => {
    const db = tempDb();
    expect(cli(['register', 'job'], { db }).code).toBe(0);
    const s = await serve(db);
    expect(s.login).toMatch(/^agentctl_[A-Za-z0-9_-]{43}$/);
    expect(s.child.errors()).toContain(`log in once at ${s.base}/login?token=${s.login}`);
    // The one-time token is for the browser only.
    expect((await fetch(`${s.base}/api/v1/agents`, { headers: bearer(s.login!) })).status).toBe(401);
    const login = await fetch(`${s.base}/login?token=${s.login}`, { redirect: 'manual' });
    expect(login.status).toBe(303);
    const set = login.headers.getSetCookie();
    const session = set.find((c) => c.startsWith('agentctl_session='))!;
    expect(session).toMatch(/; HttpOnly/);
    expect(session).toMatch(/; SameSite=Strict/);
    expect(set.find((c) => c.startsWith('agentctl_csrf='))).not.toMatch(/HttpOnly/);
    expect((await fetch(`${s.base}/login?token=${s.login}`, { redirect: 'manual' })).status).toBe(401);
    const cookie = set.map((c) => c.split(';')[0]).join('; ');
    const me = (await (await fetch(`${s.base}/api/v1/session`, { headers: { Cookie: cookie } })).json()) as any;
    expect(me).toMatchObject({ role: 'operator', via: 'cookie', token: expect.stringMatching(/^login-/) });
    // A state-changing request by cookie without the CSRF token (what a form on another site could send) is refused.
    const forged = await fetch(`${s.base}/api/v1/agents/job/status`, { method: 'POST', headers: { Cookie: cookie, 'Content-Type': 'application/json' }, body: JSON.stringify({ status: 'offline' }) });
    expect(forged.status).toBe(403);
    const wrong = await fetch(`${s.base}/api/v1/agents/job/status`, { method: 'POST', headers: { Cookie: cookie, 'Content-Type': 'application/json', 'X-CSRF-Token': 'x'.repeat(43) }, body: JSON.stringify({ status: 'offline' }) });
    expect(wrong.status).toBe(403);
    const form = await fetch(`${s.base}/api/v1/agents/job/status`, { method: 'POST', headers: { Cookie: cookie, 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'status=offline' });
    expect(form.status).toBe(403);
    expect(agentOf(db, 'job').state).toBe('initializing');
    const ok = await fetch(`${s.base}/api/v1/agents/job/status`, { method: 'POST', headers: { Cookie: cookie, 'Content-Type': 'application/json', 'X-CSRF-Token': me.csrfToken }, body: JSON.stringify({ status: 'offline', reason: 'decommissioned' }) });
    expect(ok.status).toBe(200);
    expect(agentOf(db, 'job').state).toBe('offline');
    expect(historyJson(db, 'job').at(-1)).toMatchObject({ toState: 'offline', reason: 'decommissioned', evidence: { rule: 'manual', token: me.token } });
    // A new start prints no link once real tokens exist; while none does, it prints a fresh one.
    expect(await s.stop()).toEqual({ code: 0, signal: null });
    const again = await serve(db);
    expect(again.login).toMatch(/^agentctl_/);
    expect(again.login).not.toBe(s.login);
    expect(await again.stop()).toEqual({ code: 0, signal: null });
    await createToken(db, 'ops', 'operator');
    const third = await serve(db);
    expect(third.login).toBeNull();
    expect(await third.stop()).toEqual({ code: 0, signal: null });
  });

  it('failed attempts are limited per client address: 429 with Retry-After, even for a right token then', async () => {
    const db = tempDb();
    const viewer = await createToken(db, 'viewer', 'viewer');
    const s = await serve(db);
    for (let i = 0; i < 10; i++) expect((await fetch(`${s.base}/api/v1/agents`, { headers: bearer(`agentctl_guess${i}`) })).status).toBe(401);
    const limited = await fetch(`${s.base}/api/v1/agents`, { headers: bearer('agentctl_guess10') });
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
    expect((await fetch(`${s.base}/api/v1/agents`, { headers: bearer(viewer) })).status).toBe(429);
    expect((await fetch(`${s.base}/ping/agentctl_guess/job`)).status).toBe(429);
    expect((await fetch(`${s.base}/login?token=agentctl_guess`, { redirect: 'manual' })).status).toBe(429);
    // Public routes are not behind it.
    expect((await fetch(`${s.base}/healthz`)).status).toBe(200);
    expect(await s.stop()).toEqual({ code: 0, signal: null });
  });

  it("every operator control is an event naming the token, a change of availability included", async () => {
    const db = tempDb();
    const op = await createToken(db, 'ops', 'operator');
    expect(cli(['heartbeat', 'job'], { db }).code).toBe(0);
    const s = await serve(db);
    const set = (body: unknown) => fetch(`${s.base}/api/v1/agents/job/status`, { method: 'POST', headers: bearer(op, { 'Content-Type': 'application/json' }), body: JSON.stringify(body) });
    const before = historyJson(db, 'job').length;
    let r = await set({ status: 'busy' });
    expect(r.status).toBe(200);
    expect((await r.json()) as any).toMatchObject({ name: 'job', from: 'active', agent: { state: 'active', availability: 'busy' } });
    r = await set({ status: 'maintenance', for: '30m', reason: 'kernel upgrade' });
    expect(r.status).toBe(200);
    r = await set({ status: 'available' });
    expect(r.status).toBe(200);
    r = await set({ status: 'offline' });
    r = await set({ status: 'offline' });
    expect(r.status).toBe(200);
    const events = historyJson(db, 'job').slice(before);
    expect(events.map((e) => [e.fromState, e.toState, e.evidence?.token])).toEqual([
      ['active', 'active', 'ops'],
      ['active', 'maintenance', 'ops'],
      ['maintenance', 'active', 'ops'],
      ['active', 'offline', 'ops'],
      ['offline', 'offline', 'ops'],
    ]);
    expect(events[1]).toMatchObject({ reason: 'kernel upgrade', evidence: { rule: 'manual', until: expect.any(Number) } });
    // The CLI's own set-status writes what it always wrote: no token, no event for an availability change.
    expect(cli(['set-status', 'job', 'busy'], { db }).code).toBe(0);
    expect(historyJson(db, 'job').length).toBe(before + 5);
    expect(await s.stop()).toEqual({ code: 0, signal: null });
  });
});
