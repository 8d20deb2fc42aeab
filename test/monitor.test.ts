import { hostname } from 'node:os';
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { cli, cliJson, exited, fixture, historyOf, jsonLines, sleep, start, startCli, sqlAll, sqlPluck, sqlRun, tempDb, tempDir, waitFor, ON_POSTGRES } from './helpers.js';
import { beatOnce } from './receiver.js';

const history = historyOf;
const reports = (out: string) => out.split('\n').filter(Boolean).map((l) => JSON.parse(l));

describe('agentctl monitor', () => {
  it('a real agent process killed with SIGKILL is offline after one pass, and its executing commands are cancelled', async () => {
    const db = tempDb();
    // An agent that claims the command it is sent and works on it for a minute.
    const agent = start(process.execPath, [fixture('agent-beat.mjs'), db, 'worker', '10000']);
    await waitFor(() => jsonLines(agent).some((e) => e.event === 'started'), 'the agent to start');
    expect(cli(['send', 'worker', '--', 'sleep 60000'], { db }).code).toBe(0);
    await waitFor(() => jsonLines(agent).some((e) => e.event === 'command'), 'the agent to claim the command');
    expect(await sqlPluck(db, 'SELECT state FROM commands')).toEqual(['executing']);
    expect(cli(['monitor', '--once'], { db }).code).toBe(0);
    expect(cliJson(['status', 'worker'], { db }).agents[0].state).toBe('active'); // alive: nothing to do
    agent.kill('SIGKILL');
    await exited(agent);
    // The health log goes beside an SQLite file; beside a database server there is no directory: given here.
    const logs = ON_POSTGRES ? tempDir() : join(db, '..', 'logs');
    const r = cli(['monitor', '--once', '--json', ...(ON_POSTGRES ? ['--log-dir', logs] : [])], { db });
    expect(r.code).toBe(0);
    const [report] = reports(r.stdout);
    expect(report.transitions).toMatchObject([{ agent: 'worker', from: 'active', to: 'offline', kind: 'crash', reason: 'process gone', evidence: { rule: 'pid', pid_check: 'gone', pid: agent.pid } }]);
    expect(r.stderr).toMatch(/worker active → offline: process gone/);
    expect(await sqlAll(db, 'SELECT state, error FROM commands')).toEqual([{ state: 'cancelled', error: 'agent offline: process gone' }]);
    // The daily log file beside the database has it too.
    const file = readdirSync(logs).find((f) => /^health-\d{4}-\d{2}-\d{2}\.log$/.test(f))!;
    expect(readFileSync(join(logs, file), 'utf8')).toMatch(/worker active → offline: process gone/);
  });

  it('an agent that stops beating goes stale, then offline, at its thresholds, and back to active on its next beat', async () => {
    const db = tempDb();
    await beatOnce(db, 'quiet', { intervalMs: 100, staleMultiplier: 3, offlineAfterMs: 1000 });
    const monitor = startCli(['monitor', '--every', '50ms', '--json'], { db });
    await waitFor(() => history(db, 'quiet').some((e) => e.toState === 'offline'), 'the offline conviction');
    const events = history(db, 'quiet');
    const beat = events.find((e) => e.toState === 'active')!.at;
    const stale = events.find((e) => e.toState === 'stale')!;
    const offline = events.find((e) => e.toState === 'offline')!;
    expect(stale).toMatchObject({ fromState: 'active', at: beat + 300, reason: 'heartbeat overdue', evidence: { rule: 'clock', detected_by: 'monitor', stale_after_ms: 300 } });
    expect(offline).toMatchObject({ fromState: 'stale', at: beat + 1000, evidence: { rule: 'clock', offline_after_ms: 1000 } });
    expect(offline.evidence.heartbeat_age_ms).toBeGreaterThanOrEqual(1000);
    cli(['heartbeat', 'quiet'], { db });
    // Back to active on that beat (the running monitor may already have found it stale again since).
    expect(history(db, 'quiet').find((e) => e.id > offline.id)).toMatchObject({ fromState: 'offline', toState: 'active', reason: 'heartbeat' });
    monitor.kill('SIGTERM');
    expect((await exited(monitor)).code).toBe(0);
    expect(monitor.errors()).toMatch(/health loop stopped/);
    expect(reports(monitor.output()).length).toBeGreaterThan(2);
  });

  it('a pid that now belongs to another process is not taken for the agent; a one-shot heartbeat records no pid', async () => {
    const db = tempDb();
    const other = start(process.execPath, ['-e', 'setInterval(() => {}, 1000)']);
    await waitFor(() => existsSync(`/proc/${other.pid}/stat`), 'the process');
    cli(['register', 'alive', '--pid', String(other.pid), '--interval', '1h'], { db });
    cli(['register', 'recycled', '--pid', String(other.pid), '--interval', '1h'], { db });
    cli(['heartbeat', 'shell-agent', '--interval', '1h'], { db });
    // 'recycled' recorded the same pid with another start time: as if its process died and the pid was reused.
    await sqlRun(db, "UPDATE agents SET pid_start_time = pid_start_time - 1 WHERE name = 'recycled'");
    const [report] = reports(cli(['monitor', '--once', '--json'], { db }).stdout);
    expect(report.transitions).toMatchObject([{ agent: 'recycled', to: 'offline', evidence: { pid_check: 'reused' } }]);
    const status = cliJson(['status'], { db }).agents;
    expect(status.find((a: any) => a.name === 'alive').state).toBe('initializing');
    expect(status.find((a: any) => a.name === 'shell-agent')).toMatchObject({ state: 'active', pid: null });
    other.kill('SIGKILL');
  });

  it('only one health loop at a time: a second prints one line and exits 0; a SIGKILLed monitor’s lock is taken over once stale', async () => {
    const db = tempDb();
    cli(['heartbeat', 'a'], { db });
    // A 3 s stale period: far above the holder's refresh (every 1 s), even on a busy machine.
    const first = startCli(['monitor', '--every', '100ms', '--lock-stale', '3s', '--json'], { db });
    await waitFor(() => reports(first.output()).length >= 1, 'the first monitor to pass');
    const second = cli(['monitor', '--once', '--json'], { db });
    expect(second.code).toBe(0);
    expect(second.stdout).toBe('');
    expect(second.stderr.trim().split('\n')).toHaveLength(1);
    expect(second.stderr).toMatch(/another agentctl monitor is running/);
    first.kill('SIGKILL');
    await exited(first);
    let taken: ReturnType<typeof cli> | undefined;
    await waitFor(() => {
      // The stale period from the environment (the first monitor had it as a flag).
      const r = cli(['monitor', '--once', '--json'], { db, env: { AGENTCTL_LOCK_STALE: '3s' } });
      if (r.stdout) taken = r;
      return Boolean(r.stdout);
    }, 'a monitor to take the abandoned lock over', 20_000, 250);
    expect(taken!.code).toBe(0);
    expect(taken!.stderr).toMatch(/took over the monitor lock of pid \d+/);
  });

  it('a stopped-then-resumed monitor convicts no one on its first pass back', async () => {
    const db = tempDb();
    cli(['heartbeat', 'steady', '--interval', '1h'], { db });
    const monitor = startCli(['monitor', '--every', '100ms', '--json'], { db });
    await waitFor(() => reports(monitor.output()).length >= 2, 'two passes');
    monitor.kill('SIGSTOP');
    // While it is stopped, an agent dies: it is overdue well before the monitor runs again.
    cli(['register', 'gone', '--interval', '100ms', '--stale-after', '1', '--offline-after', '100ms'], { db });
    await sleep(2600);
    const resumedAt = Date.now();
    monitor.kill('SIGCONT');
    await waitFor(() => history(db, 'gone').some((e) => e.toState === 'offline'), 'the conviction on a later pass');
    monitor.kill('SIGINT');
    expect((await exited(monitor)).code).toBe(0);
    const back = reports(monitor.output()).filter((r) => r.at >= resumedAt);
    expect(back[0].suspect).toMatch(/paused/);
    expect(back[0].transitions).toEqual([]);
    const conviction = history(db, 'gone').find((e) => e.toState !== 'initializing')!;
    expect(conviction.evidence.pass).toBeGreaterThan(back[0].pass);
    expect(monitor.errors()).toMatch(/convicting no one: the health loop was paused/);
    const metrics = cli(['metrics'], { db }).stdout;
    expect(metrics).toMatch(/^agentctl_monitor_suspect_passes_total 1$/m);
  });

  it('status and check warn when the health loop has stopped passing', async () => {
    const db = tempDb();
    cli(['heartbeat', 'a'], { db });
    expect(cli(['status'], { db }).stderr).toMatch(/warning: no health loop has run on this database/);
    expect(cli(['check'], { db }).code).toBe(0); // never set up: not a monitoring problem
    cli(['monitor', '--once', '--every', '1m'], { db });
    const quiet = cli(['status'], { db });
    expect(quiet.stdout + quiet.stderr).not.toMatch(/warning/);
    expect(cliJson(['status'], { db }).healthLoop).toMatchObject({ ran: true, overdue: false, everyMs: 60_000 });
    await sqlRun(db, 'UPDATE monitor_state SET last_pass_at = last_pass_at - 600000');
    await sqlRun(db, 'UPDATE health_loops SET last_pass_at = last_pass_at - 600000');
    const late = cli(['status'], { db }).stderr;
    expect(late).toMatch(/warning: no health loop has passed for 10m/);
    // Where loops were last seen (health_loops): this host.
    expect(late).toContain(`(last seen on ${hostname()})`);
    const check = cli(['check'], { db });
    expect(check.code).toBe(1);
    expect(check.stdout).toMatch(/^WARNING: no health loop has passed for 10m/);
  });

  it('rejects bad options with exit 2', () => {
    const db = tempDb();
    expect(cli(['monitor', '--every', 'soon'], { db }).code).toBe(2);
    expect(cli(['monitor', '--alert-on', 'happy'], { db }).code).toBe(2);
    expect(cli(['monitor', '--alert-webhook', 'ftp://x'], { db }).code).toBe(2);
    expect(cli(['monitor', '--test-alert'], { db }).code).toBe(2);
    expect(cli(['monitor', '--alert-exec', "'unbalanced"], { db }).code).toBe(2);
  });
});
