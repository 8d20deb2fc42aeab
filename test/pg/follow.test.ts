// Live events on PostgreSQL: history --follow and the server's stream are woken by LISTEN/NOTIFY, not by polling.
// Every follower here polls once an hour (but one whose listener cannot connect, which polls meanwhile), so what
// arrives within the test came through a notification or through the re-read after a reconnect.
import { describe, expect, it } from 'vitest';
import pg from 'pg';
import { cli, jsonLines, startCli, waitFor, exited } from '../helpers.js';
import { bearer, createToken, openStream, serve } from '../serve/serve-helpers.js';
import { clusterUrl, freshDatabase, limitedRole, query } from './pg-helpers.js';

const dbName = (url: string) => new URL(url).pathname.slice(1);

/** The backend pids of agentctl's listeners on this database. */
async function listeners(url: string): Promise<number[]> {
  const rows = await query<{ pid: number }>(clusterUrl(), "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = 'agentctl listener'", [dbName(url)]);
  return rows.map((r) => Number(r.pid));
}

describe('live events on PostgreSQL', () => {
  it('history --follow sees a transition written by another process, announced by the server (no polling)', async () => {
    const db = await freshDatabase();
    expect(cli(['heartbeat', 'w1'], { db }).code).toBe(0);
    const follow = startCli(['history', '--follow', '--json', '--refresh', '1h'], { db });
    await waitFor(() => jsonLines(follow).length === 2, 'the existing events');
    await waitFor(async () => (await listeners(db)).length === 1, 'the follower to listen');
    expect(cli(['set-status', 'w1', 'maintenance', '--for', '5m'], { db }).code).toBe(0);
    await waitFor(() => jsonLines(follow).length === 3, 'the new transition');
    expect(jsonLines(follow).map((e) => e.toState)).toEqual(['initializing', 'active', 'maintenance']);
    follow.kill('SIGINT');
    expect((await exited(follow)).code).toBe(0);
    expect(await listeners(db)).toEqual([]);
  });

  it('after its listener backend is terminated, events written while it was down arrive (re-read) and later ones too', async () => {
    const db = await freshDatabase();
    expect(cli(['heartbeat', 'w1'], { db }).code).toBe(0);
    const follow = startCli(['history', '--follow', '--json', '--refresh', '1h'], { db });
    await waitFor(() => jsonLines(follow).length === 2, 'the existing events');
    await waitFor(async () => (await listeners(db)).length === 1, 'the follower to listen');
    const [pid] = await listeners(db);
    // A writer connected before the database stops taking connections: the listener cannot come back meanwhile.
    const writer = new pg.Client({ connectionString: db });
    await writer.connect();
    try {
      await query(clusterUrl(), `ALTER DATABASE ${dbName(db)} ALLOW_CONNECTIONS false`);
      await writer.query('SELECT pg_terminate_backend($1)', [pid]);
      await waitFor(async () => !(await listeners(db)).includes(pid!), 'the listener backend to be gone');
      await writer.query("UPDATE agents SET state = 'offline', state_since = agentctl_now_ms(), state_reason = 'written while nobody listened' WHERE name = 'w1'");
      expect(jsonLines(follow)).toHaveLength(2);
      await query(clusterUrl(), `ALTER DATABASE ${dbName(db)} ALLOW_CONNECTIONS true`);
      await waitFor(() => jsonLines(follow).length === 3, 'the event written while the listener was down');
      expect(jsonLines(follow)[2]).toMatchObject({ toState: 'offline', reason: 'written while nobody listened' });
      await waitFor(async () => (await listeners(db)).length === 1, 'the follower to listen again');
      expect(cli(['heartbeat', 'w1'], { db }).code).toBe(0);
      await waitFor(() => jsonLines(follow).length === 4, 'an event written after the reconnect');
      expect(jsonLines(follow)[3]).toMatchObject({ fromState: 'offline', toState: 'active' });
    } finally {
      await query(clusterUrl(), `ALTER DATABASE ${dbName(db)} ALLOW_CONNECTIONS true`);
      await writer.end();
    }
    follow.kill('SIGINT');
    expect((await exited(follow)).code).toBe(0);
  });

  it('the server\'s event stream on PostgreSQL delivers events live', async () => {
    const db = await freshDatabase();
    expect(cli(['heartbeat', 'w1'], { db }).code).toBe(0);
    const viewer = createToken(db, 'viewer', 'viewer');
    const s = await serve(db, ['--poll', '1h']);
    try {
      const stream = await openStream(`${s.base}/api/v1/events/stream`, bearer(viewer));
      try {
        expect(stream.res.status).toBe(200);
        await waitFor(async () => (await listeners(db)).length === 1, 'the stream to listen');
        expect(cli(['set-status', 'w1', 'maintenance', '--for', '5m'], { db }).code).toBe(0);
        await waitFor(() => stream.events.length === 1, 'the transition on the stream');
        expect(stream.events[0]!.data).toMatchObject({ agentName: 'w1', toState: 'maintenance' });
        expect(cli(['set-status', 'w1', 'available'], { db }).code).toBe(0);
        await waitFor(() => stream.events.length === 2, 'the next transition on the stream');
      } finally {
        stream.close();
      }
    } finally {
      expect((await s.stop()).code).toBe(0);
    }
  });

  it('history --follow whose listener cannot connect says so once and polls every --refresh; LISTEN takes over once it can', async () => {
    const db = await freshDatabase();
    expect(cli(['heartbeat', 'w1'], { db }).code).toBe(0);
    // The follower's pool gets the one connection this role may hold; its listener is refused until the limit goes.
    const role = await limitedRole(db, 1);
    const follow = startCli(['history', '--follow', '--json', '--refresh', '100ms'], { db: role.url });
    await waitFor(() => jsonLines(follow).length === 2, 'the existing events');
    await waitFor(() => follow.errors().includes('live notifications') || follow.exitCode !== null, 'the warning that it polls');
    expect(follow.exitCode, follow.errors()).toBeNull();
    expect(follow.errors()).toMatch(/^agentctl: .*live notifications.*unavailable.*every 100ms/);
    expect(await listeners(db)).toEqual([]);
    // Written by another role while nothing listens: found by the poll.
    expect(cli(['set-status', 'w1', 'maintenance', '--for', '5m'], { db }).code).toBe(0);
    await waitFor(() => jsonLines(follow).length === 3, 'the new transition, found by polling');
    expect(jsonLines(follow)[2]).toMatchObject({ toState: 'maintenance' });
    expect(follow.exitCode).toBeNull();
    await role.setLimit(-1);
    await waitFor(async () => (await listeners(db)).length === 1, 'the follower to listen once it may connect');
    expect(cli(['set-status', 'w1', 'available'], { db }).code).toBe(0);
    await waitFor(() => jsonLines(follow).length === 4, 'the transition after LISTEN took over');
    // One line for the whole outage, however many attempts to connect failed.
    expect(follow.errors().trim().split('\n')).toHaveLength(1);
    follow.kill('SIGINT');
    expect((await exited(follow)).code).toBe(0);
  });

  it('history --follow polling once an hour because its listener cannot connect: once it can, the server announces what follows', async () => {
    const db = await freshDatabase();
    expect(cli(['heartbeat', 'w1'], { db }).code).toBe(0);
    // The follower's pool gets the one connection this role may hold; its listener is refused until the limit goes.
    const role = await limitedRole(db, 1);
    const follow = startCli(['history', '--follow', '--json', '--refresh', '1h'], { db: role.url });
    await waitFor(() => jsonLines(follow).length === 2, 'the existing events');
    await waitFor(() => follow.errors().includes('live notifications') || follow.exitCode !== null, 'the warning that it polls');
    expect(follow.exitCode, follow.errors()).toBeNull();
    expect(cli(['set-status', 'w1', 'maintenance', '--for', '5m'], { db }).code).toBe(0);
    expect(follow.exitCode).toBeNull();
    await role.setLimit(-1);
    // Nothing polls within the test: the transition written before LISTEN was up is read when it comes up,
    await waitFor(() => jsonLines(follow).length === 3, 'the transition written while nothing listened, read once LISTEN is up');
    await waitFor(async () => (await listeners(db)).length === 1, 'the follower to listen');
    // and the next one arrives by its notification.
    expect(cli(['set-status', 'w1', 'available'], { db }).code).toBe(0);
    await waitFor(() => jsonLines(follow).length === 4, 'the transition announced by the server');
    expect(jsonLines(follow).map((e) => e.toState)).toEqual(['initializing', 'active', 'maintenance', 'active']);
    follow.kill('SIGINT');
    expect((await exited(follow)).code).toBe(0);
  });

  it('the server\'s event stream whose listener cannot connect says so once, polls every --poll, and listens once it can', async () => {
    const db = await freshDatabase();
    expect(cli(['heartbeat', 'w1'], { db }).code).toBe(0);
    const viewer = createToken(db, 'viewer', 'viewer');
    // The server's pool gets the one connection this role may hold; its listener is refused until the limit goes.
    const role = await limitedRole(db, 1, { write: true });
    const s = await serve(role.url, ['--poll', '100ms']);
    try {
      const stream = await openStream(`${s.base}/api/v1/events/stream`, bearer(viewer));
      try {
        expect(stream.res.status).toBe(200);
        await waitFor(() => s.child.errors().includes('live notifications'), 'the server to say that it polls');
        expect(s.child.errors()).toMatch(/agentctl serve: live notifications .*unavailable.*every 100ms/);
        expect(await listeners(db)).toEqual([]);
        expect(cli(['set-status', 'w1', 'maintenance', '--for', '5m'], { db }).code).toBe(0);
        await waitFor(() => stream.events.length === 1, 'the transition on the stream, found by polling');
        expect(stream.events[0]!.data).toMatchObject({ agentName: 'w1', toState: 'maintenance' });
        await role.setLimit(-1);
        await waitFor(async () => (await listeners(db)).length === 1, 'the stream to listen once it may connect');
        expect(cli(['set-status', 'w1', 'available'], { db }).code).toBe(0);
        await waitFor(() => stream.events.length === 2, 'the next transition on the stream');
        expect(s.child.errors().match(/live notifications/g)).toHaveLength(1);
      } finally {
        stream.close();
      }
    } finally {
      expect((await s.stop()).code).toBe(0);
    }
  });
});
