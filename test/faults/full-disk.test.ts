import { describe, expect, it, type TestContext } from 'vitest';
import Database from 'better-sqlite3';
import { spawnSync } from 'node:child_process';
import { closeSync, ftruncateSync, fstatSync, openSync, readdirSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { cli, exited, fileHash, startCli, tempDir, waitFor } from '../helpers.js';

// A full disk, for real: a small tmpfs mounted for the test (we are root), filled with a file until ENOSPC.

/** Mounts a tmpfs of `size` on a fresh directory and runs `fn` in it; unmounts after, whatever happens. */
async function onSmallDisk(ctx: TestContext, size: string, fn: (dir: string) => Promise<void> | void): Promise<void> {
  if (process.getuid?.() !== 0) ctx.skip('not root: cannot mount a small tmpfs to fill');
  const dir = tempDir();
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0755`, 'tmpfs', dir], { encoding: 'utf8' });
  if (m.status !== 0) ctx.skip(`mounting a tmpfs was refused (${(m.stderr || m.error?.message || '').trim()}): cannot fill a disk here`);
  try {
    await fn(dir);
  } finally {
    if (spawnSync('umount', [dir]).status !== 0) spawnSync('umount', ['-l', dir]);
  }
}

/** A database of about 1.5 MB: agent a and 1,000 old events of 1 kB, all checkpointed into the main file. */
function databaseWithHistory(dir: string): string {
  const db = join(dir, 'x.db');
  expect(cli(['heartbeat', 'a'], { db }).code).toBe(0);
  const raw = new Database(db);
  const insert = raw.prepare("INSERT INTO events (agent_id, agent_name, at, to_state, reason) VALUES (1, 'a', ?, 'active', ?)");
  raw.transaction(() => {
    for (let i = 0; i < 1000; i++) insert.run(1_700_000_000_000 + i, 'r'.repeat(1000));
  })();
  raw.pragma('wal_checkpoint(TRUNCATE)');
  raw.close();
  return db;
}

/** Fills the filesystem of `dir` with a file until ENOSPC, then gives back `leaveBytes`. */
function fill(dir: string, leaveBytes = 0): void {
  const fd = openSync(join(dir, 'filler'), 'w');
  const chunk = Buffer.alloc(64 * 1024, 1);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  }
  // A 64 kB chunk may not have fitted: top up with single pages.
  try {
    for (;;) writeSync(fd, chunk, 0, 4096);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  }
  if (leaveBytes) ftruncateSync(fd, Math.max(0, fstatSync(fd).size - leaveBytes));
  closeSync(fd);
}

const eventCount = (db: string) => {
  const raw = new Database(db, { readonly: true });
  try {
    return (raw.prepare('SELECT COUNT(*) AS n FROM events').get() as { n: number }).n;
  } finally {
    raw.close();
  }
};

/** Everything in `dir` that looks like a backup or a leftover of one. */
const backupsIn = (dir: string) => readdirSync(dir).filter((f) => f.includes('.backup-'));
const leftoversIn = (dir: string) => readdirSync(dir).filter((f) => f.includes('fix-tmp'));

/** A backup passes quick_check as agentctl's database and holds every event of the original. */
function expectWholeCopy(backup: string, db: string): void {
  expect(cli(['db-check'], { db: backup }).stdout).toMatch(/ok {4}application_id: agentctl[\s\S]*ok {4}quick_check: ok/);
  expect(eventCount(backup)).toBe(eventCount(db));
}

function expectDiskFullLine(r: { code: number | null; stderr: string }, what: string): void {
  expect(r.code, `${what}: ${r.stderr}`).toBe(1);
  expect(r.stderr.trim().split('\n'), `${what}: one line`).toHaveLength(1);
  expect(r.stderr, what).toMatch(/the disk is full/);
  expect(r.stderr, what).toMatch(/[Ff]ree (at least \d+ MB|space) on the filesystem of /);
  expect(r.stderr, what).not.toMatch(/unexpected error/);
}

describe('fault: a full disk', () => {
  it('completely full: heartbeat, cleanup and db-check --fix say so in one line (exit 1), write nothing, leave no backup', async (ctx) => {
    await onSmallDisk(ctx, '8m', (dir) => {
      const db = databaseWithHistory(dir);
      const before = fileHash(db);
      fill(dir);
      expectDiskFullLine(cli(['heartbeat', 'a'], { db }), 'heartbeat');
      const cleanup = cli(['cleanup', '--events-older-than', '1s'], { db });
      expectDiskFullLine(cleanup, 'cleanup');
      expect(cleanup.stderr).toMatch(/deleting rows needs free space too/);
      expectDiskFullLine(cli(['db-check', '--fix'], { db }), 'db-check --fix');
      expect(backupsIn(dir)).toEqual([]);
      expect(leftoversIn(dir)).toEqual([]);
      expect(fileHash(db)).toBe(before);
    });
  });

  it('room for a heartbeat but not for a delete or a backup: cleanup and --fix fail cleanly; with space freed, --fix makes one verified backup', async (ctx) => {
    await onSmallDisk(ctx, '8m', (dir) => {
      const db = databaseWithHistory(dir);
      fill(dir, 300 * 1024);
      expect(cli(['heartbeat', 'a'], { db }).code).toBe(0);
      const cleanup = cli(['cleanup', '--events-older-than', '1s'], { db });
      expectDiskFullLine(cleanup, 'cleanup');
      expect(eventCount(db)).toBeGreaterThanOrEqual(1000);
      const fix = cli(['db-check', '--fix'], { db });
      expectDiskFullLine(fix, 'db-check --fix');
      expect(fix.stderr).toMatch(/cannot back up .*x\.db before repairing it: the disk is full; nothing was changed/);
      expect(backupsIn(dir)).toEqual([]);
      expect(leftoversIn(dir)).toEqual([]);

      rmSync(join(dir, 'filler'));
      const ok = cli(['db-check', '--fix'], { db });
      expect(ok.code, ok.stderr).toBe(0);
      expect(ok.stdout).toMatch(/fixed: backed up to .*\.backup-\d{8}T\d{6}Z\.db \(verified with quick_check\)/);
      const backups = backupsIn(dir);
      expect(backups).toHaveLength(1);
      expectWholeCopy(join(dir, backups[0]!), db);
      expect(leftoversIn(dir)).toEqual([]);
    });
  });
});

describe('fault: db-check --fix killed during its backup', () => {
  it('leaves nothing that looks like a backup; the next --fix takes the dead lock over at once and cleans up', async () => {
    const dir = tempDir();
    const db = join(dir, 'x.db');
    expect(cli(['heartbeat', 'a'], { db }).code).toBe(0);
    // About 150 MB, so that the copy takes long enough to be caught in the middle.
    const raw = new Database(db);
    const insert = raw.prepare("INSERT INTO events (agent_id, agent_name, at, to_state, reason) VALUES (1, 'a', ?, 'active', ?)");
    const pad = 'r'.repeat(1000);
    raw.transaction(() => {
      for (let i = 0; i < 150_000; i++) insert.run(1_700_000_000_000 + i, pad);
    })();
    raw.pragma('wal_checkpoint(TRUNCATE)');
    raw.close();
    const original = statSync(db).size;

    const fix = startCli(['db-check', '--fix'], { db });
    // Whatever it writes the copy under, wait until that file has started to grow, then kill the process.
    const growing = () =>
      readdirSync(dir)
        .filter((f) => f.includes('.backup-') || f.includes('fix-tmp'))
        .some((f) => {
          const p = join(dir, f);
          const inner = statSync(p).isDirectory() ? readdirSync(p).map((g) => join(p, g)) : [p];
          return inner.some((q) => {
            try {
              return statSync(q).size > 0;
            } catch {
              return false;
            }
          });
        });
    await waitFor(growing, 'the backup copy to start', 60_000, 5);
    fix.kill('SIGKILL');
    await exited(fix);
    // It was caught in the middle: its copy is incomplete and nothing bears a backup's name.
    expect(backupsIn(dir), 'no file named as a backup after the kill').toEqual([]);
    expect(leftoversIn(dir).length).toBe(1);

    // The dead holder's maintenance lock is taken over at once (a stale period far beyond the test), and the
    // interrupted copy is removed.
    const again = cli(['db-check', '--fix'], { db, env: { AGENTCTL_LOCK_STALE: '1h' } });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(new RegExp(`fixed: took over the maintenance lock of pid ${fix.pid}, which died holding it`));
    expect(again.stdout).toMatch(/fixed: removed .*fix-tmp-\w+, left by an interrupted backup/);
    expect(leftoversIn(dir)).toEqual([]);
    const backups = backupsIn(dir);
    expect(backups).toHaveLength(1);
    expect(statSync(join(dir, backups[0]!)).size).toBeGreaterThan(original / 2);
    expectWholeCopy(join(dir, backups[0]!), db);
  }, 180_000);
});
