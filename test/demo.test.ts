import { describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openStore } from '../src/store/store.js';
import { isSameProcess } from '../src/core/process-control.js';
import { exited, startCli, tempDb, tempDir, waitFor } from './helpers.js';

/** Pids of the processes whose command line mentions `text` (other than this test process). */
function processesMentioning(text: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').some((arg) => arg.includes(text))) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** The state of `name` in each frame printed so far (frames start with the demo's header line). */
function statesOf(output: string, name: string): string[] {
  return output
    .split(/^agentctl demo · /m)
    .slice(1)
    .map((frame) => new RegExp(`^${name} {2,}(\\w+)`, 'm').exec(frame)?.[1] ?? 'none');
}

/** Whether `states` shows `wanted` in order (each after the previous one), as successive frames. */
function inOrder(states: string[], wanted: string[]): boolean {
  let i = 0;
  for (const s of states) if (s === wanted[i]) i++;
  return i === wanted.length;
}

/** Whether some frame shows all three agents active. */
function allActive(output: string): boolean {
  const frames = output.split(/^agentctl demo · /m).slice(1);
  return frames.some((f) => ['demo-1', 'demo-2', 'demo-3'].every((n) => new RegExp(`^${n} {2,}active`, 'm').test(f)));
}

/** After the demo: every agent it ran is offline and none of their worker processes is alive. */
function expectAllStopped(db: string): void {
  const store = openStore({ path: db, mode: 'existing' });
  try {
    for (const name of ['demo-1', 'demo-2', 'demo-3']) {
      const a = store.getAgent(name)!;
      expect(a.state, name).toBe('offline');
      expect(a.supervisorPid, name).toBeNull();
      expect(isSameProcess({ pid: a.pid!, startTime: a.pidStartTime }), name).toBe(false);
    }
  } finally {
    store.close();
  }
  expect(processesMentioning(db)).toEqual([]);
}

describe('agentctl demo', () => {
  it('shows three agents active, the killed one offline, then back; ends by itself with exit 0 and no process left', async () => {
    const db = tempDb();
    // 12 s: the kill at 2 s, the restart after its backoff and a frame showing it active again fit with room on a busy machine.
    const demo = startCli(['demo', '--duration', '12s', '--kill-after', '2s', '--restart', '--refresh', '250ms'], { db });
    const { code } = await exited(demo);
    const out = demo.output();
    expect(code, demo.errors()).toBe(0);
    expect(allActive(out)).toBe(true);
    expect(inOrder(statesOf(out, 'demo-2'), ['active', 'offline', 'active'])).toBe(true);
    expect(out).toMatch(/killing demo-2's worker \(pid \d+\) with SIGKILL/);
    expect(out).toMatch(/demo-2 is offline \(killed by SIGKILL\)/);
    expect(out).toMatch(/demo-2 is back/);
    // An explicit --db is the user's: kept, and named in the goodbye.
    expect(out.trim().split('\n').at(-1)).toBe(`agentctl demo: every agent and the health loop stopped; the database is at ${db} (see what happened: agentctl --db ${db} history)`);
    expectAllStopped(db);
  });

  it('SIGINT stops every process it started and exits 0', async () => {
    const db = tempDb();
    const demo = startCli(['demo', '--duration', '10m', '--refresh', '100ms'], { db });
    await waitFor(() => allActive(demo.output()), 'all three agents active', 30_000);
    demo.kill('SIGINT');
    const { code } = await exited(demo);
    expect(code, demo.errors()).toBe(0);
    expect(demo.errors()).toContain('stopping the demo agents and the health loop');
    expectAllStopped(db);
  });

  it('without --db uses a temporary database and removes it afterwards, unless --keep', async () => {
    const tmp = tempDir();
    const gone = startCli(['demo', '--duration', '1s', '--kill-after', '1h'], { env: { TMPDIR: tmp } });
    expect((await exited(gone)).code, gone.errors()).toBe(0);
    expect(gone.output()).toMatch(/^agentctl demo · .*agentctl-demo-\w+[/\\]demo\.db/m);
    expect(gone.output()).toContain('the temporary database is removed');
    expect(readdirSync(tmp)).toEqual([]);

    const kept = startCli(['demo', '--duration', '1s', '--kill-after', '1h', '--keep'], { env: { TMPDIR: tmp } });
    expect((await exited(kept)).code, kept.errors()).toBe(0);
    const [dir] = readdirSync(tmp);
    const db = join(tmp, dir!, 'demo.db');
    expect(existsSync(db)).toBe(true);
    expect(kept.output()).toContain(`the database is at ${db}`);
    expect(processesMentioning(db)).toEqual([]);
  });

  it('refuses --json and bad durations with exit 2, starting nothing', async () => {
    const db = tempDb();
    for (const args of [['demo', '--json'], ['demo', '--kill-after', 'soon']]) {
      const demo = startCli(args, { db });
      expect((await exited(demo)).code).toBe(2);
      expect(demo.errors().trim().split('\n')).toHaveLength(1);
    }
    expect(existsSync(db)).toBe(false);
  });
});
