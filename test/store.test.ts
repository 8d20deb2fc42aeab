import { describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { writeFileSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { openStore } from '../src/store/store.js';
import { APPLICATION_ID, SCHEMA_VERSION } from '../src/store/sqlite/migrations.js';
import { registerAgent, updateHeartbeat } from '../src/core/agents.js';
import { DatabaseUnusableError, OperationError, DatabaseMissingError } from '../src/errors.js';
import { FIXTURES, exited, fileHash, start, tempDb, tempDir, waitFor } from './helpers.js';

const T0 = 1_800_000_000_000;

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
