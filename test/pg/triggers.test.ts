// The triggers of both engines, from one test source: the same scenario through each engine's documented
// statements writes the same events and settles the same commands.
import { describe, expect, it } from 'vitest';
import { type Engine, postgresEngine, sqliteEngine } from './engines.js';
import { query } from './pg-helpers.js';
import { waitFor } from '../helpers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const identity = (pid: number) => ({ pid, pid_start_time: 1000 + pid, host: 'host-a', boot_id: 'boot-1' });

/** Register, beat, err, recover, go stale, restart twice, lose a command to a restart, say goodbye, come back. */
async function scenario(e: Engine): Promise<{ history: string[]; commands: string[]; evidence: Record<string, unknown>[]; agent: Record<string, unknown> }> {
  const name = 'w1';
  const reg = (p: Record<string, unknown> = {}) => e.step('register', { name, metadata: '{"lang":"test"}', ...p });
  const beat = (p: Record<string, unknown> = {}) => e.step('heartbeat', { name, status: 'ok', message: 'beat', ...p });
  const start = (p: Record<string, unknown> = {}) => e.step('start', { name, restarted: 1, reason: 'started', ...p });
  expect((await reg({ interval_ms: 60_000 })).changes).toBe(1);
  expect((await beat()).changes).toBe(1);
  await beat({ status: 'error', message: 'disk full' });
  await beat();
  // A short contract, then silence past it: the next beat records the stale spell before reactivating.
  await reg({ interval_ms: 100, stale_multiplier: 1 });
  await sleep(300);
  await beat();
  await reg({ interval_ms: 60_000, stale_multiplier: 3 });
  await start();
  // A second start while still initializing: the state stays, the incarnation event is written.
  await start();
  const inc = Number((await e.all('SELECT incarnation FROM agents WHERE name = ?', [name]))[0]!.incarnation);
  expect((await e.step('send', { name, payload: 'work one', deadline_at: null })).changes).toBe(1);
  expect((await e.step('send', { name, payload: 'work two', deadline_at: null })).changes).toBe(1);
  const claimed = await e.step('claim', { name, incarnation: inc, token: 'tok-1' });
  expect(claimed.rows.map((r) => r.payload)).toEqual(['work one']);
  // A stale token is refused; the right one accepted once.
  expect((await e.step('complete', { id: claimed.rows[0]!.id, token: 'other', state: 'completed', result: 'x', error: null })).changes).toBe(0);
  const second = await e.step('claim', { name, incarnation: inc, token: 'tok-2' });
  expect(second.rows.map((r) => r.payload)).toEqual(['work two']);
  expect((await e.step('complete', { id: claimed.rows[0]!.id, token: 'tok-1', state: 'completed', result: 'done', error: null })).changes).toBe(1);
  // A new process registers: a new incarnation cancels what the old one was executing.
  await reg(identity(4242));
  expect((await e.step('complete', { id: second.rows[0]!.id, token: 'tok-2', state: 'completed', result: 'late', error: null })).changes).toBe(0);
  await beat();
  await e.step('send', { name, payload: 'work three', deadline_at: null });
  const inc2 = Number((await e.all('SELECT incarnation FROM agents WHERE name = ?', [name]))[0]!.incarnation);
  await e.step('claim', { name, incarnation: inc2, token: 'tok-3' });
  expect((await e.step('goodbye', { name, message: 'bye' })).changes).toBe(1);
  expect((await e.step('goodbye', { name, message: 'bye again' })).changes).toBe(0);
  // Back after the goodbye: reactivated by its heartbeat.
  await beat();
  // A command past its deadline is settled by expire.
  await e.step('send', { name, payload: 'too late', deadline_at: 978307200000 + 1 });
  await e.step('expire', { name });
  const history = await e.history(name);
  const commands = (await e.all('SELECT payload, state, result, error FROM commands ORDER BY id')).map((r) => `${r.payload}|${r.state}|${r.result ?? r.error}`);
  const evidence = (await e.all('SELECT evidence FROM events ORDER BY id')).map((r) => JSON.parse(String(r.evidence ?? 'null')) as Record<string, unknown>);
  const agent = (await e.all('SELECT incarnation, restart_count, heartbeat_seq, state, metadata, pid, reported_status, message FROM agents WHERE name = ?', [name]))[0]!;
  return { history, commands, evidence, agent };
}

