import { describe, expect, it } from 'vitest';
import { chmodSync, existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { cli, cliAsNobody, fileHash, tempDir } from '../helpers.js';

// Permission bits stop nothing for root: the CLI runs as nobody when we are root (see cliAsNobody).
const cliAsUser = (args: string[]) => cliAsNobody(args);

function fleetIn(dir: string): string {
  const db = join(dir, 'agents.db');
  cli(['heartbeat', 'a'], { db });
  cli(['heartbeat', 'b', '--status', 'error', '--message', 'boom'], { db });
  return db;
}

describe('fault: read-only database and read-only directory', () => {
  it('a read-only database: writes fail with one clear line and exit 1, reads work, nothing changes', () => {
    const dir = tempDir();
    chmodSync(dir, 0o777);
    const db = fleetIn(dir);
    chmodSync(db, 0o444);
    const before = fileHash(db);
    for (const args of [['heartbeat', 'a'], ['register', 'c'], ['set-status', 'a', 'offline'], ['deregister', 'a']]) {
      const r = cliAsUser(['--db', db, ...args]);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr).toMatch(/^agentctl: database .* is read-only .*check the permissions/);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    }
    const status = cliAsUser(['--db', db, 'status', '--json']);
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout).agents.map((a: any) => a.name)).toEqual(['a', 'b']);
    expect(cliAsUser(['--db', db, 'check']).code).toBe(1); // b reports an error: WARNING
    expect(cliAsUser(['--db', db, 'db-check']).code).toBe(0);
    expect(fileHash(db)).toBe(before);
  });

  it('a read-only directory: a new database cannot be created (exit 1), an existing one is reported, not damaged', () => {
    const dir = tempDir();
    chmodSync(dir, 0o777);
    const db = fleetIn(dir);
    chmodSync(db, 0o666);
    chmodSync(dir, 0o555);
    const fresh = cliAsUser(['--db', join(dir, 'new.db'), 'heartbeat', 'x']);
    expect(fresh.code).toBe(1);
    expect(fresh.stderr).toMatch(/cannot create database .*new\.db: directory .* is not writable/);
    expect(existsSync(join(dir, 'new.db'))).toBe(false);
    // WAL needs its -wal and -shm files beside the database; in a read-only directory they cannot be made.
    expect(readdirSync(dir).filter((f) => f.endsWith('-wal') || f.endsWith('-shm'))).toEqual([]);
    const beat = cliAsUser(['--db', db, 'heartbeat', 'a']);
    expect(beat.code).toBe(1);
    expect(beat.stderr.trim().split('\n')).toHaveLength(1);
    expect(beat.stderr).toMatch(/^agentctl: (database .* is read-only|cannot open database)/);
    chmodSync(dir, 0o755);
    expect(cli(['db-check', '--full'], { db }).code).toBe(0);
    expect(readdirSync(dir).filter((f) => f.includes('recovered'))).toEqual([]);
  });
});
