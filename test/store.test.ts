import { describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { writeFileSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { openStore } from '../src/store/store.js';
import { APPLICATION_ID, SCHEMA_VERSION } from '../src/store/sqlite/migrations.js';
import { getRegisteredAgents, registerAgent, updateAgentState, updateHeartbeat, deregisterAgent, viewAgent } from '../src/core/agents.js';
import { START_SQL } from '../src/store/protocol.js';
import { processStartTime } from '../src/core/host.js';
import { DatabaseUnusableError, OperationError, DatabaseMissingError, AgentNotFoundError, UsageError } from '../src/errors.js';
import { FIXTURES, exited, fileHash, start, tempDb, tempDir, waitFor } from './helpers.js';

const T0 = 1_800_000_000_000;

async function events(path: string) {
  const s = await openStore({ path });
  try {
    return (await s.listEvents()).map((e) => `${e.agentName}:${e.fromState ?? '-'}>${e.toState}:${e.reason}`);
  } finally {
    await s.close();
  }
}

describe('opening the database', () => {
  it('creates a new file with WAL, our application id and the schema version', async () => {
    const path = tempDb();
    const s = await openStore({ path });
    expect(s.db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(s.db.pragma('application_id', { simple: true })).toBe(APPLICATION_ID);
    expect(s.db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    expect(s.db.pragma('foreign_keys', { simple: true })).toBe(1);
    expect(s.db.pragma('synchronous', { simple: true })).toBe(1);
    expect(s.db.pragma('busy_timeout', { simple: true })).toBe(5000);
    await s.close();
    // Opening again migrates nothing and keeps the data.
    const again = await openStore({ path, busyTimeoutMs: 1234 });
    expect(again.db.pragma('busy_timeout', { simple: true })).toBe(1234);
    await again.close();
  });

  it('refuses a file that is not SQLite and leaves it byte-for-byte unchanged', async () => {
    const path = join(tempDir(), 'notes.db');
    writeFileSync(path, 'these are my notes, not a database\n'.repeat(20));
    const before = fileHash(path);
    await expect((async () => await openStore({ path }))()).rejects.toThrow(DatabaseUnusableError);
    expect(fileHash(path)).toBe(before);
    expect(existsSync(`${path}-wal`)).toBe(false);
  });

  it('refuses an SQLite file of another application', async () => {
    const path = tempDb();
    const other = new Database(path);
    other.exec('CREATE TABLE customers (id INTEGER PRIMARY KEY)');
    other.close();
    const before = fileHash(path);
    await expect((async () => await openStore({ path }))()).rejects.toThrow(/another application/);
    expect(fileHash(path)).toBe(before);
  });

  it('refuses a schema newer than this build and leaves the file unchanged', async () => {
    const path = tempDb();
    await (await openStore({ path })).close();
    const raw = new Database(path);
    raw.pragma('journal_mode = DELETE');
    raw.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    raw.close();
    const before = fileHash(path);
    await expect((async () => await openStore({ path }))()).rejects.toThrow(/newer than this agentctl/);
    expect(fileHash(path)).toBe(before);
  });

  it('treats an empty file as a new database', async () => {
    const path = tempDb();
    writeFileSync(path, '');
    const s = await openStore({ path });
    expect(s.db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    await s.close();
  });

  it('refuses an empty file whose write-ahead log says it was truncated', async () => {
    const path = tempDb();
    writeFileSync(path, '');
    writeFileSync(`${path}-wal`, Buffer.alloc(4096, 1));
    const before = [fileHash(path), fileHash(`${path}-wal`)];
    await expect((async () => await openStore({ path }))()).rejects.toThrow(/empty but .*-wal holds 4096 bytes: it was truncated/);
    expect([fileHash(path), fileHash(`${path}-wal`)]).toEqual(before);
  });

  it('a store notices its file deleted or replaced and writes nothing', async () => {
    const path = tempDb();
    // Checked before every write here; by default a heartbeat relies on a check of the last 100 ms (next test).
    const s = await openStore({ path, fileCheckEveryMs: 0 });
    await updateHeartbeat(s, { name: 'a' }, T0);
    rmSync(path);
    await expect((async () => await updateHeartbeat(s, { name: 'a' }, T0 + 1))()).rejects.toThrow(/was deleted while in use; nothing was written/);
    writeFileSync(path, 'x');
    await expect((async () => await registerAgent(s, { name: 'b' }, T0 + 2))()).rejects.toThrow(/was replaced while in use/);
    await s.close();
  });

  it('by default a stream of heartbeats checks the file now and then, not before every write, and still notices', async () => {
    const path = tempDb();
    const s = await openStore({ path });
    await updateHeartbeat(s, { name: 'a' }, T0);
    rmSync(path);
    let error: unknown;
    await waitFor(async () => {
      try {
        await updateHeartbeat(s, { name: 'a' }, T0 + 1);
        return false;
      } catch (err) {
        error = err;
        return true;
      }
    }, 'a heartbeat to notice the deleted file', 30_000, 5);
    expect(String(error)).toMatch(/was deleted while in use; nothing was written/);
    expect(existsSync(path)).toBe(false);
    await s.close();
  });

  it('says clearly when the directory is missing, creating nothing', async () => {
    const dir = join(tempDir(), 'missing', 'deeper');
    await expect((async () => await openStore({ path: join(dir, 'a.db') }))()).rejects.toThrow(OperationError);
    await expect((async () => await openStore({ path: join(dir, 'a.db') }))()).rejects.toThrow(/directory .* does not exist/);
    expect(existsSync(dir)).toBe(false);
    await (await openStore({ path: join(dir, 'a.db'), createDir: true })).close();
    expect(existsSync(join(dir, 'a.db'))).toBe(true);
  });

  it("mode 'existing' refuses a missing file", async () => {
    await expect((async () => await openStore({ path: tempDb(), mode: 'existing' }))()).rejects.toThrow(DatabaseMissingError);
  });
});

describe('heartbeats and transitions', () => {
  it('registers on first use: registered, then initializing → active', async () => {
    const path = tempDb();
    const s = await openStore({ path });
    expect((await updateHeartbeat(s, { name: 'w1' }, T0)).registered).toBe(true);
    expect((await updateHeartbeat(s, { name: 'w1' }, T0 + 1000)).registered).toBe(false);
    const [a] = await getRegisteredAgents(s, T0 + 1000);
    expect(a).toMatchObject({ name: 'w1', state: 'active', heartbeatSeq: 2, lastHeartbeatAt: T0 + 1000 });
    await s.close();
    expect(await events(path)).toEqual(['w1:->initializing:registered', 'w1:initializing>active:first heartbeat']);
  });

  it('a heartbeat after silence records the stale period and the reactivation, for every writer', async () => {
    const path = tempDb();
    const s = await openStore({ path });
    await registerAgent(s, { name: 'w', intervalMs: 1000 }, T0);
    await updateHeartbeat(s, { name: 'w' }, T0 + 500);
    await updateHeartbeat(s, { name: 'w' }, T0 + 1500); // on time: no event
    await updateHeartbeat(s, { name: 'w' }, T0 + 4500); // silent 3000 = 1000 × 3: stale, then back
    const evs = await s.listEvents({ agent: 'w' });
    await s.close();
    expect(evs.map((e) => `${e.fromState}>${e.toState}`)).toEqual(['null>initializing', 'initializing>active', 'active>stale', 'stale>active']);
    const stale = evs[2]!;
    expect(stale.at).toBe(T0 + 1500 + 3000);
    expect(stale.evidence).toMatchObject({ rule: 'clock', detected_by: 'heartbeat', heartbeat_age_ms: 3000, stale_after_ms: 3000 });
    expect(evs[3]!.evidence).toMatchObject({ rule: 'heartbeat', silent_ms: 3000 });
  });

  it('a restarted agent is judged from its restart: its first heartbeat records no silence from before it, for every writer', async () => {
    const path = tempDb();
    const s = await openStore({ path });
    const restart = (now: number) =>
      s.db.prepare(START_SQL).run({ name: 'w', restarted: 1, pid: null, pid_start_time: null, host: null, boot_id: null, reason: 'restarted', evidence: null, now });
    await registerAgent(s, { name: 'w', intervalMs: 1000 }, T0); // stale after 3 s, offline after 300 s
    await updateHeartbeat(s, { name: 'w' }, T0);
    restart(T0 + 3_600_000); // an hour later
    expect(viewAgent((await s.getAgent('w'))!, T0 + 3_600_000 + 2999).state).toBe('initializing');
    await updateHeartbeat(s, { name: 'w' }, T0 + 3_600_000 + 2999);
    // Restarted again; this time the first beat comes after the stale window, before the offline threshold.
    restart(T0 + 7_200_000);
    await updateHeartbeat(s, { name: 'w' }, T0 + 7_200_000 + 10_000);
    const evs = await s.listEvents({ agent: 'w' });
    await s.close();
    expect(evs.map((e) => `${e.fromState}>${e.toState}:${e.reason}@${e.at - T0}`)).toEqual([
      'null>initializing:registered@0',
      'initializing>active:first heartbeat@0',
      'active>initializing:restarted@3600000',
      'initializing>active:first heartbeat@3602999',
      'active>initializing:restarted@7200000',
      'initializing>stale:stuck in initializing@7203000',
      'stale>active:heartbeat@7210000',
    ]);
    expect(evs[3]!.evidence).toMatchObject({ silent_ms: 2999 });
    expect(evs[5]!.evidence).toMatchObject({ rule: 'clock', detected_by: 'heartbeat', heartbeat_age_ms: 10_000 });
  });

  it('reactivates an agent persisted as stale or offline with an event', async () => {
    const path = tempDb();
    const s = await openStore({ path });
    await updateHeartbeat(s, { name: 'w' }, T0);
    s.db.prepare("UPDATE agents SET state='stale', state_since=?, state_reason='heartbeat overdue' WHERE name='w'").run(T0 + 90_000);
    await updateHeartbeat(s, { name: 'w' }, T0 + 95_000);
    await updateAgentState(s, 'w', 'offline', T0 + 96_000, { reason: 'taken down' });
    await updateHeartbeat(s, { name: 'w' }, T0 + 97_000);
    expect((await getRegisteredAgents(s, T0 + 97_000))[0]).toMatchObject({ state: 'active', startedAt: T0 + 97_000 });
    await s.close();
    expect((await events(path)).slice(2)).toEqual(['w:active>stale:heartbeat overdue', 'w:stale>active:heartbeat', 'w:active>offline:taken down', 'w:offline>active:heartbeat']);
  });

  it('error status makes the agent error, and ok clears it', async () => {
    const path = tempDb();
    const s = await openStore({ path });
    await updateHeartbeat(s, { name: 'w' }, T0);
    await updateHeartbeat(s, { name: 'w', status: 'error', message: 'disk full' }, T0 + 1000);
    expect((await getRegisteredAgents(s, T0 + 1000))[0]).toMatchObject({ state: 'error', message: 'disk full' });
    await updateHeartbeat(s, { name: 'w', status: 'busy' }, T0 + 2000);
    expect((await getRegisteredAgents(s, T0 + 2000))[0]).toMatchObject({ state: 'active', message: null, availability: 'busy', reportedStatus: 'busy' });
    await updateHeartbeat(s, { name: 'w' }, T0 + 3000);
    expect((await getRegisteredAgents(s, T0 + 3000))[0]).toMatchObject({ availability: 'busy' });
    await s.close();
    expect((await events(path)).slice(2)).toEqual(['w:active>error:reported error', 'w:error>active:error cleared']);
  });

  it('merges metadata (null removes a key) and keeps progress', async () => {
    const s = await openStore({ path: tempDb() });
    await registerAgent(s, { name: 'm', metadata: { region: 'eu', tier: 1 } }, T0);
    await updateHeartbeat(s, { name: 'm', metadata: { tier: null, jobs: 3 }, progress: 7 }, T0 + 1);
    await updateHeartbeat(s, { name: 'm' }, T0 + 2);
    const a = (await s.getAgent('m'))!;
    expect(a.metadata).toEqual({ region: 'eu', jobs: 3 });
    expect(a.progress).toBe(7);
    await s.close();
  });

  it('a later register updates the contract and keeps the rest', async () => {
    const s = await openStore({ path: tempDb() });
    await registerAgent(s, { name: 'c', intervalMs: 5000, group: 'g1' }, T0);
    await registerAgent(s, { name: 'c', offlineAfterMs: 60_000 }, T0 + 1);
    const a = (await s.getAgent('c'))!;
    expect(a).toMatchObject({ intervalMs: 5000, offlineAfterMs: 60_000, staleMultiplier: 3, group: 'g1', state: 'initializing', incarnation: 1 });
    await s.close();
  });

  it('a register with a new pid starts a new incarnation; the same process registering again does not', async () => {
    const path = tempDb();
    const s = await openStore({ path });
    const other = start(process.execPath, ['-e', 'setInterval(() => {}, 1000)']);
    try {
      await waitFor(() => processStartTime(other.pid!) !== null, 'the second process');
      await registerAgent(s, { name: 'p', pid: process.pid }, T0);
      await updateHeartbeat(s, { name: 'p' }, T0 + 1);
      await registerAgent(s, { name: 'p', pid: process.pid }, T0 + 2); // same process: nothing changes
      expect(await s.getAgent('p')).toMatchObject({ incarnation: 1, state: 'active', pid: process.pid });
      expect((await s.getAgent('p'))!.pidStartTime).toBeGreaterThan(0);
      await registerAgent(s, { name: 'p', pid: other.pid! }, T0 + 3); // another process under the name
      expect(await s.getAgent('p')).toMatchObject({ incarnation: 2, state: 'initializing', pid: other.pid, pidStartTime: processStartTime(other.pid!) });
      expect((await s.listEvents({ agent: 'p' })).at(-1)).toMatchObject({ fromState: 'active', toState: 'initializing' });
    } finally {
      await s.close();
    }
  });

  it('goodbye and offline cancel executing commands; deregister hides the agent', async () => {
    const path = tempDb();
    const s = await openStore({ path });
    await updateHeartbeat(s, { name: 'x' }, T0);
    const id = (await s.getAgent('x'))!.id;
    s.db.prepare("INSERT INTO commands (agent_id, payload, state, claim_token, created_at) VALUES (?, 'job', 'executing', 't1', ?)").run(id, T0);
    s.db.prepare("INSERT INTO commands (agent_id, payload, state, created_at) VALUES (?, 'later', 'queued', ?)").run(id, T0);
    expect(await s.goodbye('x', 'bye', T0 + 10)).toBe(true);
    const cmds = s.db.prepare('SELECT payload, state, error FROM commands ORDER BY id').all();
    expect(cmds).toEqual([
      { payload: 'job', state: 'cancelled', error: 'agent offline: goodbye' },
      { payload: 'later', state: 'queued', error: null },
    ]);
    await deregisterAgent(s, 'x', T0 + 20);
    expect(await getRegisteredAgents(s, T0 + 20)).toEqual([]);
    expect(await getRegisteredAgents(s, T0 + 20, { includeDeregistered: true })).toHaveLength(1);
    await updateHeartbeat(s, { name: 'x' }, T0 + 30);
    expect((await getRegisteredAgents(s, T0 + 30))[0]).toMatchObject({ name: 'x', state: 'active', deregisteredAt: null });
    await s.close();
    expect((await events(path)).slice(2)).toEqual(['x:active>offline:goodbye', 'x:offline>offline:deregistered', 'x:offline>active:heartbeat']);
  });

  it('maintenance holds, expires by the clock, and ends on set available', async () => {
    const s = await openStore({ path: tempDb() });
    await updateHeartbeat(s, { name: 'm' }, T0);
    await updateAgentState(s, 'm', 'maintenance', T0 + 1, { forMs: 10_000, reason: 'upgrade' });
    expect((await getRegisteredAgents(s, T0 + 5000))[0]!.state).toBe('maintenance');
    await updateHeartbeat(s, { name: 'm' }, T0 + 6000); // a heartbeat during maintenance keeps it
    expect((await s.getAgent('m'))!.state).toBe('maintenance');
    expect((await getRegisteredAgents(s, T0 + 10_001))[0]!.state).toBe('active');
    await updateHeartbeat(s, { name: 'm' }, T0 + 12_000); // after expiry: maintenance ends durably
    expect(await s.getAgent('m')).toMatchObject({ state: 'active', maintenanceUntil: null });
    await updateAgentState(s, 'm', 'maintenance', T0 + 13_000);
    await updateAgentState(s, 'm', 'available', T0 + 14_000);
    expect((await s.getAgent('m'))!.state).toBe('active');
    const reasons = (await s.listEvents({ agent: 'm' })).map((e) => `${e.fromState}>${e.toState}:${e.reason}`);
    await s.close();
    expect(reasons.slice(2)).toEqual([
      'active>maintenance:upgrade',
      'maintenance>active:maintenance window ended',
      'active>maintenance:maintenance',
      'maintenance>active:maintenance ended by operator',
    ]);
  });

  it('validates before writing and names what is wrong', async () => {
    const path = tempDb();
    const s = await openStore({ path });
    await expect((async () => await updateHeartbeat(s, { name: 'bad name' }, T0))()).rejects.toThrow(UsageError);
    await expect((async () => await updateHeartbeat(s, { name: 'ok', message: 'x'.repeat(1025) }, T0))()).rejects.toThrow(/1024/);
    await expect((async () => await updateHeartbeat(s, { name: 'ok', metadata: { big: 'x'.repeat(20_000) } }, T0))()).rejects.toThrow(/too large/);
    await expect((async () => await registerAgent(s, { name: 'ok', pid: 4_000_000 }, T0))()).rejects.toThrow(/no process with pid/);
    await expect((async () => await updateAgentState(s, 'nobody', 'offline', T0))()).rejects.toThrow(AgentNotFoundError);
    expect(await s.listAgents()).toEqual([]);
    expect(await s.listEvents()).toEqual([]);
    await s.close();
  });

  it('the schema itself refuses what the documentation forbids, for foreign writers', async () => {
    const s = await openStore({ path: tempDb() });
    const ins = (name: string) => s.db.prepare("INSERT INTO agents (name, state_since, created_at, started_at, updated_at) VALUES (?, :t, :t, :t, :t)").run(name, { t: T0 });
    expect(() => ins('has space')).toThrow(/CHECK/);
    expect(() => ins('-leading')).toThrow(/CHECK/);
    expect(() => ins('x'.repeat(129))).toThrow(/CHECK/);
    ins('fine.name_1:eu@host');
    expect(() => s.db.prepare("UPDATE agents SET metadata = '[1]'").run()).toThrow(/CHECK/);
    expect(() => s.db.prepare("UPDATE agents SET state = 'sleeping'").run()).toThrow(/CHECK/);
    await s.close();
  });
});

describe('busy handling', () => {
  it('retries a whole transaction through SQLITE_BUSY and fails loudly after the last try', async () => {
    const path = tempDb();
    await (await openStore({ path })).close();
    const blocker = new Database(path);
    blocker.exec('BEGIN IMMEDIATE');
    const s = await openStore({ path, busyTimeoutMs: 20, retryAttempts: 3, backoffFactor: 1.5 });
    const t = Date.now();
    await expect((async () => await registerAgent(s, { name: 'late' }, T0))()).rejects.toThrow(/stayed busy through 3 attempt/);
    expect(Date.now() - t).toBeGreaterThanOrEqual(60);
    blocker.exec('ROLLBACK');
    await registerAgent(s, { name: 'late' }, T0);
    expect(await s.getAgent('late')).toBeDefined();
    blocker.close();
    await s.close();
  });

  it('promptWriteLock: waits for a writer that holds the lock, gives up after busy_timeout like the busy handler, and keeps busy_timeout', async () => {
    const path = tempDb();
    await (await openStore({ path })).close();
    const s = await openStore({ path, busyTimeoutMs: 30, retryAttempts: 2 });
    s.promptWriteLock = true;
    const blocker = new Database(path);
    blocker.exec('BEGIN IMMEDIATE');
    await expect((async () => await registerAgent(s, { name: 'late' }, T0))()).rejects.toThrow(/stayed busy through 2 attempt/);
    expect(s.db.pragma('busy_timeout', { simple: true })).toBe(30);
    blocker.exec('ROLLBACK');
    blocker.close();
    await s.close();
    // Another process holds the lock for a while: a prompt transaction waits for it, within its busy timeout.
    const holder = start(process.execPath, [join(FIXTURES, 'hold-write-lock.mjs'), path, '1000']);
    await waitFor(() => holder.output().includes('locked'), 'the other process to hold the lock');
    const patient = await openStore({ path, busyTimeoutMs: 10_000, retryAttempts: 1 });
    patient.promptWriteLock = true;
    await registerAgent(patient, { name: 'patient' }, T0);
    expect(await patient.getAgent('patient')).toBeDefined();
    expect(patient.db.pragma('busy_timeout', { simple: true })).toBe(10_000);
    await patient.close();
    expect(await exited(holder)).toEqual({ code: 0, signal: null });
    expect(holder.output()).toContain('released');
  });
});