describe('the triggers, on both engines', () => {
  it('one scenario through the documented SQL writes the same events and settles the same commands on SQLite and PostgreSQL', async () => {
    const results: Record<string, Awaited<ReturnType<typeof scenario>>> = {};
    for (const make of [sqliteEngine, postgresEngine]) {
      const e = await make();
      try {
        results[e.name] = await scenario(e);
      } finally {
        await e.close();
      }
    }
    const expected = [
      'null>initializing:registered',
      'initializing>active:first heartbeat',
      'active>error:reported error',
      'error>active:error cleared',
      'active>stale:heartbeat overdue',
      'stale>active:heartbeat',
      'active>initializing:started',
      'initializing>initializing:started',
      'initializing>initializing:registered by a new process',
      'initializing>active:first heartbeat',
      'active>offline:goodbye',
      'offline>active:heartbeat',
    ];
    expect(results.sqlite!.history).toEqual(expected);
    expect(results.postgres!.history).toEqual(expected);
    expect(results.postgres!.commands).toEqual(results.sqlite!.commands);
    expect(results.sqlite!.commands).toEqual([
      'work one|completed|done',
      'work two|cancelled|agent restarted: claimed by incarnation 3, now 4',
      'work three|cancelled|agent offline: goodbye',
      'too late|cancelled|deadline passed before the agent claimed it',
    ]);
    // The same evidence, apart from measured times.
    const shape = (ev: Record<string, unknown> | null) =>
      ev && Object.fromEntries(Object.entries(ev).map(([k, v]) => [k, /_ms$/.test(k) && k !== 'stale_after_ms' && k !== 'offline_after_ms' ? typeof v : v]));
    expect(results.postgres!.evidence.map(shape)).toEqual(results.sqlite!.evidence.map(shape));
    expect(results.sqlite!.evidence[7]).toMatchObject({ rule: 'start', incarnation: 3 });
    expect(results.sqlite!.evidence[4]).toMatchObject({ rule: 'clock', detected_by: 'heartbeat', stale_after_ms: 100 });
    const norm = (a: Record<string, unknown>) => ({ ...a, metadata: JSON.parse(String(a.metadata)) });
    expect(norm(results.postgres!.agent)).toEqual(norm(results.sqlite!.agent));
    expect(norm(results.postgres!.agent)).toMatchObject({ incarnation: 4, restart_count: 2, heartbeat_seq: 6, state: 'active', metadata: { lang: 'test' }, pid: 4242 });
  });

  it('a heartbeat ends an expired maintenance window and reactivates, on both engines', async () => {
    const histories: Record<string, string[]> = {};
    for (const make of [sqliteEngine, postgresEngine]) {
      const e = await make();
      try {
        await e.step('register', { name: 'm1', interval_ms: 60_000 });
        await e.step('heartbeat', { name: 'm1', status: 'ok', message: null });
        // An operator's maintenance window that has already ended (set-status writes these four together).
        await e.all(
          `UPDATE agents SET state = 'maintenance', state_since = 978307200001, state_reason = 'operator', state_evidence = NULL, maintenance_until = 978307200002 WHERE name = 'm1' RETURNING id`,
        );
        await e.step('heartbeat', { name: 'm1', status: 'ok', message: null });
        histories[e.name] = await e.history('m1');
      } finally {
        await e.close();
      }
    }
    const expected = ['null>initializing:registered', 'initializing>active:first heartbeat', 'active>maintenance:operator', 'maintenance>active:maintenance window ended'];
    expect(histories.sqlite).toEqual(expected);
    expect(histories.postgres).toEqual(expected);
  });
});

