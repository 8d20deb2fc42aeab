import { describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openStore } from '../src/store/store.js';
import { isSameProcess } from '../src/core/process-control.js';
import type { AgentView } from '../src/core/agents.js';
import { DemoStory } from '../src/cli/demo-story.js';
import { spawnSync } from 'node:child_process';
import { BIN, cli, exited, start, startCli, tempDb, tempDir, waitFor } from './helpers.js';

const hasScript = spawnSync('script', ['--version']).status === 0;
const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

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

/** Pids of `agentctl --db DB demo …` processes (not the agents and the monitor it starts). */
function demoProcesses(db: string): number[] {
  return processesMentioning(db).filter((pid) => {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      return argv[1] === BIN && argv[4] === 'demo';
    } catch {
      return false;
    }
  });
}

/** The lines after the header: each "HH:MM:SS  what changed". */
function changeLines(output: string): string[] {
  return output
    .split('\n')
    .filter((l) => /^\d\d:\d\d:\d\d {2}/.test(l))
    .map((l) => l.slice(10));
}

/** The states `name` went through, as the change lines say them. */
function statesOf(lines: string[], name: string): string[] {
  return lines.flatMap((l) => new RegExp(`^${name} is (\\w+)`).exec(l)?.[1] ?? []);
}

/** Whether `states` shows `wanted` in order (each after the previous one). */
function inOrder(states: string[], wanted: string[]): boolean {
  let i = 0;
  for (const s of states) if (s === wanted[i]) i++;
  return i === wanted.length;
}

const ALL_RUNNING = /^all running: 3 agents beating and the health loop passing/;

/** After the demo: every agent it ran is offline and none of their worker processes is alive. */
async function expectAllStopped(db: string): Promise<void> {
  const store = await openStore({ path: db, mode: 'existing' });
  try {
    for (const name of ['demo-1', 'demo-2', 'demo-3']) {
      const a = (await store.getAgent(name))!;
      expect(a.state, name).toBe('offline');
      expect(a.supervisorPid, name).toBeNull();
      expect(isSameProcess({ pid: a.pid!, startTime: a.pidStartTime }), name).toBe(false);
    }
  } finally {
    await store.close();
  }
  expect(processesMentioning(db)).toEqual([]);
}

