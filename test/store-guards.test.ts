import { describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { openStore } from '../src/store/store.js';
import { SCHEMA_VERSION } from '../src/store/sqlite/migrations.js';
import { markExited } from '../src/store/lifecycle.js';
import { writeGuardedTransition } from '../src/store/monitor.js';
import { findVerdicts } from '../src/core/health/convict.js';
import { thisHost } from '../src/core/health/judge.js';
import { registerAgent, updateHeartbeat } from '../src/core/agents.js';
import { processStartTime } from '../src/core/host.js';
import { databaseAtVersion, exited, fixture, start, tempDb, waitFor } from './helpers.js';

const T0 = 1_800_000_000_000;


/** Rows an old build wrote, with the columns version 1 has: two agents, their events and a queued command. */
function fillVersion1(db: Database.Database): void {
  const agent = db.prepare(
    `INSERT INTO agents (name, interval_ms, state, state_since, created_at, started_at, updated_at, last_heartbeat_at, heartbeat_seq)
     VALUES (?, 30000, ?, ?, ?, ?, ?, ?, ?)`,
  );
  agent.run('old-beating', 'active', T0, T0, T0, T0, T0 + 1000, 4);
  agent.run('old-silent', 'initializing', T0, T0, T0, T0, null, 0);
  db.prepare("INSERT INTO events (agent_id, agent_name, at, from_state, to_state, reason) SELECT id, name, ?, NULL, 'initializing', 'registered' FROM agents").run(T0);
  db.prepare("INSERT INTO commands (agent_id, payload, state, created_at) SELECT id, 'job', 'queued', ? FROM agents WHERE name = 'old-beating'").run(T0);
}

describe('the store refuses what is no longer true', () => {
  it("a goodbye or an exit report for an older incarnation is ignored: the newer process's row stands", async () => {
    const s = await openStore({ path: tempDb() });
    const other = start(process.execPath, ['-e', 'setInterval(() => {}, 1000)']);
    try {
      await waitFor(() => processStartTime(other.pid!) !== null, 'the second process');
      await registerAgent(s, { name: 'w', pid: process.pid }, T0);
      await updateHeartbeat(s, { name: 'w' }, T0 + 1);
      // Another process takes the name over: incarnation 2.
      await registerAgent(s, { name: 'w', pid: other.pid! }, T0 + 2);
      await updateHeartbeat(s, { name: 'w' }, T0 + 3);
      expect(await s.getAgent('w')).toMatchObject({ incarnation: 2, state: 'active' });
      // The first process, late, says goodbye and reports its exit for incarnation 1.
      expect(await s.goodbye('w', 'late goodbye', T0 + 4, { incarnation: 1 })).toBe(false);
      expect(await markExited(s, 'w', 1, 'exited with code 0', { rule: 'exit', exit_code: 0 }, T0 + 5)).toBe(false);
      expect(await s.getAgent('w')).toMatchObject({ incarnation: 2, state: 'active', pid: other.pid });
      // For its own incarnation they count.
      expect(await markExited(s, 'w', 2, 'exited with code 3', { rule: 'exit', exit_code: 3 }, T0 + 6)).toBe(true);
      expect(await s.getAgent('w')).toMatchObject({ state: 'offline', stateReason: 'exited with code 3' });
    } finally {
      await s.close();
    }
  });

  it('the guarded write of a health pass leaves alone an agent that beat after the pass read it', async () => {
    const s = await openStore({ path: tempDb() });
    try {
      await registerAgent(s, { name: 'late', intervalMs: 1000, staleMultiplier: 3, offlineAfterMs: 10_000 }, T0);
      await updateHeartbeat(s, { name: 'late' }, T0);
      const [verdict] = await findVerdicts(s, T0 + 5000, thisHost());
      expect(verdict).toMatchObject({ to: 'stale', agent: { name: 'late' } });
      // Between the pass's read and its write, the agent beats.
      await updateHeartbeat(s, { name: 'late' }, T0 + 5001);
      expect(await writeGuardedTransition(s, { agent: verdict!.agent, to: verdict!.to, since: verdict!.since, reason: verdict!.reason, evidence: verdict!.evidence }, T0 + 5002)).toBe(false);
      expect(await s.getAgent('late')).toMatchObject({ state: 'active', lastHeartbeatAt: T0 + 5001 });
      // Read again, nothing has changed since: the write goes through.
      const [again] = await findVerdicts(s, T0 + 9000, thisHost());
      expect(await writeGuardedTransition(s, { agent: again!.agent, to: again!.to, since: again!.since, reason: again!.reason, evidence: again!.evidence }, T0 + 9001)).toBe(true);
      expect((await s.getAgent('late'))!.state).toBe('stale');
    } finally {
      await s.close();
    }
  });
});

describe('upgrades from every older schema', () => {
  for (const version of [1, 2]) {
    it(`a version ${version} database is upgraded in place: its agents, events and commands kept, and it works as a new one`, async () => {
      const path = tempDb();
      const old = databaseAtVersion(path, version);
      fillVersion1(old);
      const agentsBefore = old.prepare('SELECT id, name, state, heartbeat_seq, last_heartbeat_at FROM agents ORDER BY id').all();
      const eventsBefore = old.prepare('SELECT agent_name, to_state, at FROM events ORDER BY id').all();
      old.close();
      const s = await openStore({ path });
      try {
        expect(s.db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
        expect(s.db.prepare('SELECT id, name, state, heartbeat_seq, last_heartbeat_at FROM agents ORDER BY id').all()).toEqual(agentsBefore);
        expect(s.db.prepare('SELECT agent_name, to_state, at FROM events ORDER BY id').all()).toEqual(eventsBefore);
        expect(s.db.prepare('SELECT payload, state FROM commands').all()).toEqual([{ payload: 'job', state: 'queued' }]);
        expect(s.db.pragma('quick_check', { simple: true })).toBe('ok');
        expect(s.db.pragma('foreign_key_check')).toEqual([]);
        // The later schema's columns work on the old rows: a heartbeat moves the deadline, a restart counts from itself.
        await s.heartbeat({ name: 'old-beating' }, T0 + 20_000);
        expect(await s.getAgent('old-beating')).toMatchObject({ state: 'active', heartbeatSeq: 5, restartAttempts: 0 });
        expect(s.db.prepare("SELECT check_at FROM agents WHERE name = 'old-beating'").pluck().get()).toBe(T0 + 20_000 + 90_000);
        await updateHeartbeat(s, { name: 'old-silent' }, T0 + 21_000);
        expect((await s.getAgent('old-silent'))!.state).toBe('active');
      } finally {
        await s.close();
      }
    });
  }

  it('several processes opening one version 1 file at once: one migrates it, all of them register', async () => {
    const db = tempDb();
    const old = databaseAtVersion(db, 1);
    fillVersion1(old);
    const oldEvents = old.prepare('SELECT id, agent_name, to_state, at FROM events ORDER BY id').all();
    old.close();
    // They spin until the same moment, however long each took to start.
    const startAt = Date.now() + 3000;
    const kids = Array.from({ length: 5 }, (_, i) => start(process.execPath, [fixture('open-at.mjs'), db, `new-${i}`, String(startAt)]));
    const results = await Promise.all(kids.map(async (k) => ({ ...(await exited(k)), out: k.output(), err: k.errors() })));
    for (const r of results) {
      expect(r.out.trim(), r.err).toBe('{"ok":true}');
      expect(r.code).toBe(0);
    }
    const raw = new Database(db, { readonly: true });
    try {
      expect(raw.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
      expect(raw.prepare('SELECT name FROM agents ORDER BY name').pluck().all()).toEqual(['new-0', 'new-1', 'new-2', 'new-3', 'new-4', 'old-beating', 'old-silent']);
      expect(raw.prepare("SELECT id, agent_name, to_state, at FROM events WHERE agent_name LIKE 'old-%' ORDER BY id").all()).toEqual(oldEvents);
      // Migrated once, to the same schema a new file gets.
      const schema = (d: Database.Database) => d.prepare("SELECT type, name FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name").all();
      const fresh = await openStore({ path: tempDb() });
      try {
        expect(schema(raw)).toEqual(schema(fresh.db));
      } finally {
        await fresh.close();
      }
      expect(raw.pragma('integrity_check', { simple: true })).toBe('ok');
    } finally {
      raw.close();
    }
  });
});
