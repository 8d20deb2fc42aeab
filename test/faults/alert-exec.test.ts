import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { cli, fixture, sleep, tempDb, tempDir, waitFor, withStore } from '../helpers.js';
import { beatOnce, cliAsync } from '../receiver.js';

/** Whether `pid` is a live process (a zombie waiting for its reaper is dead). */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** The pids a command wrote to `file`, one a line; each is killed after the test if still there. */
function pidsIn(file: string, cleanup: number[]): number[] {
  const pids = existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean).map(Number) : [];
  cleanup.push(...pids);
  return pids;
}

function killAll(pids: number[]): void {
  for (const p of pids) {
    try {
      if (alive(p)) process.kill(p, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

const deliveries = async (db: string) =>
  await withStore(db, (s) => s.db.prepare('SELECT status, last_error FROM alert_deliveries ORDER BY alert_id').all() as { status: string; last_error: string | null }[]);

/** A fresh database with one alert about to be queued: a first pass, then an agent offline by its clock. */
async function oneAlertDue(db: string): Promise<void> {
  cli(['monitor', '--once'], { db });
  await beatOnce(db, 'w', { intervalMs: 50, staleMultiplier: 1, offlineAfterMs: 100 });
  await sleep(150);
}

describe('fault: alert commands that leave children, and text an environment cannot hold', () => {
  it('a command that exits 0 leaving a child that holds its output is bounded by --alert-timeout; the child is killed; the delivery counts', async () => {
    const db = tempDb();
    const pidFile = join(tempDir(), 'pids');
    const cleanup: number[] = [];
    try {
      await oneAlertDue(db);
      const timeoutMs = 2000;
      const t0 = performance.now();
      const run = await cliAsync(['monitor', '--once', '--alert-exec', `/bin/sh -c 'sleep 15 & echo $! > ${pidFile}; exit 0'`, '--alert-timeout', `${timeoutMs / 1000}s`], { db });
      const tookMs = performance.now() - t0;
      expect(run.code).toBe(0);
      const [sleeper] = pidsIn(pidFile, cleanup);
      expect(sleeper).toBeGreaterThan(1);
      // Bounded by the timeout (with room for a busy machine), not by the 15 s child.
      expect(tookMs).toBeLessThan(4 * timeoutMs);
      await waitFor(() => !alive(sleeper!), 'the leftover child to be gone', 5000);
      expect(run.stderr).toMatch(/exited 0 but left processes running; killed them \(timeout 2000ms\)/);
      expect(await deliveries(db)).toMatchObject([{ status: 'sent' }]);
    } finally {
      killAll(cleanup);
    }
  }, 60_000);

  it('a command that exits 0 while a child finishes its sending is given until the timeout: the child completes', async () => {
    const db = tempDb();
    const done = join(tempDir(), 'sent');
    await oneAlertDue(db);
    const run = await cliAsync(['monitor', '--once', '--alert-exec', `/bin/sh -c '(sleep 0.5; echo sent > ${done}) & exit 0'`, '--alert-timeout', '20s'], { db });
    expect(run.code).toBe(0);
    expect(readFileSync(done, 'utf8')).toBe('sent\n');
    expect(run.stderr).not.toMatch(/left processes running/);
    expect(await deliveries(db)).toMatchObject([{ status: 'sent' }]);
  }, 60_000);

  it('a command that does not finish in time is killed with its whole process group, and the alert stays pending', async () => {
    const db = tempDb();
    const pidFile = join(tempDir(), 'pids');
    const cleanup: number[] = [];
    try {
      await oneAlertDue(db);
      const timeoutMs = 2000;
      const t0 = performance.now();
      const run = await cliAsync(['monitor', '--once', '--alert-exec', `/bin/sh -c 'sleep 20 & echo $! >> ${pidFile}; sleep 21 & echo $! >> ${pidFile}; wait'`, '--alert-timeout', `${timeoutMs / 1000}s`, '--alert-retries', '0'], { db });
      const tookMs = performance.now() - t0;
      expect(run.code).toBe(0);
      const pids = pidsIn(pidFile, cleanup);
      expect(pids).toHaveLength(2);
      expect(tookMs).toBeLessThan(4 * timeoutMs);
      await waitFor(() => pids.every((p) => !alive(p)), 'both children to be gone', 5000);
      expect(run.stderr).toMatch(/not delivered to exec:.*killed: timeout 2000ms.*will retry on the next pass/);
      expect(await deliveries(db)).toMatchObject([{ status: 'pending' }]);
    } finally {
      killAll(cleanup);
    }
  }, 60_000);

  it('a reason with a NUL from a foreign writer reaches the command: replaced in its environment, exact in the JSON on stdin', async () => {
    const db = tempDb();
    const out = join(tempDir(), 'alerts.ndjson');
    cli(['monitor', '--once'], { db });
    cli(['register', 'foreign', '--interval', '1h'], { db });
    // A foreign writer (Python's sqlite3, as state_database.md invites) records a state change with a NUL in its reason.
    const py = spawnSync('python3', ['-c', `
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1])
now = int(time.time() * 1000)
c.execute("UPDATE agents SET state = 'offline', state_since = ?, state_reason = ?, state_evidence = '{}' WHERE name = 'foreign'", (now, "disk\\x00full\\x1b[2J"))
c.commit()
`, db], { encoding: 'utf8' });
    if (py.error || py.status !== 0) throw new Error(`python3 could not write the row: ${py.error?.message ?? py.stderr}`);
    const cmd = `'${process.execPath}' '${fixture('alert-sink.mjs')}' '${out}'`;
    const run = await cliAsync(['monitor', '--once', '--alert-exec', cmd], { db });
    expect(run.code).toBe(0);
    expect(run.stderr).not.toMatch(/not delivered/);
    const [got] = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(got.payload.reason).toBe('disk\u0000full\u001b[2J');
    expect(got.env.AGENTCTL_AGENT_REASON).toBe('disk full [2J');
    expect(got.env.AGENTCTL_ALERT_MESSAGE).toContain('disk full [2J');
    expect(got.env.AGENTCTL_ALERT_MESSAGE).not.toMatch(/[\u0000-\u001f]/);
    expect(await deliveries(db)).toMatchObject([{ status: 'sent' }]);
  }, 60_000);
});
