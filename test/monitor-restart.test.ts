import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { ACTS, cli, cliJson, exited, FIXTURES, killGroupAfter, startCli, tempDb, waitFor } from './helpers.js';

const node = process.execPath;
// Undefined until the wrapper has created the database (a reader never creates it: status exits 1 until then).
const status = (db: string, name: string) => {
  const r = cli(['status', '--all', '--json'], { db });
  return r.code === 0 ? JSON.parse(r.stdout).agents.find((a: any) => a.name === name) : undefined;
};

describe('monitor --restart-stale', () => {
  it('restarts an agent whose wrapper and process were killed, by its launch command, and counts it', async () => {
    const db = tempDb();
    const run = startCli(['run', '--name', 'phoenix', '--interval', '100ms', '--', node, join(FIXTURES, 'agent-hang.mjs')], { db });
    await waitFor(() => status(db, 'phoenix')?.state === 'active', 'the agent to beat');
    const before = status(db, 'phoenix');
    killGroupAfter(before.pid);
    // Kill the wrapper first (so it cannot report its child's exit), then the agent: only the dead pid tells.
    run.kill('SIGKILL');
    await exited(run);
    process.kill(before.pid, 'SIGKILL');
    const monitor = startCli(['monitor', '--every', '200ms', '--restart-stale'], { db, env: ACTS });
    try {
      await waitFor(() => (status(db, 'phoenix')?.restartCount ?? 0) >= 1, 'the restart').catch((err) => {
        throw new Error(`${err.message}; monitor said: ${monitor.errors().slice(-1500)}`);
      });
      const after = status(db, 'phoenix');
      killGroupAfter(after.supervisorPid);
      killGroupAfter(after.pid);
      await waitFor(() => status(db, 'phoenix')?.state === 'active', 'the new incarnation to beat');
      expect(status(db, 'phoenix').incarnation).toBeGreaterThan(before.incarnation);
      const events = cliJson(['history', 'phoenix'], { db }) as any[];
      const crash = events.find((e) => e.toState === 'offline' && e.evidence?.rule === 'pid');
      expect(crash).toBeTruthy();
      expect(events.findIndex((e) => e.reason === 'restarted by agentctl restart' || e.evidence?.rule === 'restart')).toBeGreaterThan(events.indexOf(crash));
    } finally {
      monitor.kill('SIGTERM');
      expect((await exited(monitor)).code).toBe(0);
      const now = status(db, 'phoenix');
      killGroupAfter(now?.supervisorPid);
      killGroupAfter(now?.pid);
    }
    expect(monitor.errors()).toMatch(/restart phoenix: restarted/);
  });

  it('leaves alone an agent that said goodbye', async () => {
    const db = tempDb();
    cli(['register', 'polite', '--interval', '100ms', '--', node, '-e', 'setTimeout(() => {}, 60000)'], { db });
    cli(['heartbeat', 'polite'], { db });
    const store = await import('../src/store/store.js');
    const s = await store.openStore({ path: db });
    await s.goodbye('polite', 'done for today', Date.now());
    await s.close();
    const r = cli(['monitor', '--once', '--restart-stale', '--json'], { db, env: ACTS });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout.trim().split('\n').at(-1)!).restarts).toEqual([]);
    expect(status(db, 'polite')).toMatchObject({ state: 'offline', restartCount: 0 });
  });
});
