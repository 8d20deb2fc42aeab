import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { supervise } from '../src/core/supervisor.js';
import { RESTART_BACKOFF } from '../src/core/backoff.js';
import { ACTS, agentRecord, cli, cliJson, exited, fixture, historyOf, startCli, tempDb, tempDir, trackAgent, waitFor } from './helpers.js';

const node = process.execPath;
const restartsOf = (db: string, name: string) => historyOf(db, name).filter((e) => e.evidence?.rule === 'restart' && e.toState === 'initializing');

describe('agentctl run forwards the signals a terminal or a service manager sends', () => {
  for (const sig of ['SIGINT', 'SIGHUP'] as const) {
    it(`${sig} to run reaches the child, which exits; run exits with its code and the event names the signal`, async () => {
      const db = tempDb();
      const run = startCli(['run', '--name', 'fwd', '--interval', '100ms', '--', node, fixture('agent-exit2.mjs')], { db });
      await waitFor(() => run.output().includes('ready') && agentRecord(db, 'fwd')?.state === 'active', 'the agent to be active');
      const a = trackAgent(db, 'fwd')!;
      run.kill(sig);
      const { code } = await exited(run);
      expect(run.output()).toContain(`received ${sig}`);
      expect(code).toBe(2);
      expect(historyOf(db, 'fwd').at(-1)).toMatchObject({ toState: 'offline', reason: 'exited with code 2', evidence: { rule: 'exit', exit_code: 2, forwarded_signal: sig, pid: a.pid } });
    });
  }
});

describe('agentctl run restart policies', () => {
  it("'always' restarts after a clean exit 0 too, and fails once the unstable runs exceed --max-restarts", () => {
    const db = tempDb();
    const r = cli(['run', '--name', 'again', '--restart', 'always', '--max-restarts', '2', '--backoff', '20ms', '--', node, '-e', '0'], { db });
    expect(r.code).toBe(0); // the last run's own code
    const restarts = restartsOf(db, 'again');
    expect(restarts).toHaveLength(2);
    for (const e of restarts) expect(e.evidence).toMatchObject({ policy: 'always', previous_exit_code: 0, previous_signal: null });
    expect(agentRecord(db, 'again')).toMatchObject({ state: 'failed', restartCount: 2 });
    // 'on-failure' after the same clean exit: no restart at all.
    expect(cli(['run', '--name', 'once', '--restart', 'on-failure', '--backoff', '20ms', '--', node, '-e', '0'], { db }).code).toBe(0);
    expect(restartsOf(db, 'once')).toEqual([]);
    expect(agentRecord(db, 'once')).toMatchObject({ state: 'offline', restartCount: 0 });
  });

  it('a run that stayed up past the stable uptime resets the backoff and the count of unstable exits', async () => {
    const db = tempDb();
    const counter = join(tempDir(), 'runs');
    // Run 1 and 2 crash at once; run 3 stays up 5.5 s (past a 5 s stable uptime) and crashes; run 4 exits 0.
    const script =
      "const fs = require('fs'); const f = process.argv[1]; const n = (fs.existsSync(f) ? Number(fs.readFileSync(f, 'utf8')) : 0) + 1;" +
      "fs.writeFileSync(f, String(n)); setTimeout(() => process.exit(n >= 4 ? 0 : 1), n === 3 ? 5500 : 10);";
    const result = await supervise({
      name: 'steady',
      db,
      argv: [node, '-e', script, counter],
      cwd: process.cwd(),
      intervalMs: 1000,
      staleMultiplier: 3,
      offlineAfterMs: 60_000,
      policy: 'on-failure',
      maxRestarts: 2,
      backoff: { ...RESTART_BACKOFF, initialMs: 50, stableAfterMs: 5000 },
    });
    // Without the reset, the third unstable exit would have failed the agent (limit 2) instead of restarting it.
    expect(result).toMatchObject({ exitCode: 0, restarts: 3, failed: false });
    expect(restartsOf(db, 'steady').map((e) => [e.evidence.attempt, e.evidence.backoff_ms])).toEqual([
      [1, 50],
      [2, 75],
      [0, 50], // after a stable run: no unstable exit counted, the first backoff again
    ]);
  }, 60_000);
});

describe('agentctl restart chooses its agents', () => {
  /** Registers NAME with a launch command that runs until signalled. */
  const withLaunch = (db: string, name: string, ...flags: string[]) => expect(cli(['register', name, ...flags, '--', node, fixture('agent-exit2.mjs')], { db }).code).toBe(0);
  const restarted = (out: string) => [...out.matchAll(/^restarted (\S+):/gm)].map((m) => m[1]).sort();

  it('--stale restarts the agents that stopped beating, and only those', async () => {
    const db = tempDb();
    withLaunch(db, 'quiet', '--interval', '1s');
    withLaunch(db, 'busy', '--interval', '1h');
    cli(['heartbeat', 'quiet'], { db });
    cli(['heartbeat', 'busy'], { db });
    await waitFor(() => cliJson(['status', 'quiet'], { db }).agents[0].state === 'stale', 'quiet to be overdue');
    const r = cli(['restart', '--stale', '--grace', '1s'], { db, env: ACTS });
    for (const n of ['quiet', 'busy']) trackAgent(db, n);
    expect(r.code, r.stderr).toBe(0);
    expect(restarted(r.stdout)).toEqual(['quiet']);
    expect(agentRecord(db, 'quiet')!.restartCount).toBe(1);
    expect(agentRecord(db, 'busy')!.restartCount).toBe(0);
  });

  it('--failed restarts the failed agents, and only those', () => {
    const db = tempDb();
    // Failed for real: it crashed more often than its wrapper was allowed to restart it.
    expect(cli(['run', '--name', 'broken', '--restart', 'always', '--max-restarts', '0', '--', node, fixture('agent-crash.mjs'), '10'], { db }).code).toBe(1);
    expect(agentRecord(db, 'broken')!.state).toBe('failed');
    withLaunch(db, 'healthy');
    cli(['heartbeat', 'healthy'], { db });
    const r = cli(['restart', '--failed', '--grace', '1s'], { db, env: ACTS });
    for (const n of ['broken', 'healthy']) trackAgent(db, n);
    expect(r.code, r.stderr).toBe(0);
    expect(restarted(r.stdout)).toEqual(['broken']);
    expect(historyOf(db, 'broken').find((e) => e.reason === 'restarted by agentctl restart')).toMatchObject({ fromState: 'failed', toState: 'initializing' });
    expect(agentRecord(db, 'healthy')!.restartCount).toBe(0);
  });

  it('--all restarts every agent with a launch command, and no other', async () => {
    const db = tempDb();
    withLaunch(db, 'one');
    withLaunch(db, 'two');
    cli(['heartbeat', 'bare'], { db }); // no launch command
    const r = cli(['restart', '--all', '--grace', '1s'], { db, env: ACTS });
    for (const n of ['one', 'two', 'bare']) trackAgent(db, n);
    expect(r.code, r.stderr).toBe(0);
    expect(restarted(r.stdout)).toEqual(['one', 'two']);
    for (const n of ['one', 'two']) await waitFor(() => agentRecord(db, n)?.state === 'active', `${n} to beat under its new wrapper`);
    expect(agentRecord(db, 'bare')!.restartCount).toBe(0);
  });
});