describe('what the clock made of a silent agent, recorded by its next heartbeat, on both engines', () => {
  it('offline past the offline threshold, stale when stuck in initializing, nothing while a maintenance window holds', async () => {
    const results: Record<string, Record<string, string[]>> = {};
    for (const make of [sqliteEngine, postgresEngine]) {
      const e = await make();
      try {
        await e.step('register', { name: 'gone', interval_ms: 100, stale_multiplier: 1, offline_after_ms: 200 });
        await e.step('register', { name: 'stuck', interval_ms: 100, stale_multiplier: 1, offline_after_ms: 60_000 });
        await e.step('register', { name: 'paused', interval_ms: 60_000 });
        await e.all(`UPDATE agents SET state = 'maintenance', state_since = 978307200001, state_reason = 'operator', maintenance_until = NULL WHERE name = 'paused' RETURNING id`);
        await sleep(400);
        for (const name of ['gone', 'stuck', 'paused']) expect((await e.step('heartbeat', { name, status: 'ok', message: null })).changes).toBe(1);
        const r: Record<string, string[]> = {};
        for (const name of ['gone', 'stuck', 'paused']) r[name] = await e.history(name);
        const paused = (await e.all(`SELECT state, heartbeat_seq FROM agents WHERE name = 'paused'`))[0]!;
        r.pausedRow = [String(paused.state), String(paused.heartbeat_seq)];
        results[e.name] = r;
      } finally {
        await e.close();
      }
    }
    const expected = {
      gone: ['null>initializing:registered', 'initializing>offline:no heartbeat within the offline threshold', 'offline>active:heartbeat'],
      stuck: ['null>initializing:registered', 'initializing>stale:stuck in initializing', 'stale>active:heartbeat'],
      paused: ['null>initializing:registered', 'initializing>maintenance:operator'],
      pausedRow: ['maintenance', '1'],
    };
    expect(results.sqlite).toEqual(expected);
    expect(results.postgres).toEqual(expected);
  });
});

describe('events in commit order (PostgreSQL)', () => {
  it('a reader never sees an event whose id is above that of an event still being committed', async () => {
    const e = await postgresEngine();
    const { openPg } = await import('../../src/store/postgres/executor.js');
    const sql = openPg({ url: e.url });
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    try {
      await e.step('register', { name: 'slow' });
      await e.step('register', { name: 'quick' });
      let slowId = 0;
      // A transaction writes an event (its id taken first) and stays open...
      const slow = sql.tx(async (tx) => {
        await tx.run(`UPDATE agents SET state = 'offline', state_since = agentctl_now_ms(), state_reason = 'test' WHERE name = 'slow'`);
        slowId = Number((await tx.get<{ id: number }>(`SELECT max(id) AS id FROM events`))!.id);
        await held;
      });
      await waitFor(() => slowId > 0, 'the first transaction to write its event');
      // ...while another writes one and commits, or waits its turn.
      let quickDone = false;
      const quick = e.step('goodbye', { name: 'quick', message: null }).then(() => (quickDone = true));
      await waitFor(
        async () => quickDone || (await query(e.url, `SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = 'advisory' AND query LIKE '%goodbye%'`)).length > 0,
        'the second writer to commit or wait',
      );
      const visible = (await query<{ id: number }>(e.url, 'SELECT id FROM events ORDER BY id')).map((r) => r.id);
      expect(visible.filter((id) => id > slowId)).toEqual([]);
      release();
      await slow;
      await quick;
      const all = await query<{ id: number; agent_name: string; to_state: string }>(e.url, `SELECT id, agent_name, to_state FROM events WHERE to_state = 'offline' ORDER BY id`);
      expect(all.map((r) => r.agent_name)).toEqual(['slow', 'quick']);
    } finally {
      release();
      await sql.close();
      await e.close();
    }
  });
});

describe('many writers at once (PostgreSQL)', () => {
  it('concurrent heartbeats of many agents, some reactivating with events, all commit with no error and every beat counted', async () => {
    const e = await postgresEngine();
    try {
      const names = Array.from({ length: 20 }, (_, i) => `m${i}`);
      for (const [i, name] of names.entries()) await e.step('register', { name, interval_ms: i % 2 ? 60_000 : 100, stale_multiplier: 1 });
      for (const name of names) await e.step('heartbeat', { name, status: 'ok' });
      await sleep(250);
      // Half the fleet is overdue: their first beats now write events (stale, then active) while the rest beat on time.
      const beats = names.flatMap((name) => Array.from({ length: 10 }, () => name));
      const results = await Promise.all(beats.map((name) => e.step('heartbeat', { name, status: 'ok' })));
      expect(results.every((r) => r.changes === 1)).toBe(true);
      const rows = await e.all('SELECT name, heartbeat_seq, state FROM agents ORDER BY name');
      for (const r of rows) expect(r).toMatchObject({ heartbeat_seq: 11, state: 'active' });
      const ids = (await e.all('SELECT id FROM events ORDER BY id')).map((r) => Number(r.id));
      expect(new Set(ids).size).toBe(ids.length);
    } finally {
      await e.close();
    }
  });
});
