import { describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { existsSync, openSync, readdirSync, readFileSync, readSync, statSync, truncateSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { hostname } from 'node:os';
import { cli, exited, fileHash, fixture, start, tempDb, tempDir, waitFor } from './helpers.js';
import { SCHEMA_VERSION } from '../src/store/sqlite/migrations.js';

function fleet(db: string, n = 20): void {
  for (let i = 0; i < n; i++) cli(['heartbeat', `agent-${i}`, '--message', `m${i}`.repeat(40)], { db });
}

/** Checkpoints the WAL into the main file and leaves the database in rollback mode, so every byte is in one file. */
function settle(db: string): void {
  const raw = new Database(db);
  raw.pragma('wal_checkpoint(TRUNCATE)');
  raw.pragma('journal_mode = DELETE');
  raw.close();
}

/** Flips bytes in the middle of page `page` (1-based). */
function flipPage(db: string, page: number, pageSize = 4096): void {
  const fd = openSync(db, 'r+');
  const buf = Buffer.alloc(64);
  const at = (page - 1) * pageSize + 8;
  readSync(fd, buf, 0, 64, at);
  for (let i = 0; i < buf.length; i++) buf[i] = buf[i]! ^ 0xa5;
  writeSync(fd, buf, 0, 64, at);
  closeSync(fd);
}

describe('agentctl db-check', () => {
  it('reports a healthy database and exits 0', () => {
    const db = tempDb();
    fleet(db, 3);
    const r = cli(['db-check'], { db });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/quick_check: ok/);
    expect(r.stdout).toMatch(/healthy/);
    const json = JSON.parse(cli(['db-check', '--full', '--json'], { db }).stdout);
    expect(json.verdict).toBe('healthy');
    expect(json.findings.map((f: any) => f.check)).toEqual(expect.arrayContaining(['header', 'application_id', 'schema', 'integrity_check', 'foreign_key_check', 'journal_mode', 'wal', 'pages', 'monitor lock', 'maintenance lock', 'clock skew', 'state model']));
  });

  it('exits 4 for a file that is not SQLite, and --fix leaves it untouched', () => {
    const db = join(tempDir(), 'x.db');
    writeFileSync(db, 'not a database\n'.repeat(100));
    const before = fileHash(db);
    expect(cli(['db-check'], { db }).code).toBe(4);
    expect(cli(['db-check', '--fix'], { db }).code).toBe(4);
    expect(fileHash(db)).toBe(before);
  });

  it('exits 4 for a schema newer than this build', () => {
    const db = tempDb();
    fleet(db, 1);
    settle(db);
    const raw = new Database(db);
    raw.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    raw.close();
    const r = cli(['db-check'], { db });
    expect(r.code).toBe(4);
    expect(r.stdout).toMatch(/newer than this agentctl/);
  });

  it('finds flipped bytes in a page, exits 4, never writes the file, and --fix copies the readable rows beside it', () => {
    const db = tempDb();
    fleet(db, 40);
    settle(db);
    const reader = new Database(db, { readonly: true });
    const pages = reader.pragma('page_count', { simple: true }) as number;
    reader.close();
    flipPage(db, pages); // the last page: table rows, not the schema
    const before = fileHash(db);
    const check = cli(['db-check', '--full'], { db });
    expect(check.code).toBe(4);
    expect(check.stdout).toMatch(/FAIL/);
    const fix = cli(['db-check', '--fix'], { db });
    expect(fix.code).toBe(4);
    expect(fix.stdout).toMatch(/left untouched; readable rows are in/);
    expect(fileHash(db)).toBe(before);
    const recovered = readdirSync(dirname(db)).find((f) => f.startsWith(`${basename(db)}.recovered-`) && f.endsWith('.db'));
    expect(recovered).toBeDefined();
    const copy = join(dirname(db), recovered!);
    expect(cli(['db-check', '--full'], { db: copy }).code).toBe(0);
    const n = JSON.parse(cli(['status', '--json'], { db: copy }).stdout).agents.length;
    expect(n).toBeGreaterThan(0);
    expect(n).toBeLessThanOrEqual(40);
  });

  it('exits 4 for a file truncated while its write-ahead log still holds later pages (a short read is damage, not an I/O error)', () => {
    const db = tempDb();
    for (let i = 0; i < 30; i++) cli(['heartbeat', `idle-${i}`, '--message', 'x'.repeat(200)], { db });
    const raw = new Database(db);
    raw.pragma('wal_checkpoint(TRUNCATE)');
    // A writer adds frames to the log after the checkpoint, then the file loses its second half.
    const writer = new Database(db);
    for (let i = 0; i < 20; i++) writer.prepare("UPDATE agents SET heartbeat_seq = heartbeat_seq + 1 WHERE name = 'idle-1'").run();
    truncateSync(db, Math.floor(statSync(db).size / 2));
    const r = cli(['db-check', '--full'], { db });
    writer.close();
    raw.close();
    expect(r.code).toBe(4);
    expect(r.stdout).toMatch(/FAIL {2}read: the file is \d+ bytes, shorter than the \d+ pages of \d+ bytes its header records: it was truncated; restore it from a backup/);
  });

  it('finds rows that break the state model; --fix backs up first, repairs them with events', () => {
    const db = tempDb();
    fleet(db, 2);
    cli(['register', 'never-beat'], { db });
    const raw = new Database(db);
    raw.exec("UPDATE agents SET state = 'active', state_since = updated_at WHERE name = 'never-beat'");
    raw.exec("UPDATE agents SET last_heartbeat_at = last_heartbeat_at + 3600000 WHERE name = 'agent-0'");
    raw.close();
    const r = cli(['db-check'], { db });
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/state model: 1 agent\(s\) active or error without any heartbeat/);
    expect(r.stdout).toMatch(/clock skew: 1 agent\(s\) with heartbeats in the future: agent-0/);
    const fix = cli(['db-check', '--fix'], { db });
    expect(fix.stdout).toMatch(/fixed: backed up to .*\.backup-/);
    expect(fix.stdout).toMatch(/fixed: repaired: 1 agent\(s\) active or error without any heartbeat/);
    expect(fix.stdout).toMatch(/state model: every row fits/);
    expect(fix.code).toBe(1); // the clock skew remains: --fix does not invent timestamps
    const backup = readdirSync(dirname(db)).find((f) => f.includes('.backup-'));
    expect(cli(['db-check'], { db: join(dirname(db), backup!) }).stdout).toMatch(/active or error without any heartbeat/);
    const h = JSON.parse(cli(['history', 'never-beat', '--json'], { db }).stdout);
    expect(h.at(-1)).toMatchObject({ toState: 'initializing', reason: 'repaired by db-check: never beat' });
  });

  it('reports a stale lock of a dead process, and --fix removes it; a holder on another host is never judged dead', async () => {
    const db = tempDb();
    fleet(db, 1);
    const lockDir = `${db}.monitor.lock`;
    // A real holder of the monitor lock, killed with SIGKILL: its lock and owner file stay behind.
    const holder = start(process.execPath, [fixture('hold-lock.mjs'), db, 'monitor', '2000']);
    await waitFor(() => holder.output().includes('locked'), 'the holder to lock');
    holder.kill('SIGKILL');
    await exited(holder);
    expect(existsSync(lockDir)).toBe(true);
    const ownerFile = `${db}.monitor.owner`;
    const owner = JSON.parse(readFileSync(ownerFile, 'utf8'));
    expect(owner).toMatchObject({ pid: holder.pid, host: hostname() });
    // The same pid on another host (another machine, or a container with its own pids) cannot be checked from here:
    // no second host runs here, so its owner file says it was taken elsewhere.
    writeFileSync(ownerFile, JSON.stringify({ ...owner, host: 'elsewhere' }));
    const remote = cli(['db-check'], { db });
    expect(remote.stdout).toMatch(new RegExp(`monitor lock: held by pid ${holder.pid}, refreshed \\d+m?s ago`));
    expect(remote.stdout).not.toMatch(/monitor lock.*stale/);
    expect(cli(['db-check', '--fix'], { db }).stdout).not.toMatch(/removed the stale monitor lock/);
    expect(existsSync(lockDir)).toBe(true);
    writeFileSync(ownerFile, JSON.stringify(owner));
    const r = cli(['db-check'], { db });
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`monitor lock: held by pid ${holder.pid} \\(that process is gone\\).*stale`));
    const fix = cli(['db-check', '--fix'], { db });
    expect(fix.stdout).toMatch(/removed the stale monitor lock/);
    expect(fix.code).toBe(0);
    expect(existsSync(lockDir)).toBe(false);
  });

  it('a missing database is a problem, not a crash (one line on stderr, nothing created)', () => {
    const r = cli(['db-check'], { db: tempDb() });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/does not exist \(create it with 'agentctl init/);
  });
});

