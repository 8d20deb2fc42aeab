import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { agentRecord, cli, exited, fixture, historyOf, killGroupAfter, startCli, tempDb, tempDir, waitFor } from './helpers.js';

const node = process.execPath;
const agent = agentRecord;
const history = historyOf;

describe('agentctl run', () => {
  it('SIGTERM to run reaches the child; the agent goes offline; run exits with the child\'s code', async () => {
    const db = tempDb();
    const run = startCli(['run', '--name', 'w', '--interval', '100ms', '--', node, fixture('agent-exit2.mjs')], { db });
    await waitFor(() => run.output().includes('ready') && agent(db, 'w')?.state === 'active', 'the agent to be active');
    const a = agent(db, 'w')!;
    killGroupAfter(a.pid);
    expect(a).toMatchObject({ supervisorPid: run.pid, restartPolicy: 'never', launch: { argv: [node, fixture('agent-exit2.mjs')] } });
    expect(a.pidStartTime).toBeGreaterThan(0);
    const sentAt = Date.now();
    run.kill('SIGTERM');
    const { code } = await exited(run);
    expect(run.output()).toContain('received SIGTERM');
    expect(code).toBe(2);
    const after = agent(db, 'w')!;
    expect(after.state).toBe('offline');
    expect(after.supervisorPid).toBeNull();
    const last = history(db, 'w').at(-1);
    expect(last).toMatchObject({ toState: 'offline', reason: 'exited with code 2', evidence: { rule: 'exit', exit_code: 2, signal: null, forwarded_signal: 'SIGTERM', pid: a.pid } });
    expect(last.at - sentAt).toBeLessThan(5000);
  });

  it('SIGKILL to the child: offline at once, seen by the wrapper (not the clock), then restarted per policy', async () => {
    const db = tempDb();
    const run = startCli(['run', '--name', 'k', '--interval', '100ms', '--restart', 'on-failure', '--backoff', '100ms', '--', node, fixture('agent-exit2.mjs')], { db });
    await waitFor(() => agent(db, 'k')?.state === 'active', 'the agent to be active');
    const first = agent(db, 'k')!;
    killGroupAfter(first.pid);
    const killedAt = Date.now();
    process.kill(first.pid!, 'SIGKILL');
    await waitFor(() => history(db, 'k').some((e) => e.toState === 'offline'), 'the offline event');
    const offline = history(db, 'k').find((e) => e.toState === 'offline');
    // The wrapper's exit evidence, not a clock conviction (no health loop runs here, and the clock would say
    // 'no heartbeat within the offline threshold'), dated at the exit it saw.
    expect(offline).toMatchObject({ reason: 'killed by SIGKILL', evidence: { rule: 'exit', signal: 'SIGKILL', exit_code: null, pid: first.pid } });
    expect(offline.at).toBeGreaterThanOrEqual(killedAt);
    expect(offline.at - killedAt).toBeLessThan(5000); // generous: two noisy cores running other tests
    await waitFor(() => (agent(db, 'k')?.incarnation ?? 0) > first.incarnation && agent(db, 'k')?.state === 'active', 'the restarted agent');
    const second = agent(db, 'k')!;
    killGroupAfter(second.pid);
    expect(second.pid).not.toBe(first.pid);
    expect(second.restartCount).toBe(1);
    const restart = history(db, 'k').find((e) => e.fromState === 'offline' && e.toState === 'initializing');
    expect(restart).toMatchObject({ reason: expect.stringMatching(/^restarted by agentctl run \(on-failure, attempt 1/), evidence: { rule: 'restart', previous_signal: 'SIGKILL', backoff_ms: 100 } });
    run.kill('SIGTERM');
    expect((await exited(run)).code).toBe(2);
  });

  it('a crash loop ends in failed after --max-restarts restarts, and run exits with the last code', async () => {
    const db = tempDb();
    const run = startCli(['run', '--name', 'c', '--interval', '100ms', '--restart', 'always', '--max-restarts', '3', '--backoff', '20ms', '--', node, fixture('agent-crash.mjs'), '50'], { db });
    const { code } = await exited(run);
    expect(code).toBe(1);
    const a = agent(db, 'c')!;
    expect(a).toMatchObject({ state: 'failed', restartCount: 3, supervisorPid: null });
    const events = history(db, 'c');
    expect(events.filter((e) => e.reason?.startsWith('restarted by agentctl run'))).toHaveLength(3);
    expect(events.filter((e) => e.toState === 'offline' && e.reason === 'exited with code 1')).toHaveLength(4);
    expect(events.at(-1)).toMatchObject({ fromState: 'offline', toState: 'failed', evidence: { rule: 'restart', unstable_exits: 4, max_restarts: 3 } });
    expect(run.errors()).toMatch(/c failed: 4 unstable exits in a row \(limit 3\)/);
    // Backoff grows ×1.5 between restarts.
    expect(events.filter((e) => e.evidence?.rule === 'restart' && e.toState === 'initializing').map((e) => e.evidence.backoff_ms)).toEqual([20, 30, 45]);
  });

  it('passes the exit code through, 128 + signal for a signal death, 127 for a command that cannot start', async () => {
    const db = tempDb();
    const r = cli(['run', '--name', 'e2', '--', node, fixture('agent-exit2.mjs'), '10'], { db });
    expect(r.code).toBe(2);
    expect(r.stdout).toContain('ready'); // output passes through
    const sig = cli(['run', '--name', 's', '--', node, '-e', "process.kill(process.pid, 'SIGTERM')"], { db });
    expect(sig.code).toBe(128 + 15);
    expect(history(db, 's').at(-1)).toMatchObject({ reason: 'killed by SIGTERM' });
    const missing = cli(['run', '--name', 'm', '--', '/nonexistent/agent-binary'], { db });
    expect(missing.code).toBe(127);
    expect(missing.stderr.trim()).toBe("agentctl: cannot start '/nonexistent/agent-binary': no such command (check the name and PATH)");
    expect(agent(db, 'm')).toBeUndefined();
    const noDash = cli(['run', '--name', 'x', 'sleep', '1'], { db });
    expect(noDash.code).toBe(2);
    expect(noDash.stderr).toMatch(/after --/);
  });

  it('--log writes the output to a file, rotated by size', () => {
    const db = tempDb();
    const log = join(tempDir(), 'logs', 'w.log');
    const script = "for (let i = 0; i < 40; i++) process.stdout.write('x'.repeat(99) + '\\n')";
    const r = cli(['run', '--name', 'lw', '--log', log, '--log-max-size', '1024', '--', node, '-e', script], { db });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('');
    expect(existsSync(`${log}.1`)).toBe(true);
    expect(existsSync(`${log}.4`)).toBe(false);
    expect(readFileSync(log, 'utf8').length).toBeLessThanOrEqual(1024);
  });

  it('keeps the contract an agent was registered with', async () => {
    const db = tempDb();
    cli(['register', 'kept', '--interval', '2s', '--offline-after', '1m'], { db });
    expect(cli(['run', '--name', 'kept', '--', node, '-e', '0'], { db }).code).toBe(0);
    expect(agent(db, 'kept')).toMatchObject({ intervalMs: 2000, offlineAfterMs: 60_000, state: 'offline' });
  });
});
