import { describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { chmodSync, existsSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { APPLICATION_ID, MIGRATIONS, migrationSql } from '../src/store/sqlite/migrations.js';
import { BIN, cleanEnv, cli, cliJson, fileHash, fixture, start, tempDb, waitFor } from './helpers.js';

/** The reading commands: each must work for a user who may read the database but not write it or its directory. */
const READERS: string[][] = [['status'], ['status', '--json'], ['check'], ['map'], ['metrics'], ['history'], ['commands'], ['db-check']];

const canSwitchUser = process.getuid?.() === 0 && spawnSync('setpriv', ['--version']).status === 0;

/** Runs the CLI as `nobody` (no groups): a monitoring user who may only read. */
function asNobody(args: string[], db: string) {
  const r = spawnSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, BIN, '--db', db, ...args], {
    encoding: 'utf8',
    env: cleanEnv(),
    cwd: '/',
    timeout: 60_000,
  });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A database made by root, 644 in a 755 directory, with one agent that beat, and no process holding it open. */
function rootOwnedDb(): string {
  const db = tempDb();
  expect(cli(['heartbeat', 'w1', '--message', 'hi'], { db }).code).toBe(0);
  chmodSync(dirname(db), 0o755);
  chmodSync(db, 0o644);
  return db;
}

const listing = (db: string) => readdirSync(dirname(db)).sort();

describe.skipIf(!canSwitchUser)('readers never write: a user who may read the database but not write it', () => {
  it('every reading command works, with no writer holding the database open, and leaves no file behind', () => {
    const db = rootOwnedDb();
    const before = { files: listing(db), hash: fileHash(db) };
    expect(before.files).toEqual(['agents.db']);
    for (const args of READERS) {
      const r = asNobody(args, db);
      expect({ args, code: r.code, stderr: withoutLoopWarning(r.stderr) }).toEqual({ args, code: 0, stderr: '' });
    }
    expect(asNobody(['check'], db).stdout).toMatch(/^OK: /);
    expect(JSON.parse(asNobody(['status', '--json'], db).stdout).agents[0]).toMatchObject({ name: 'w1', state: 'active', message: 'hi' });
    expect({ files: listing(db), hash: fileHash(db) }).toEqual(before);
  });

  it('every reading command works the same while a writer holds it open, so check does not flap', async () => {
    const db = rootOwnedDb();
    const writer = start(process.execPath, [fixture('hold-open.mjs'), db]);
    await waitFor(() => writer.output().includes('open'), 'the writer to open the database', 30_000);
    expect(existsSync(`${db}-shm`)).toBe(true);
    for (const args of READERS) {
      const r = asNobody(args, db);
      expect({ args, code: r.code, stderr: withoutLoopWarning(r.stderr) }).toEqual({ args, code: 0, stderr: '' });
    }
    // Alternate: held, not held, held. The verdict is the fleet's, not whether someone has the file open.
    const held = asNobody(['check'], db).stdout;
    writer.kill('SIGKILL');
    await waitFor(() => writer.exitCode !== null || writer.signalCode !== null, 'the writer to exit', 30_000);
    expect(cli(['status'], { db }).code).toBe(0); // the last writer gone: WAL checkpointed and removed
    const notHeld = asNobody(['check'], db).stdout;
    expect(held.split(' | ')[0]).toBe(notHeld.split(' | ')[0]);
    expect(notHeld).toMatch(/^OK: /);
  });

  it('history --follow as that user sees events written after it started, with or without a writer present', async () => {
    const db = rootOwnedDb();
    const follow = start('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, BIN, '--db', db, 'history', '--follow', '--json', '--refresh', '100ms'], { cwd: '/' });
    await waitFor(() => follow.output().includes('first heartbeat'), 'the existing events', 30_000);
    expect(cli(['set-status', 'w1', 'maintenance'], { db }).code).toBe(0);
    await waitFor(() => follow.output().includes('"toState":"maintenance"'), 'the new event', 30_000);
    follow.kill('SIGTERM');
    expect(follow.errors()).toBe('');
  });

  it('a write-ahead log without its index is not read as a snapshot (that would miss commits): one line says why', () => {
    const db = rootOwnedDb();
    // What a crashed writer leaves: committed heartbeats in the WAL, not yet in the main file.
    const w = new Database(db);
    w.pragma('wal_autocheckpoint = 0');
    w.prepare("UPDATE agents SET message = 'only in the WAL' WHERE name = 'w1'").run();
    expect(statSync(`${db}-wal`).size).toBeGreaterThan(0);
    // Copy the three files as a crash would leave them, without the index.
    const copy = join(dirname(db), 'crashed.db');
    for (const [from, to] of [[db, copy], [`${db}-wal`, `${copy}-wal`]] as const) writeFileSync(to, readFileSync(from));
    w.close();
    chmodSync(copy, 0o644);
    chmodSync(`${copy}-wal`, 0o644);
    for (const args of [['status'], ['map']]) {
      const r = asNobody(args, copy);
      expect(r.code).toBe(1);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/write-ahead log .* needs the index .*crashed\.db-shm/);
    }
    expect(asNobody(['check'], copy)).toMatchObject({ code: 3, stdout: expect.stringMatching(/^UNKNOWN: cannot read database .*write-ahead log/) });
    const d = asNobody(['db-check'], copy);
    expect(d.code).toBe(1);
    expect(d.stdout).toMatch(/permissions: .*permission problem/);
    expect(d.stdout).not.toMatch(/--fix/);
    // Its owner can read it (and replays the log).
    expect(cliJson(['status', 'w1'], { db: copy }).agents[0].message).toBe('only in the WAL');
  });

  it('db-check names an unreadable file as a permission problem with the chmod that fixes it, not --fix', () => {
    const db = rootOwnedDb();
    chmodSync(db, 0o600);
    const r = asNobody(['db-check'], db);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/permissions: .* is not readable by uid \d+ .*a permission problem, not damage.*chmod o\+r /);
    expect(r.stdout).not.toMatch(/--fix/);
  });

  it('a schema older than this build that it can read (version 4) is read as it is, not migrated', () => {
    const db = tempDb();
    const old = new Database(db);
    old.pragma('journal_mode = WAL');
    old.exec('BEGIN IMMEDIATE');
    for (const name of MIGRATIONS.slice(0, 4)) old.exec(migrationSql(name));
    old.pragma(`application_id = ${APPLICATION_ID}`);
    old.pragma('user_version = 4');
    old.exec('COMMIT');
    old.close();
    chmodSync(dirname(db), 0o755);
    chmodSync(db, 0o644);
    const hash = fileHash(db);
    for (const args of [['status'], ['check'], ['history'], ['metrics']]) expect(asNobody(args, db).stderr).toBe('');
    expect(asNobody(['status', '--json'], db).code).toBe(0);
    expect(fileHash(db)).toBe(hash);
    expect(listing(db)).toEqual(['agents.db']);
  });

  it('a schema older than this build reads: refused with what the owner must do, the file untouched', () => {
    const db = tempDb();
    const old = new Database(db);
    old.pragma('journal_mode = WAL');
    old.exec('BEGIN IMMEDIATE');
    for (const name of MIGRATIONS.slice(0, 3)) old.exec(migrationSql(name));
    old.pragma(`application_id = ${APPLICATION_ID}`);
    old.pragma('user_version = 3');
    old.exec('COMMIT');
    old.close();
    chmodSync(dirname(db), 0o755);
    chmodSync(db, 0o644);
    const hash = fileHash(db);
    const r = asNobody(['status'], db);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toMatch(/schema version 3, older than this agentctl reads .*its owner must run any write command once \(or 'agentctl init --db .*'\) to migrate it$/);
    expect(fileHash(db)).toBe(hash);
    expect(cli(['init'], { db }).code).toBe(0);
    expect(asNobody(['status'], db).code).toBe(0);
  });
});

