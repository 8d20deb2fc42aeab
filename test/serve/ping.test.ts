import { describe, expect, it } from 'vitest';
import { cli, tempDb } from '../helpers.js';
import { agentOf, createToken, historyJson, serve } from './serve-helpers.js';

/**
 * Pings in healthchecks' slug form, side by side with what healthchecks does (hc/api/views.py, ping and
 * ping_by_slug): success, /start, /fail, /<exit-status>, /log; 200 "OK" text/plain with Ping-Body-Limit; 201
 * "Created" with ?create=1; 404 "not found" for an unknown name; 400 for an exit status above 255 or a rid that
 * is not a UUID. Where agentctl differs (a wrong key is 401/403 here, 404 there), the test says so.
 */
describe('pings (healthchecks slug form)', () => {
  it('each form answers as healthchecks does and sets the state its action means', async () => {
    const db = tempDb();
    const key = await createToken(db, 'pinger', 'agent');
    const s = await serve(db);
    const url = (suffix = '', q = '') => `${s.base}/ping/${key}/backup${suffix}${q}`;

    // healthchecks: unknown slug without ?create=1 → 404 "not found"; with it → 201 "Created".
    let r = await fetch(url());
    expect([r.status, await r.text()]).toEqual([404, 'not found']);
    expect(agentOf(db, 'backup')).toBeUndefined();
    r = await fetch(url('', '?create=1'));
    expect([r.status, await r.text()]).toEqual([201, 'Created']);
    expect(agentOf(db, 'backup')).toMatchObject({ state: 'active', heartbeatSeq: 1 });

    // success: 200 "OK", text/plain, Ping-Body-Limit: 10000 (healthchecks' default PING_BODY_LIMIT).
    r = await fetch(url());
    expect([r.status, await r.text()]).toEqual([200, 'OK']);
    expect(r.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(r.headers.get('ping-body-limit')).toBe('10000');
    expect(agentOf(db, 'backup')).toMatchObject({ state: 'active', heartbeatSeq: 2, reportedStatus: 'ok', availability: 'available', message: null });

    // HEAD and POST are pings too; a POST body is the message.
    r = await fetch(url(), { method: 'HEAD' });
    expect([r.status, await r.text()]).toEqual([200, '']);
    r = await fetch(url(), { method: 'POST', body: 'nightly backup done' });
    expect([r.status, await r.text()]).toEqual([200, 'OK']);
    expect(agentOf(db, 'backup')).toMatchObject({ heartbeatSeq: 4, message: 'nightly backup done' });

    // /start: the job is running (busy).
    r = await fetch(url('/start'));
    expect([r.status, await r.text()]).toEqual([200, 'OK']);
    expect(agentOf(db, 'backup')).toMatchObject({ state: 'active', reportedStatus: 'busy', availability: 'busy' });

    // /fail: an error.
    r = await fetch(url('/fail'), { method: 'POST', body: 'disk full' });
    expect([r.status, await r.text()]).toEqual([200, 'OK']);
    expect(agentOf(db, 'backup')).toMatchObject({ state: 'error', reportedStatus: 'error', message: 'disk full' });

    // /0 is success; /<1-255> is a failure with that exit status.
    r = await fetch(url('/0'), { method: 'POST', body: 'ok again' });
    expect([r.status, await r.text()]).toEqual([200, 'OK']);
    expect(agentOf(db, 'backup')).toMatchObject({ state: 'active', reportedStatus: 'ok', message: 'ok again' });
    r = await fetch(url('/3'), { method: 'POST', body: 'tar: short read' });
    expect([r.status, await r.text()]).toEqual([200, 'OK']);
    expect(agentOf(db, 'backup')).toMatchObject({ state: 'error', message: 'exit status 3: tar: short read' });
    r = await fetch(url('/255'));
    expect(r.status).toBe(200);
    expect(agentOf(db, 'backup')).toMatchObject({ state: 'error', message: 'exit status 255' });

    // /log: a message in the history, the state untouched (healthchecks: a "log" event that does not change status).
    // A first health-loop pass sets where its count of transitions starts.
    expect(cli(['monitor', '--once'], { db }).code).toBe(0);
    const before = agentOf(db, 'backup');
    r = await fetch(url('/log', '?rid=0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d'), { method: 'POST', body: 'rotated 3 files' });
    expect([r.status, await r.text()]).toEqual([200, 'OK']);
    const after = agentOf(db, 'backup');
    expect(after).toMatchObject({ state: before.state, heartbeatSeq: before.heartbeatSeq, message: before.message });
    const note = historyJson(db, 'backup').at(-1);
    expect(note).toMatchObject({ fromState: 'error', toState: 'error', reason: 'rotated 3 files', evidence: { rule: 'log', via: 'ping', token: 'pinger', rid: '0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d' } });
    // The health loop counts no transition for it.
    expect(cli(['monitor', '--once'], { db }).code).toBe(0);
    const metrics = cli(['metrics'], { db }).stdout;
    expect(metrics).toMatch(/^agentctl_transitions_total\{to="error"\} 0$/m);

    // ?create=1 on /log registers too (201), like every form.
    r = await fetch(`${s.base}/ping/${key}/rotate/log?create=1`, { method: 'POST', body: 'first words' });
    expect([r.status, await r.text()]).toEqual([201, 'Created']);
    expect(historyJson(db, 'rotate').map((e) => e.reason)).toEqual(['registered', 'first words']);
    expect(await s.stop()).toEqual({ code: 0, signal: null });
  });

  it('bad input gets a 4xx, never a 5xx, and writes nothing', async () => {
    const db = tempDb();
    const key = await createToken(db, 'pinger', 'agent');
    const op = await createToken(db, 'ops', 'operator');
    const batchOnly = await createToken(db, 'batch', 'agent', 'batch-*');
    expect(cli(['register', 'job'], { db }).code).toBe(0);
    const s = await serve(db);
    const seq = () => agentOf(db, 'job').heartbeatSeq;
    const start = seq();
    const cases: [string, RequestInit, number, string | null][] = [
      // healthchecks: exitstatus > 255 → 400 "invalid url format"; a rid that is no UUID → 400 "invalid uuid format".
      [`/ping/${key}/job/256`, {}, 400, 'invalid url format'],
      [`/ping/${key}/job/99999999999999999999`, {}, 400, 'invalid url format'],
      [`/ping/${key}/job?rid=not-a-uuid`, {}, 400, 'invalid uuid format'],
      // healthchecks' URL patterns match no other suffix: 404.
      [`/ping/${key}/job/-1`, {}, 404, 'not found'],
      [`/ping/${key}/job/stop`, {}, 404, 'not found'],
      [`/ping/${key}/job/1/2`, {}, 404, 'not found'],
      // Not an agent name, or not decodable.
      [`/ping/${key}/bad%20name`, {}, 400, null],
      [`/ping/${key}/job%E0%A4%A`, {}, 400, 'invalid url format'],
      [`/ping/${key}/${'x'.repeat(129)}`, {}, 400, null],
      // Unknown name without ?create=1.
      [`/ping/${key}/nobody`, {}, 404, 'not found'],
      [`/ping/${key}/nobody/log`, { method: 'POST', body: 'x' }, 404, 'not found'],
      // healthchecks answers 404 for a wrong ping key; agentctl says 401 (unknown key) or 403 (a key of another role,
      // or an agent token whose pattern does not cover the name).
      [`/ping/agentctl_wrong/job`, {}, 401, null],
      [`/ping/${op}/job`, {}, 403, null],
      [`/ping/${batchOnly}/job`, {}, 403, null],
      // A method that is no ping.
      [`/ping/${key}/job`, { method: 'PUT' }, 405, 'method not allowed'],
      // A body past the 1 MiB that is read at all.
      [`/ping/${key}/job`, { method: 'POST', body: 'x'.repeat(1_048_577) }, 413, null],
    ];
    for (const [path, init, status, text] of cases) {
      const r = await fetch(`${s.base}${path}`, init);
      const body = await r.text();
      expect({ path: path.replace(key, 'KEY'), status: r.status }).toEqual({ path: path.replace(key, 'KEY'), status });
      if (text !== null) expect(body).toBe(text);
    }
    expect(seq()).toBe(start);
    expect(agentOf(db, 'nobody')).toBeUndefined();
    // The pattern lets its own names through.
    const r = await fetch(`${s.base}/ping/${batchOnly}/batch-7?create=1`);
    expect(r.status).toBe(201);
    expect(await s.stop()).toEqual({ code: 0, signal: null });
  });

  it('keeps the first 10,000 bytes of a body; a heartbeat message keeps the CLI limit of 1024 characters', async () => {
    const db = tempDb();
    const key = await createToken(db, 'pinger', 'agent');
    expect(cli(['register', 'job'], { db }).code).toBe(0);
    const s = await serve(db);
    const body = 'a'.repeat(9_999) + 'bc' + 'd'.repeat(5_000);
    let r = await fetch(`${s.base}/ping/${key}/job/log`, { method: 'POST', body });
    expect(r.status).toBe(200);
    expect(historyJson(db, 'job').at(-1).reason).toBe(body.slice(0, 10_000));
    r = await fetch(`${s.base}/ping/${key}/job`, { method: 'POST', body });
    expect(r.status).toBe(200);
    expect(agentOf(db, 'job').message).toBe('a'.repeat(1024));
    // Agent text stays exact in what the API gives back.
    const hostile = '\x1b[2J<img src=x onerror=alert(1)>\u202e|fake=1\n';
    r = await fetch(`${s.base}/ping/${key}/job/fail`, { method: 'POST', body: hostile });
    expect(r.status).toBe(200);
    expect(agentOf(db, 'job').message).toBe(hostile);
    expect(await s.stop()).toEqual({ code: 0, signal: null });
  });

  it('?exited=1 on an exit status means the process is gone (offline at once); without it an exit status is a job\'s result', async () => {
    const db = tempDb();
    const key = createToken(db, 'pinger', 'agent');
    const s = await serve(db);
    const url = (suffix: string) => `${s.base}/ping/${key}/${suffix}`;
    // runitor's exit-status ping: a job finished; 0 ok, anything else an error. The agent stays up.
    expect((await fetch(url('job?create=1'))).status).toBe(201);
    expect((await fetch(url('job/0'))).status).toBe(200);
    expect(agentOf(db, 'job')).toMatchObject({ state: 'active' });
    expect((await fetch(url('job/2'))).status).toBe(200);
    expect(agentOf(db, 'job')).toMatchObject({ state: 'error', message: 'exit status 2' });

    // What `run --server` sends when its child exits: offline with the status, as `run` on the database records it.
    let r = await fetch(url('job/0?exited=1'), { method: 'POST', body: 'exited with code 0' });
    expect([r.status, await r.text()]).toEqual([200, 'OK']);
    expect(agentOf(db, 'job')).toMatchObject({ state: 'offline', stateReason: 'exited with code 0' });
    expect(historyJson(db, 'job').at(-1)).toMatchObject({
      fromState: 'error', toState: 'offline', reason: 'exited with code 0',
      evidence: { rule: 'exit', detected_by: 'agentctl run --server', via: 'ping', token: 'pinger', exit_status: 0, exit_code: 0, signal: null },
    });
    // Told twice (a lost answer retried): still OK, one event.
    const events = historyJson(db, 'job').length;
    r = await fetch(url('job/0?exited=1'));
    expect([r.status, await r.text()]).toEqual([200, 'OK']);
    expect(historyJson(db, 'job')).toHaveLength(events);
    // The next beat brings it back; a signal is named in the event.
    expect((await fetch(url('job'))).status).toBe(200);
    expect(agentOf(db, 'job')).toMatchObject({ state: 'active' });
    expect((await fetch(url('job/143?exited=1&signal=SIGTERM&forwarded_signal=SIGTERM&pid=4242&uptime_ms=2113'))).status).toBe(200);
    expect(historyJson(db, 'job').at(-1)).toMatchObject({ toState: 'offline', reason: 'killed by SIGTERM', evidence: { exit_status: 143, exit_code: null, signal: 'SIGTERM', forwarded_signal: 'SIGTERM', pid: 4242, uptime_ms: 2113 } });
    // Unknown: 404 as every form, 201 with ?create=1 (registered, then offline).
    expect((await fetch(url('gone/1?exited=1'))).status).toBe(404);
    expect((await fetch(url('gone/1?exited=1&create=1'))).status).toBe(201);
    expect(agentOf(db, 'gone')).toMatchObject({ state: 'offline', stateReason: 'exited with code 1' });
    // Bad input: 400, nothing written.
    const before = historyJson(db, 'job').length;
    for (const [suffix, text] of [
      ['job?exited=1', 'exited=1 goes with an exit status: /ping/<key>/<name>/<exit-status>?exited=1'],
      ['job/fail?exited=1', 'exited=1 goes with an exit status: /ping/<key>/<name>/<exit-status>?exited=1'],
      ['job/1?exited=yes', 'invalid exited: use exited=1'],
      ['job/1?exited=1&signal=KILL%3Cx%3E', 'invalid signal: a name such as SIGKILL'],
      ['job/1?signal=SIGKILL', 'signal= goes with exited=1'],
      ['job/1?pid=7', 'pid, uptime_ms and forwarded_signal go with exited=1'],
      ['job/1?exited=1&pid=-7', 'invalid pid: a whole number'],
      ['job/1?exited=1&uptime_ms=1e3', 'invalid uptime_ms: a whole number'],
      ['job/1?exited=1&forwarded_signal=TERM', 'invalid forwarded_signal: a name such as SIGTERM'],
    ]) {
      r = await fetch(url(suffix!));
      expect({ suffix, status: r.status, text: await r.text() }).toEqual({ suffix, status: 400, text });
    }
    expect(historyJson(db, 'job')).toHaveLength(before);
    expect(await s.stop()).toEqual({ code: 0, signal: null });
  });
});
