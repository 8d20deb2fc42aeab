import { describe, expect, it } from 'vitest';
import { EVENTS_CHANNEL, PgListener } from '../../src/store/postgres/listen.js';
import { PgEngine } from '../../src/store/postgres/engine.js';
import { openPg } from '../../src/store/postgres/executor.js';
import { cli, waitFor } from '../helpers.js';
import { postgresEngine } from './engines.js';
import { freshDatabase, limitedRole, query } from './pg-helpers.js';

describe('LISTEN/NOTIFY', () => {
  it('announces every event; after its backend is terminated the listener reconnects, listens again and calls onReconnect', async () => {
    const e = await postgresEngine();
    const ids: number[] = [];
    const errors: string[] = [];
    let reconnected = 0;
    const listener = new PgListener({
      url: e.url,
      channel: EVENTS_CHANNEL,
      onNotify: (p) => ids.push(Number(p)),
      onReconnect: () => {
        reconnected++;
      },
      onError: (err) => errors.push(err.message),
      minBackoffMs: 20,
    });
    try {
      await listener.start();
      await e.step('register', { name: 'l1' });
      await waitFor(() => ids.length === 1, 'the registration event to be announced');
      const [{ id }] = (await e.all('SELECT max(id) AS id FROM events')) as [{ id: number }];
      expect(ids).toEqual([id]);

      const first = listener.backendPid!;
      expect(first).toBeGreaterThan(0);
      // The listener's own connection, not a pooled one: it is the backend listening on the channel.
      expect(await query(e.url, 'SELECT application_name FROM pg_stat_activity WHERE pid = $1', [first])).toEqual([{ application_name: 'agentctl listener' }]);
      expect(await query(e.url, 'SELECT pg_terminate_backend($1) AS ok', [first])).toEqual([{ ok: true }]);
      await waitFor(() => reconnected === 1 && listener.connected, 'the listener to reconnect');
      expect(listener.backendPid).not.toBe(first);
      expect(errors.length).toBeGreaterThanOrEqual(1);
      expect(errors.every((m) => !m.includes('\n'))).toBe(true);

      await e.step('heartbeat', { name: 'l1', status: 'ok' });
      await waitFor(() => ids.length === 2, 'the heartbeat event to be announced after the reconnect');
    } finally {
      await listener.close();
      await e.close();
    }
  });

  it('a first connection that fails throws one line and schedules nothing', async () => {
    const listener = new PgListener({ url: 'postgres://x:secret@127.0.0.1:1/none', channel: EVENTS_CHANNEL, onNotify: () => undefined });
    const err = await listener.start().catch((x: unknown) => x);
    expect(err).toMatchObject({ code: 'E_DB_UNREACHABLE', exitCode: 1 });
    expect((err as Error).message).not.toContain('secret');
    expect(listener.connected).toBe(false);
    await listener.close();
  });

  it('watchEvents whose listener cannot connect: no failure, a wake every pollMs, one error for the outage, and LISTEN once it can', async () => {
    const db = await freshDatabase();
    expect(cli(['init'], { db }).code).toBe(0);
    // The engine's statements go through the pool (as the tests' role); its listener connects as a role that may not.
    const role = await limitedRole(db, 0);
    const engine = new PgEngine(openPg({ url: db }), role.url, { writable: false });
    let wakes = 0;
    const errors: string[] = [];
    const stop = await engine.watchEvents(() => wakes++, { pollMs: 10, onError: (err) => errors.push(err.message) });
    try {
      expect(errors).toHaveLength(1);
      expect(errors[0]).toMatch(/too many connections/);
      // Polled while the listener keeps trying (with backoff from 100 ms): many attempts fail meanwhile, said once.
      const before = wakes;
      await waitFor(() => wakes >= before + 100, 'wakes from polling');
      expect(errors).toHaveLength(1);
      await role.setLimit(-1);
      const listening = async () => (await query<{ n: number }>(db, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'agentctl listener' AND datname = current_database()"))[0]!.n;
      await waitFor(async () => (await listening()) === 1, 'the listener to connect once it may');
      expect(errors).toHaveLength(1);
    } finally {
      await stop();
      await engine.close();
    }
  });
});
