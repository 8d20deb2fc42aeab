import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { openStore } from '../src/store/store.js';
import { restartAgent } from '../src/core/restart.js';
import { nextRestart, restartDelay, policyRestarts } from '../src/core/backoff.js';
import { bootId, hostName, processStartTime } from '../src/core/host.js';
import { ACTS, ON_POSTGRES, agentRecord, cli, cliJson, fixture, killGroupAfter, start, startCli, tempDb, tempDir, trackAgent, waitFor, withStore } from './helpers.js';

const node = process.execPath;
const agent = agentRecord;

/** Alive and not a zombie. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

describe('restart backoff', () => {
  it('grows ×1.5 from 1 s to a 60 s cap, resets after 60 s of uptime, and fails past the limit', () => {
    expect([1, 2, 3, 4].map((n) => restartDelay(n))).toEqual([1000, 1500, 2250, 3375]);
    expect(restartDelay(50)).toBe(60_000);
    expect(nextRestart(3, 5_000, 10)).toEqual({ unstable: 4, action: 'restart', delayMs: 3375 });
    expect(nextRestart(9, 60_000, 10)).toEqual({ unstable: 0, action: 'restart', delayMs: 1000 });
    expect(nextRestart(10, 100, 10)).toMatchObject({ unstable: 11, action: 'fail' });
    expect(policyRestarts('on-failure', { code: 0, signal: null })).toBe(false);
    expect(policyRestarts('on-failure', { code: null, signal: 'SIGKILL' })).toBe(true);
    expect(policyRestarts('always', { code: 0, signal: null })).toBe(true);
    expect(policyRestarts('never', { code: 1, signal: null })).toBe(false);
  });

  it('restartAgent for the health loop waits out the backoff and marks failed past the limit', async () => {
    const db = tempDb();
    const logDir = join(tempDir(), 'logs');
    const T = 1_800_000_000_000;
    await withStore(db, async (s) => {
      await s.register({ name: 'b', launch: { argv: [node, '-e', '0'], cwd: '/' } }, T);
      await s.sql.run("UPDATE agents SET restart_attempts = 2, last_restart_at = ? WHERE name = 'b'", [T]);
      await s.register({ name: 'f', launch: { argv: [node, '-e', '0'], cwd: '/' } }, T);
      await s.sql.run("UPDATE agents SET restart_attempts = 3, max_restarts = 3, last_restart_at = ? WHERE name = 'f'", [T]);
    });
    const s = await openStore({ path: db });
    try {
      const waiting = await restartAgent(s, 'b', { logDir, respectBackoff: true, allowSharedDb: 'AGENTCTL_ALLOW_SHARED_DB' in ACTS, now: () => T + 1000 });
      expect(waiting).toMatchObject({ action: 'waiting', retryAt: T + 2250 });
      const failed = await restartAgent(s, 'f', { logDir, respectBackoff: true, allowSharedDb: 'AGENTCTL_ALLOW_SHARED_DB' in ACTS, now: () => T + 100_000 });
      expect(failed.action).toBe('failed');
      expect(await s.getAgent('f')).toMatchObject({ state: 'failed', stateReason: 'restart attempts exhausted: 4 unstable runs in a row' });
      const plan = await restartAgent(s, 'b', { logDir, respectBackoff: true, dryRun: true, allowSharedDb: 'AGENTCTL_ALLOW_SHARED_DB' in ACTS, now: () => T + 3000 });
      expect(plan.action).toBe('would-restart');
    } finally {
      await s.close();
    }
  });
});

describe('agentctl restart', () => {
  it('kills the whole process group of a hung agent after the grace and brings it back', async () => {
    const db = tempDb();
    // Logs go beside a database file; a URL has no beside, so on PostgreSQL they go where AGENTCTL_LOG_DIR says.
    const logs = ON_POSTGRES ? join(tempDir(), 'logs') : join(dirname(db), 'logs');
    const env = { ...ACTS, ...(ON_POSTGRES ? { AGENTCTL_LOG_DIR: logs } : {}) };
    const run = startCli(['run', '--name', 'hung', '--interval', '100ms', '--', node, fixture('agent-hang.mjs')], { db, env });
    await waitFor(() => run.output().includes('grandchild') && agent(db, 'hung')?.state === 'active', 'the hung agent');
    const { pid, grandchild } = JSON.parse(run.output().split('\n').find((l) => l.includes('grandchild'))!);
    killGroupAfter(pid);
    const before = agent(db, 'hung')!;
    expect(before.pid).toBe(pid);
    const r = cli(['restart', 'hung', '--grace', '300ms'], { db, env });
    // The new incarnation (which ignores SIGTERM too) and its wrapper: registered before anything can fail.
    const after = trackAgent(db, 'hung')!;
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^restarted hung: pid \d+/);
    expect(r.stdout).toMatch(/ignored SIGTERM for 300 ms: SIGKILL/);
    await waitFor(() => run.output().includes('ignoring SIGTERM'), 'the hung agent to have ignored SIGTERM');
    await waitFor(() => !alive(pid) && !alive(grandchild), 'the old agent and its child to be gone');
    expect(after.pid).not.toBe(pid);
    expect(after.incarnation).toBeGreaterThan(before.incarnation);
    expect(after.restartCount).toBe(1);
    expect(after.supervisorPid).not.toBe(run.pid);
    await waitFor(() => agent(db, 'hung')?.state === 'active', 'the new incarnation to beat');
    const events = cliJson(['history', 'hung'], { db }) as any[];
    expect(events.find((e) => e.reason === 'killed by SIGKILL')).toBeTruthy();
    expect(events.find((e) => e.reason === 'restarted by agentctl restart')).toMatchObject({ toState: 'initializing', evidence: { rule: 'restart', previous_pid: pid } });
    const log = join(logs, 'hung.log');
    await waitFor(() => existsSync(log) && readFileSync(log, 'utf8').includes('grandchild'), "the new agent's output in hung.log");
  });

  it('never signals a recorded pid that now belongs to an unrelated process', async () => {
    const db = tempDb();
    const bystander = start(node, ['-e', 'setInterval(() => {}, 1000)']);
    await waitFor(() => processStartTime(bystander.pid!) !== null, 'the bystander');
    expect(cli(['register', 'r', '--', node, fixture('agent-exit2.mjs')], { db }).code).toBe(0);
    // As if the agent had died and its pid been given to the bystander: same pid, another start time.
    await withStore(db, async (s) => await s.sql.run("UPDATE agents SET pid = ?, pid_start_time = ?, host = ?, boot_id = ? WHERE name = 'r'", [bystander.pid, processStartTime(bystander.pid!)! - 1, hostName(), bootId()]));
    const r = cli(['restart', 'r', '--grace', '200ms'], { db, env: ACTS });
    const after = trackAgent(db, 'r')!;
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`pid ${bystander.pid} now belongs to another process (its start time differs): not signalled`);
    expect(alive(bystander.pid!)).toBe(true);
    expect(bystander.exitCode).toBeNull();
    expect(after.pid).not.toBe(bystander.pid);
  });

  it('explains how to register a launch command, and --dry-run only says what it would do', () => {
    const db = tempDb();
    cli(['register', 'nl'], { db });
    const r = cli(['restart', 'nl'], { db, env: ACTS });
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe("agentctl: agent 'nl' has no launch command to restart it with: register one with 'agentctl register nl -- CMD ARGS…', or start it under 'agentctl run --name nl -- CMD ARGS…'");
    cli(['register', 'dry', '--', node, fixture('agent-exit2.mjs')], { db });
    const dry = cli(['restart', '--all', '--dry-run'], { db, env: ACTS });
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/^would restart dry\n {2}start: .*agent-exit2\.mjs .*under agentctl run, output to .*dry\.log$/m);
    expect(agent(db, 'dry')!.restartCount).toBe(0);
    expect(cli(['restart'], { db, env: ACTS }).code).toBe(2);
    expect(cli(['restart', 'nosuch'], { db, env: ACTS }).code).toBe(3);
  });
});