describe('agentctl demo', () => {
  it('piped, prints one line per change: all running only once every agent beat and the health loop passed; the kill, offline, back', async () => {
    const db = tempDb();
    // Ended by SIGINT once the story is told, however long a busy machine takes to tell it.
    const demo = startCli(['demo', '--duration', '10m', '--kill-after', '1s', '--restart', '--refresh', '100ms'], { db });
    await waitFor(() => /demo-2 is back/.test(demo.output()), 'demo-2 back after its restart', 120_000);
    demo.kill('SIGINT');
    const { code } = await exited(demo);
    const out = demo.output();
    expect(code, demo.errors()).toBe(0);

    // Changes, not frames: the header once, no status table.
    expect(out.match(/^agentctl demo · /gm)).toHaveLength(1);
    expect(out).toMatch(/^agentctl demo · .* · not a terminal: one line per change$/m);
    expect(out).not.toMatch(/^NAME +STATE/m);
    const lines = changeLines(out);
    expect(lines.filter((l, i) => l === lines[i - 1]), 'lines printed twice in a row').toEqual([]);

    // "all running" comes after every agent's first beat and the first pass of the health loop.
    const running = lines.findIndex((l) => ALL_RUNNING.test(l));
    expect(running, out).toBeGreaterThan(0);
    for (const name of ['demo-1', 'demo-2', 'demo-3']) expect(lines.indexOf(`${name} is active (first heartbeat)`), name).toBeLessThan(running);
    expect(lines.indexOf('the health loop has passed for the first time')).toBeLessThan(running);
    expect(lines.filter((l) => ALL_RUNNING.test(l))).toHaveLength(1);

    expect(inOrder(statesOf(lines, 'demo-2'), ['active', 'offline', 'active'])).toBe(true);
    expect(lines.some((l) => /^killing demo-2's worker \(pid \d+\) with SIGKILL/.test(l))).toBe(true);
    expect(lines).toContain('demo-2 is offline (killed by SIGKILL)');

    // The hint names the database, and runs as written from another terminal.
    const hint = /its history: agentctl (--db \S+ history demo-2)$/m.exec(out);
    expect(hint, out).not.toBeNull();
    const history = cli(hint![1]!.split(' '));
    expect(history.code, history.stderr).toBe(0);
    expect(history.stdout).toMatch(/demo-2 +active → offline +killed by SIGKILL/);
    // An explicit --db is the user's: kept, and named in the goodbye.
    expect(out.trim().split('\n').at(-1)).toBe(`agentctl demo: every agent and the health loop stopped; the database is at ${db} (see what happened: agentctl --db ${db} history)`);
    await expectAllStopped(db);
  });

  it('SIGINT stops every process it started and exits 0', async () => {
    const db = tempDb();
    const demo = startCli(['demo', '--duration', '10m', '--kill-after', '1h', '--refresh', '100ms'], { db });
    await waitFor(() => changeLines(demo.output()).some((l) => ALL_RUNNING.test(l)), 'all three agents running', 60_000);
    demo.kill('SIGINT');
    const { code } = await exited(demo);
    expect(code, demo.errors()).toBe(0);
    expect(demo.errors()).toContain('stopping the demo agents and the health loop');
    await expectAllStopped(db);
  });

  it.skipIf(!hasScript)('on a terminal, redraws the screen; no frame says all running before all three are active', async () => {
    const db = tempDb();
    // script(1) gives the demo a real pseudo-terminal; -e passes its exit code on.
    const command = [process.execPath, BIN, '--db', db, 'demo', '--duration', '10m', '--kill-after', '1h', '--refresh', '100ms'].map(shellQuote).join(' ');
    const demo = start('script', ['-qefc', command, '/dev/null'], { env: { COLUMNS: '160', LINES: '50', NO_COLOR: '1' } });
    await waitFor(() => /all running/.test(demo.output()), 'a frame saying all running', 60_000);
    // SIGINT to the demo itself, as a Ctrl-C would: signalling script(1) would hang up the terminal instead.
    const [pid] = demoProcesses(db);
    expect(pid, 'the demo process').toBeDefined();
    process.kill(pid!, 'SIGINT');
    expect((await exited(demo)).code, demo.errors()).toBe(0);
    const frames = demo.output().split('\x1b[H\x1b[2J').slice(1);
    expect(frames.length).toBeGreaterThan(1);
    const running = frames.filter((f) => f.includes('all running'));
    expect(running.length).toBeGreaterThan(0);
    for (const f of running) {
      for (const name of ['demo-1', 'demo-2', 'demo-3']) expect(f, name).toMatch(new RegExp(`^${name} {2,}active`, 'm'));
      expect(f).toMatch(/is killed next \(in \d+s\)/);
    }
    await expectAllStopped(db);
  });

  it('without --db uses a temporary database and removes it afterwards, unless --keep', async () => {
    const tmp = tempDir();
    const gone = startCli(['demo', '--duration', '1s', '--kill-after', '1h'], { env: { TMPDIR: tmp } });
    expect((await exited(gone)).code, gone.errors()).toBe(0);
    expect(gone.output()).toMatch(/^agentctl demo · .*agentctl-demo-\w+[/\\]demo\.db/m);
    expect(gone.output()).toContain('the temporary database is removed (--keep keeps it)');
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

describe('the demo story', () => {
  const startedAt = 1_000_000;
  const opts = { agents: ['demo-1', 'demo-2', 'demo-3'], victim: 'demo-2', startedAt, killAt: startedAt + 5000, restart: false, backoffMs: 1000, db: '/srv/demo.db', kept: false };
  const beating = (name: string, extra: Partial<AgentView> = {}) =>
    ({ name, state: 'active', startedAt: startedAt + 10, lastHeartbeatAt: startedAt + 20, pid: 4242, pidStartTime: 7, incarnation: 1, stateReason: null, ...extra }) as AgentView;

  it('says all running only when every agent beat since the start and the health loop passed since the start', async () => {
    const now = startedAt + 1000;
    const cases: [AgentView[], number | null][] = [
      [[await beating('demo-2')], now], // one of three listed
      [[await beating('demo-1'), await beating('demo-2'), await beating('demo-3', { state: 'initializing', lastHeartbeatAt: null })], now],
      [[await beating('demo-1'), await beating('demo-2'), await beating('demo-3')], null], // no pass yet
      [[await beating('demo-1'), await beating('demo-2'), await beating('demo-3')], startedAt - 1], // a pass from before the demo (a reused --db)
      [[await beating('demo-1', { startedAt: startedAt - 60_000 }), await beating('demo-2'), await beating('demo-3')], now], // an old incarnation
    ];
    for (const [agents, lastPassAt] of cases) {
      const step = new DemoStory(opts).tick({ agents, lastPassAt }, now);
      expect(step.line, JSON.stringify(agents.map((a) => a.name))).not.toMatch(/all running/);
      expect(step.kill).toBeUndefined();
    }
    const story = new DemoStory(opts);
    const all = [await beating('demo-1'), await beating('demo-2'), await beating('demo-3')];
    expect(story.tick({ agents: all, lastPassAt: now }, now)).toMatchObject({ line: expect.stringMatching(/^all running/), countdown: ' (in 4s)' });
    expect(story.tick({ agents: all, lastPassAt: now }, opts.killAt).kill).toEqual({ pid: 4242, startTime: 7 });
  });

  it('announces all running once before a kill that is already due, and its hint names the database', async () => {
    const story = new DemoStory(opts);
    const all = [await beating('demo-1'), await beating('demo-2'), await beating('demo-3')];
    const late = opts.killAt + 10_000;
    expect(story.tick({ agents: all, lastPassAt: late }, late).kill).toBeUndefined();
    expect(story.tick({ agents: all, lastPassAt: late }, late).kill).toBeDefined();
    const down = story.tick({ agents: [...all.slice(0, 1), await beating('demo-2', { state: 'offline', stateReason: 'killed by SIGKILL' })], lastPassAt: late }, late);
    expect(down.line).toContain('its history: agentctl --db /srv/demo.db history demo-2 while the demo runs (--keep keeps the database afterwards)');
  });
});