describe('db-check --fix and a dead lock holder', () => {
  it('takes over the maintenance lock of a holder killed with SIGKILL at once (proven dead on this host), and says so', async () => {
    const { start, exited, waitFor, ROOT } = await import('./helpers.js');
    const db = tempDb();
    fleet(db, 1);
    const holder = start(process.execPath, [join(ROOT, 'test/fixtures/hold-lock.mjs'), db, 'maintenance', '2000']);
    await waitFor(() => holder.output().includes('locked'), 'the holder to lock');
    const busy = cli(['db-check', '--fix'], { db, env: { AGENTCTL_LOCK_STALE: '2s' } });
    expect(busy.code).toBe(1);
    expect(busy.stderr).toMatch(/another agentctl maintenance is running/);
    holder.kill('SIGKILL');
    await exited(holder);
    // A stale period far beyond the test: only the proof that the holder is gone can let --fix in.
    const fix = cli(['db-check', '--fix'], { db, env: { AGENTCTL_LOCK_STALE: '1h' } });
    expect(fix.stdout).toMatch(new RegExp(`fixed: took over the maintenance lock of pid ${holder.pid}, which died holding it`));
    expect(fix.code).toBe(0);
  });
});

describe('db-check and the health loop', () => {
  it("reports the loop's last pass, and a loop that stopped passing as a problem", () => {
    const db = tempDb();
    fleet(db, 1);
    expect(cli(['db-check'], { db }).stdout).toMatch(/health loop: no health loop has run/);
    expect(cli(['monitor', '--once', '--every', '1m'], { db }).code).toBe(0);
    const ok = cli(['db-check'], { db });
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/ok {4}health loop: last pass \d+m?s ago by pid \d+/);
    // The loops seen, from health_loops: this one, on this host.
    expect(ok.stdout).toMatch(new RegExp(`1 health loop seen: pid \\d+ on ${hostname().replace(/[.]/g, '\\.')} \\(passing, last pass`));
    const raw = new Database(db);
    raw.prepare('UPDATE monitor_state SET last_pass_at = last_pass_at - 3600000').run();
    raw.prepare('UPDATE health_loops SET last_pass_at = last_pass_at - 3600000').run();
    raw.close();
    const late = cli(['db-check'], { db });
    expect(late.code).toBe(1);
    expect(late.stdout).toMatch(/FAIL {2}health loop: last pass 1h ago.*is 'agentctl monitor' running\?/);
  });
});