/** stderr without status's note that no health loop runs here (a note for people, on stderr by design). */
function withoutLoopWarning(stderr: string): string {
  return stderr.split('\n').filter((l) => !l.startsWith('warning: no health loop has run')).join('\n');
}

describe('a reading command never creates the database', () => {
  it('each says so in one line naming the path and agentctl init, exits 1 (check: UNKNOWN, 3), and creates nothing', () => {
    const db = tempDb();
    for (const args of READERS) {
      const r = cli(args, { db });
      if (args[0] === 'check') {
        expect(r.code).toBe(3);
        expect(r.stdout.trim()).toBe(`UNKNOWN: database ${db} does not exist (create it with 'agentctl init --db ${db}'; the first 'agentctl register' or 'agentctl heartbeat' creates it too)`);
        continue;
      }
      expect({ args, code: r.code, stdout: r.stdout }).toEqual({ args, code: 1, stdout: '' });
      expect(r.stderr).toBe(`agentctl: database ${db} does not exist (create it with 'agentctl init --db ${db}'; the first 'agentctl register' or 'agentctl heartbeat' creates it too)\n`);
      expect(existsSync(db)).toBe(false);
    }
    expect(readdirSync(dirname(db))).toEqual([]);
  });
});

describe('agentctl init', () => {
  it('creates and migrates a database, idempotently, with --json for scripts; refuses a foreign file with exit 4', () => {
    const db = tempDb();
    const first = cli(['init', '--json'], { db });
    expect(first.code).toBe(0);
    expect(JSON.parse(first.stdout)).toEqual({ path: db, created: true, schemaVersion: MIGRATIONS.length });
    const hash = fileHash(db);
    expect(JSON.parse(cli(['init', '--json'], { db }).stdout)).toEqual({ path: db, created: false, schemaVersion: MIGRATIONS.length });
    expect(cli(['init'], { db }).stdout).toMatch(/^database .*: schema version \d+ \(current\)\n$/);
    expect(fileHash(db)).toBe(hash);
    // A foreign writer may now use it: a Python sqlite3 connection sees agentctl's mark.
    const py = spawnSync('python3', ['-c', 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(c.execute("PRAGMA application_id").fetchone()[0])', db], { encoding: 'utf8' });
    expect(py.stdout.trim()).toBe(String(APPLICATION_ID));
    const other = join(dirname(db), 'other.db');
    const o = new Database(other);
    o.exec('CREATE TABLE t (a)');
    o.close();
    const h = fileHash(other);
    const r = cli(['init'], { db: other });
    expect(r.code).toBe(4);
    expect(fileHash(other)).toBe(h);
    expect(cli(['--help']).stdout).toMatch(/\n {2}init\b/);
  });

  it('db-check exits 4 for another application\'s SQLite file, as every other command does', () => {
    const db = tempDb();
    const o = new Database(db);
    o.exec('CREATE TABLE photos (id INTEGER PRIMARY KEY, path TEXT)');
    o.close();
    const hash = fileHash(db);
    expect(cli(['status'], { db }).code).toBe(4);
    const r = cli(['db-check'], { db });
    expect(r.code).toBe(4);
    expect(r.stdout).toMatch(/not an agentctl database/);
    expect(JSON.parse(cli(['db-check', '--json'], { db }).stdout).verdict).toBe('unusable');
    expect(fileHash(db)).toBe(hash);
    rmSync(db);
  });
});
