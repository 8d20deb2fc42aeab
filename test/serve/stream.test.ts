import { describe, expect, it } from 'vitest';
import { cli, tempDb, waitFor } from '../helpers.js';
import { agentOf, bearer, createToken, openStream, serve } from './serve-helpers.js';

describe('serve: the live event stream (Server-Sent Events)', () => {
  it('streams each event with its id, keeps the stream alive with comments, and resumes after Last-Event-ID', async () => {
    const db = tempDb();
    const viewer = await createToken(db, 'viewer', 'viewer');
    const agent = await createToken(db, 'agent', 'agent');
    expect(cli(['register', 'job'], { db }).code).toBe(0);
    const s = await serve(db, ['--keep-alive', '200ms', '--poll', '50ms']);
    const url = `${s.base}/api/v1/events/stream`;
    const first = await openStream(url, bearer(viewer));
    expect(first.res.status).toBe(200);
    expect(first.res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    // Only new events: the registration before it connected is not replayed.
    expect((await fetch(`${s.base}/ping/${agent}/job`)).status).toBe(200);
    await waitFor(() => first.events.length >= 1, 'the first heartbeat transition on the stream');
    expect(first.events[0]).toMatchObject({ data: { agentName: 'job', fromState: 'initializing', toState: 'active' } });
    expect(first.events[0]!.id).toBe(String(first.events[0]!.data.id));
    await waitFor(() => first.comments.includes('keep-alive'), 'a keep-alive comment');
    const lastSeen = first.events.at(-1)!.id!;
    first.close();
    await first.done;

    // While nobody listens, things happen.
    expect((await fetch(`${s.base}/ping/${agent}/job/fail`, { method: 'POST', body: 'disk full' })).status).toBe(200);
    expect((await fetch(`${s.base}/ping/${agent}/job/log`, { method: 'POST', body: 'a note' })).status).toBe(200);
    expect((await fetch(`${s.base}/ping/${agent}/other?create=1`)).status).toBe(201);

    // Coming back with Last-Event-ID gives exactly what was missed, in order, then the live ones.
    const again = await openStream(url, bearer(viewer, { 'Last-Event-ID': lastSeen }));
    await waitFor(() => again.events.length >= 4, 'the missed events');
    expect(again.events.map((e) => [e.data.agentName, e.data.fromState, e.data.toState, e.data.reason])).toEqual([
      ['job', 'active', 'error', 'reported error'],
      ['job', 'error', 'error', 'a note'],
      ['other', null, 'initializing', 'registered'],
      ['other', 'initializing', 'active', 'first heartbeat'],
    ]);
    const ids = again.events.map((e) => Number(e.id));
    expect(ids[0]).toBeGreaterThan(Number(lastSeen));
    expect([...ids].sort((a, b) => a - b)).toEqual(ids);
    // A second listener beside it: both get the next event once.
    const beside = await openStream(url, bearer(viewer));
    expect(cli(['set-status', 'job', 'offline'], { db }).code).toBe(0);
    await waitFor(() => again.events.length >= 5 && beside.events.length >= 1, 'the offline event on both streams');
    expect(again.events.at(-1)!.data).toMatchObject({ agentName: 'job', toState: 'offline' });
    expect(beside.events.map((e) => e.data.toState)).toEqual(['offline']);
    expect(new Set(again.events.map((e) => e.id)).size).toBe(again.events.length);
    expect((await fetch(url, { headers: bearer(viewer, { 'Last-Event-ID': 'x' }) })).status).toBe(400);
    expect((await fetch(url, { headers: bearer(agent) })).status).toBe(403);

    // SIGTERM ends the streams and stops the server cleanly.
    expect(await s.stop()).toEqual({ code: 0, signal: null });
    await again.done;
    await beside.done;
    expect(again.ended && beside.ended).toBe(true);
    expect(s.child.errors()).toContain('agentctl: stopping');
    expect(agentOf(db, 'job').state).toBe('offline');
  });
});

describe('serve --monitor', () => {
  it('runs the health loop in the same process: a silent agent is convicted, the stream shows it, SIGTERM stops both', async () => {
    const db = tempDb();
    const viewer = await createToken(db, 'viewer', 'viewer');
    const agent = await createToken(db, 'agent', 'agent');
    expect(cli(['register', 'quiet', '--interval', '100ms', '--stale-after', '1', '--offline-after', '300ms'], { db }).code).toBe(0);
    const s = await serve(db, ['--monitor', '--every', '200ms', '--poll', '50ms']);
    const live = await openStream(`${s.base}/api/v1/events/stream?after=0`, bearer(viewer));
    // The loop (not a reader's derivation) writes the transition: an event with the pass that convicted it.
    await waitFor(() => live.events.some((e) => e.data.agentName === 'quiet' && e.data.toState === 'offline'), 'the health loop to convict the silent agent', 60_000);
    const offline = live.events.find((e) => e.data.toState === 'offline')!.data;
    expect(offline.evidence).toMatchObject({ rule: 'clock', pass: expect.any(Number) });
    const status = (await (await fetch(`${s.base}/api/v1/agents`, { headers: bearer(viewer) })).json()) as any;
    expect(status.healthLoop).toMatchObject({ ran: true, everyMs: 200, overdue: false, warning: null });
    // A heartbeat by ping brings it back, through the same loop's store.
    expect((await fetch(`${s.base}/ping/${agent}/quiet`)).status).toBe(200);
    await waitFor(() => live.events.some((e) => e.data.agentName === 'quiet' && e.data.fromState === 'offline'), 'the return on the stream');
    expect(await s.stop()).toEqual({ code: 0, signal: null });
    await live.done;
    // The loop let go of its lock: a cron pass runs now instead of finding another monitor.
    const once = cli(['monitor', '--once'], { db });
    expect(once.code).toBe(0);
    expect(once.stderr).not.toMatch(/another agentctl monitor is running/);
  });
});
