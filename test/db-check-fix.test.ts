import { describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { existsSync, statSync } from 'node:fs';
import { openStore } from '../src/store/store.js';
import { cli, cliJson, start, tempDb, waitFor } from './helpers.js';

const HOUR = 3_600_000;
const lineOf = (out: string, check: string) => out.split('\n').find((l) => l.includes(` ${check}:`)) ?? `(no ${check} line in:\n${out})`;

/** Writes to the file as a foreign writer could have (the sqlite3 shell, a script), bypassing agentctl. */
function raw(db: string, fn: (d: Database.Database) => void): void {
  const d = new Database(db);
  try {
    fn(d);
  } finally {
    d.close();
  }
}

describe('db-check --fix repairs the rows that break the state model', () => {
  it('a deregistered agent not offline, a maintenance end outside maintenance, work executing for an offline agent, a state that begins in the future', () => {
    const db = tempDb();
    for (const n of ['dereg', 'maint', 'dead', 'future', 'fine']) cli(['heartbeat', n], { db });
    cli(['send', 'dead', '--', 'job'], { db });
    cli(['set-status', 'dead', 'offline'], { db });
    raw(db, (d) => {
      d.prepare("UPDATE agents SET deregistered_at = ? WHERE name = 'dereg'").run(Date.now());
      d.prepare("UPDATE agents SET maintenance_until = ? WHERE name = 'maint'").run(Date.now() + HOUR);
      d.prepare("UPDATE commands SET state = 'executing', claim_token = 't', claimed_by_incarnation = 1, claimed_at = ? WHERE payload = 'job'").run(Date.now());
      d.prepare("UPDATE agents SET state_since = ? WHERE name = 'future'").run(Date.now() + 10 * HOUR);
    });
    const check = cli(['db-check'], { db });
    expect(check.code).toBe(1);
    const model = lineOf(check.stdout, 'state model');
    for (const what of ['1 deregistered agent(s) not offline', '1 agent(s) with a maintenance end but not in maintenance', '1 command(s) executing for agents that are offline or failed', '1 agent(s) whose state began in the future']) {
      expect(model).toContain(what);
    }
    const fix = cli(['db-check', '--fix'], { db });
    expect(fix.code, fix.stdout).toBe(0);
    expect(fix.stdout).toMatch(/fixed: repaired: 1 deregistered agent\(s\) not offline/);
    expect(lineOf(fix.stdout, 'state model')).toMatch(/every row fits/);
    raw(db, (d) => {
      expect(d.prepare("SELECT state, state_reason FROM agents WHERE name = 'dereg'").get()).toEqual({ state: 'offline', state_reason: 'repaired by db-check: deregistered' });
      expect(d.prepare("SELECT maintenance_until FROM agents WHERE name = 'maint'").pluck().get()).toBeNull();
      expect(d.prepare("SELECT state, error FROM commands WHERE payload = 'job'").get()).toEqual({ state: 'cancelled', error: 'cancelled by db-check: agent offline' });
      expect(d.prepare("SELECT state_since FROM agents WHERE name = 'future'").pluck().get()).toBeLessThanOrEqual(Date.now());
    });
    expect(cliJson(['status', 'fine'], { db }).agents[0].state).toBe('active');
    expect(cli(['db-check'], { db }).code).toBe(0);
  });
});

describe('db-check --fix and the journal', () => {
  it('switches a database in rollback mode to WAL', () => {
    const db = tempDb();
    cli(['heartbeat', 'a'], { db });
    raw(db, (d) => {
      d.pragma('wal_checkpoint(TRUNCATE)');
      d.pragma('journal_mode = DELETE');
    });
    const check = cli(['db-check'], { db });
    expect(check.code).toBe(1);
    expect(lineOf(check.stdout, 'journal_mode')).toMatch(/FAIL.*delete/);
    raw(db, (d) => expect(d.pragma('journal_mode', { simple: true })).toBe('delete')); // checking changed nothing
    const fix = cli(['db-check', '--fix'], { db });
    expect(fix.code, fix.stdout).toBe(0);
    expect(lineOf(fix.stdout, 'journal_mode')).toMatch(/ok.*wal/);
    raw(db, (d) => expect(d.pragma('journal_mode', { simple: true })).toBe('wal'));
  });

  it('checkpoints a WAL that fell behind (a reader held it back) and truncates it', async () => {
    const db = tempDb();
    cli(['heartbeat', 'w'], { db });
    // A long-lived reader: its open read transaction stops every checkpoint from getting past it.
    const reader = start(process.execPath, [
      '-e',
      "const D = require('better-sqlite3'); const d = new D(process.argv[1]); d.exec('BEGIN'); d.prepare('SELECT COUNT(*) FROM agents').get(); console.log('reading'); setInterval(() => {}, 1000);",
      db,
    ]);
    await waitFor(() => reader.output().includes('reading'), 'the reader to hold its snapshot');
    const s = await openStore({ path: db });
    try {
      // About 20 MB of WAL: more than 4× the auto-checkpoint size.
      for (let i = 0; i < 5000; i++) await s.heartbeat({ name: `w-${i % 50}`, message: 'x'.repeat(1000) }, Date.now());
    } finally {
      await s.close();
    }
    const check = cli(['db-check'], { db });
    expect(lineOf(check.stdout, 'wal')).toMatch(/FAIL.*checkpoints are not keeping up/);
    expect(check.code).toBe(1);
    reader.kill('SIGKILL');
    await new Promise((r) => reader.once('exit', r));
    // Another connection stays open (reading nothing): --fix's connection is not the last one, so closing it does not
    // checkpoint by itself; what empties the WAL is the fix's own truncating checkpoint.
    const idle = new Database(db);
    idle.prepare('SELECT COUNT(*) FROM agents').get(); // opens the WAL index; the read then ends
    try {
      const fix = cli(['db-check', '--fix'], { db });
      expect(fix.stdout).toMatch(/fixed: checkpointed and truncated the WAL/);
      expect(existsSync(`${db}-wal`) ? statSync(`${db}-wal`).size : 0).toBe(0);
      expect(lineOf(fix.stdout, 'wal')).toMatch(/ok/);
      expect(fix.code, fix.stdout).toBe(0);
    } finally {
      idle.close();
    }
  }, 120_000);
});

describe('db-check and foreign keys', () => {
  it('reports rows that point at missing rows (exit 1), and --fix deletes nothing to hide them', () => {
    const db = tempDb();
    cli(['heartbeat', 'a'], { db });
    raw(db, (d) => {
      d.pragma('foreign_keys = OFF');
      d.prepare("INSERT INTO commands (agent_id, payload, state, created_at) VALUES (9999, 'orphan', 'queued', ?)").run(Date.now());
    });
    const check = cli(['db-check'], { db });
    expect(check.code).toBe(1);
    expect(lineOf(check.stdout, 'foreign_key_check')).toMatch(/FAIL.*1 rows point at missing rows/);
    const fix = cli(['db-check', '--fix'], { db });
    expect(fix.code).toBe(1);
    expect(lineOf(fix.stdout, 'foreign_key_check')).toMatch(/FAIL/);
    raw(db, (d) => expect(d.prepare("SELECT COUNT(*) FROM commands WHERE payload = 'orphan'").pluck().get()).toBe(1));
  });
});
