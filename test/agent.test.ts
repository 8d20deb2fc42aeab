import { describe, expect, it } from 'vitest';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { HeartbeatAgent } from '../src/core/heartbeat-agent.js';
import type { Store } from '../src/store/store.js';
import { ValidationError } from '../src/errors.js';
import { agentRecord, cli, exited, FIXTURES, jsonLines, start, tempDb, waitFor, withStore } from './helpers.js';

const T0 = 1_800_000_000_000;

const read = async <T>(db: string, fn: (s: Store) => T): Promise<T> => await withStore(db, fn, 'existing');
const agentRow = agentRecord;

describe('HeartbeatAgent options', () => {
  it('reports every invalid option at construction, at once', () => {
    let err: unknown;
    try {
      new HeartbeatAgent({ name: 'bad name!', db: '', interval: 5, staleAfter: 0.5 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ValidationError);
    const problems = (err as ValidationError).problems.join('\n');
    expect(problems).toMatch(/invalid agent name "bad name!"/);
    expect(problems).toMatch(/db: give the path/);
    expect(problems).toMatch(/interval 5 is below 10 ms: a heartbeat write cannot be sustained that often/);
    expect(problems).toMatch(/invalid staleAfter 0.5/);
    expect(() => new HeartbeatAgent({ name: 'a', db: 'x.db', interval: 0 })).toThrow(/invalid interval 0/);
    expect(() => new HeartbeatAgent({ name: 'a', db: 'x.db', interval: -30 })).toThrow(/invalid interval -30/);
    expect(() => new HeartbeatAgent({ name: 'a', db: 'x.db', interval: 'soon' })).toThrow(/invalid interval 'soon'/);
    expect(() => new HeartbeatAgent({ name: 'a', db: 'x.db', interval: '10s', offlineAfter: '5s' })).toThrow(/shorter than the interval/);
    expect(() => new HeartbeatAgent({ name: 'a', db: 'x.db', interval: '30s', meta: [] as any })).toThrow(/must be a JSON object/);
  });
});

describe('HeartbeatAgent in process', () => {
  it('registers a new incarnation at every start, beats, reports status, progress and metadata, and says goodbye', async () => {
    const db = tempDb();
    let now = T0;
    const agent = new HeartbeatAgent({ name: 'lib', db, interval: '1h', handleSignals: false, clock: () => now, meta: { role: 'test' } });
    // Stopped whatever happens: its timers would otherwise outlive a failed test.
    try {
      await agent.start();
      let row = agentRow(db, 'lib')!;
      expect(row).toMatchObject({ state: 'active', pid: process.pid, incarnation: 1, intervalMs: 3_600_000, metadata: { role: 'test' }, heartbeatSeq: 1 });
      expect(row.pidStartTime).toBeGreaterThan(0);
      expect(agent.connectionHealth()).toEqual({ healthy: true, lastHeartbeatAck: T0, secondsSinceAck: 0, consecutiveFailures: 0 });
      now += 1000;
      await agent.setStatus('error', 'disk full');
      expect(agentRow(db, 'lib')).toMatchObject({ state: 'error', message: 'disk full', reportedStatus: 'error' });
      agent.progress(7);
      agent.setMeta({ jobs: 3 });
      await agent.setStatus('busy');
      row = agentRow(db, 'lib')!;
      expect(row).toMatchObject({ state: 'active', availability: 'busy', progress: 7, metadata: { role: 'test', jobs: 3 }, message: null });
      expect(() => agent.setStatus('sleepy' as any)).toThrow(/invalid status/);
      await agent.stop('maintenance window');
      expect(agentRow(db, 'lib')).toMatchObject({ state: 'offline', stateReason: 'goodbye', message: 'maintenance window' });
      expect(agent.connectionHealth().healthy).toBe(false);
      // The same process starting again is a new incarnation, with an event.
      now += 1000;
      await agent.start();
      expect(agentRow(db, 'lib')).toMatchObject({ state: 'active', incarnation: 2 });
      await agent.stop();
      const events = await read(db, async (s) => (await s.listEvents({ agent: 'lib' })).map((e) => `${e.fromState}>${e.toState}:${e.reason}`));
      expect(events).toEqual([
        'null>initializing:registered',
        'initializing>active:first heartbeat',
        'active>error:reported error',
        'error>active:error cleared',
        'active>offline:goodbye',
        'offline>initializing:started',
        'initializing>active:first heartbeat',
        'active>offline:goodbye',
      ]);
    } finally {
      await agent.stop();
    }
  });
});

describe('HeartbeatAgent writes one at a time', () => {
  it('a stop while beats are still being written says goodbye after them: no beat lands after the goodbye', async () => {
    const db = tempDb();
    const agent = new HeartbeatAgent({ name: 'late', db, interval: 60_000, handleSignals: false });
    await agent.start();
    const beats = [agent.beat(), agent.beat(), agent.beat()]; // not awaited: the writes are under way
    await agent.stop('done');
    expect(await Promise.all(beats)).toEqual([true, true, true]);
    expect(agentRecord(db, 'late')).toMatchObject({ state: 'offline', stateReason: 'goodbye', message: 'done', heartbeatSeq: 4 });
  });
});

describe('HeartbeatAgent standing for another process', () => {
  it('beats for it while it lives, and not once it is gone: a dead process is never brought back by its wrapper\'s timer', async () => {
    const db = tempDb();
    const child = start(process.execPath, ['-e', 'setInterval(() => {}, 1000)']);
    const agent = new HeartbeatAgent({ name: 'stood-for', db, interval: 60_000, handleSignals: false, pid: child.pid! });
    try {
      await agent.start();
      expect(await agent.beat()).toBe(true);
      const before = agentRecord(db, 'stood-for')!;
      expect(before).toMatchObject({ state: 'active', pid: child.pid });
      child.kill('SIGKILL');
      await exited(child);
      // A health loop proves the crash; the wrapper has not reported the exit yet, and its timer fires.
      expect(cli(['monitor', '--once'], { db }).code).toBe(0);
      expect(agentRecord(db, 'stood-for')).toMatchObject({ state: 'offline', stateReason: 'process gone' });
      expect(await agent.beat()).toBe(false);
      expect(agentRecord(db, 'stood-for')).toMatchObject({ state: 'offline', heartbeatSeq: before.heartbeatSeq });
    } finally {
      await agent.stop('done');
    }
  });
});

describe('HeartbeatAgent as a process', () => {
  it('stops on SIGTERM with a goodbye, then dies of the signal as it would have', async () => {
    const db = tempDb();
    const p = start(process.execPath, [join(FIXTURES, 'agent-beat.mjs'), db, 'sig', '50']);
    await waitFor(() => jsonLines(p).some((l) => l.event === 'started'), 'the agent to start');
    p.kill('SIGTERM');
    expect(await exited(p)).toEqual({ code: null, signal: 'SIGTERM' });
    expect(agentRow(db, 'sig')).toMatchObject({ state: 'offline', stateReason: 'goodbye', message: 'received SIGTERM' });
  });

  it('keeps its host process alive while another process holds the database locked, and recovers', async () => {
    const db = tempDb();
    const p = start(process.execPath, [join(FIXTURES, 'agent-beat.mjs'), db, 'locked', '20']);
    await waitFor(() => jsonLines(p).some((l) => l.event === 'started'), 'the agent to start');
    const holder = start(process.execPath, [join(FIXTURES, 'hold-write-lock.mjs'), db, '1500']);
    await waitFor(() => holder.output().includes('locked'), 'the lock');
    await waitFor(() => jsonLines(p).some((l) => l.event === 'writeFailed'), 'a failed heartbeat');
    const failed = jsonLines(p).find((l) => l.event === 'writeFailed');
    expect(failed.message).toMatch(/busy/);
    expect(failed.health).toMatchObject({ healthy: false, consecutiveFailures: 1 });
    expect(p.exitCode).toBeNull();
    await waitFor(() => holder.output().includes('released'), 'the lock to be released');
    await waitFor(() => jsonLines(p).some((l) => l.event === 'reconnected'), 'the agent to recover');
    const seq = agentRow(db, 'locked')!.heartbeatSeq;
    await waitFor(() => agentRow(db, 'locked')!.heartbeatSeq > seq + 2, 'heartbeats to continue');
    expect(agentRow(db, 'locked')).toMatchObject({ state: 'active', incarnation: 1 });
    expect(p.exitCode).toBeNull();
    expect(p.errors()).toBe('');
  });

  it('keeps its host process alive when the database is deleted, and recovers when it is recreated', async () => {
    const db = tempDb();
    const p = start(process.execPath, [join(FIXTURES, 'agent-beat.mjs'), db, 'phoenix', '20']);
    await waitFor(() => jsonLines(p).some((l) => l.event === 'started'), 'the agent to start');
    for (const f of [db, `${db}-wal`, `${db}-shm`]) rmSync(f, { force: true });
    await waitFor(() => jsonLines(p).some((l) => l.event === 'writeFailed' && /was deleted while in use/.test(l.message)), 'the agent to notice');
    // Two more tries after that: still nothing created where the operator removed the database.
    const failures = () => jsonLines(p).filter((l) => l.event === 'writeFailed').length;
    const seen = failures();
    await waitFor(() => failures() >= seen + 2, 'two more failed tries');
    expect(existsSync(db)).toBe(false);
    expect(p.exitCode).toBeNull();
    expect(cli(['register', 'other'], { db }).code).toBe(0);
    await waitFor(() => agentRow(db, 'phoenix')?.state === 'active', 'the agent in the new file');
    // The row commits before the agent prints its 'reconnected' line: wait for the line rather than race it.
    await waitFor(() => jsonLines(p).some((l) => l.event === 'reconnected'), "the agent's reconnected event");
    expect(agentRow(db, 'phoenix')).toMatchObject({ pid: p.pid, metadata: { fixture: 'agent-beat' } });
    expect(p.exitCode).toBeNull();
  });
});
