import { describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { cli, cliJson, exited, fixture, historyOf, start, tempDb, tempDir, waitFor } from './helpers.js';

const node = process.execPath;

/** The day `daysAgo` days before today, as the daily log names it (UTC). */
const day = (daysAgo: number) => new Date(Date.now() - daysAgo * 86_400_000).toISOString().slice(0, 10);

describe('options a user relies on', () => {
  it('check --group judges only that group', () => {
    const db = tempDb();
    cli(['register', 'a', '--group', 'g1'], { db });
    cli(['heartbeat', 'a', '--status', 'error', '--message', 'boom'], { db });
    cli(['register', 'b', '--group', 'g2'], { db });
    cli(['heartbeat', 'b'], { db });
    const g2 = cli(['check', '--group', 'g2'], { db });
    expect(g2.code).toBe(0);
    expect(g2.stdout).toMatch(/^OK: 1 agent: 1 active \| total=1 /);
    const g1 = cli(['check', '--group', 'g1'], { db });
    expect(g1.code).toBe(1);
    expect(g1.stdout).toMatch(/^WARNING: a error \(boom\); 1 agent: 1 error \| total=1 /);
    const none = cli(['check', '--group', 'nobody-here'], { db });
    expect(none.code).toBe(3);
    expect(none.stdout).toMatch(/^UNKNOWN: /);
  });

  it('check says CRITICAL (exit 2) for an agent whose restarts are exhausted', () => {
    const db = tempDb();
    cli(['heartbeat', 'fine'], { db });
    const run = cli(['run', '--name', 'doomed', '--restart', 'always', '--max-restarts', '1', '--backoff', '20ms', '--', node, fixture('agent-crash.mjs'), '20'], { db });
    expect(run.code).toBe(1);
    expect(cliJson(['status', 'doomed'], { db }).agents[0].state).toBe('failed');
    const r = cli(['check'], { db });
    expect(r.code).toBe(2);
    expect(r.stdout).toMatch(/^CRITICAL: doomed failed/);
    expect(r.stdout).toMatch(/failed=1/);
  });

  it('commands --limit gives at most that many, newest first', () => {
    const db = tempDb();
    cli(['register', 'q', '--interval', '1h'], { db });
    for (const p of ['job1', 'job2', 'job3']) expect(cli(['send', 'q', '--queue', '--', p], { db }).code).toBe(0);
    expect(cliJson(['commands', '--limit', '2'], { db }).map((c: any) => c.payload)).toEqual(['job3', 'job2']);
    expect(cliJson(['commands'], { db })).toHaveLength(3);
    expect(cli(['commands', '--limit', '0'], { db }).code).toBe(2);
  });

  it('deregister --reason records the reason in the event', () => {
    const db = tempDb();
    cli(['heartbeat', 'b'], { db });
    const r = cli(['deregister', 'b', '--reason', 'retired for good'], { db });
    expect(r.code).toBe(0);
    expect(historyOf(db, 'b').at(-1)).toMatchObject({ toState: 'offline', reason: 'retired for good', evidence: { rule: 'deregister' } });
  });

  it('metrics --out writes the exposition to the file, not to stdout', () => {
    const db = tempDb();
    cli(['heartbeat', 'm'], { db });
    const out = join(tempDir(), 'agentctl.prom');
    const r = cli(['metrics', '--out', out], { db });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('');
    const text = readFileSync(out, 'utf8');
    expect(text).toMatch(/^agentctl_agents\{state="active"\} 1$/m);
    const help = (t: string) => t.split('\n').filter((l) => l.startsWith('# HELP'));
    expect(help(text)).toEqual(help(cli(['metrics'], { db }).stdout)); // the same families as on stdout
    expect(readdirSync(dirname(out))).toEqual(['agentctl.prom']); // no temporary file left beside it
  });

  it('monitor --log-dir writes the daily log there, and --log-keep removes older files', async () => {
    const db = tempDb();
    // An agent whose process is gone: the pass has a conviction to log.
    const gone = start(node, ['-e', 'setInterval(() => {}, 1000)']);
    await waitFor(() => existsSync(`/proc/${gone.pid}/stat`), 'the process');
    cli(['heartbeat', 'w', '--pid', String(gone.pid)], { db });
    gone.kill('SIGKILL');
    await exited(gone);
    const logs = join(tempDir(), 'health-logs');
    mkdirSync(logs);
    writeFileSync(join(logs, `health-${day(5)}.log`), 'five days old\n');
    writeFileSync(join(logs, `health-${day(1)}.log`), 'yesterday\n');
    writeFileSync(join(logs, 'notes.txt'), 'not a log\n');
    const r = cli(['monitor', '--once', '--log-dir', logs, '--log-keep', '3'], { db });
    expect(r.code).toBe(0);
    expect(readdirSync(logs).sort()).toEqual([`health-${day(1)}.log`, `health-${day(0)}.log`, 'notes.txt'].sort());
    expect(readFileSync(join(logs, `health-${day(0)}.log`), 'utf8')).toMatch(/w active → offline: process gone/);
    expect(existsSync(join(dirname(db), 'logs'))).toBe(false); // not the default directory beside the database
    expect(cli(['monitor', '--once', '--log-keep', '0'], { db }).code).toBe(2);
  });

  it('send --wait that runs out of time exits 1 and says what became of the command', () => {
    const db = tempDb();
    cli(['heartbeat', 'idle'], { db }); // active, but no process of its own claims commands
    const r = cli(['send', 'idle', '--wait', '--timeout', '1s', '--', 'ping'], { db });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim()).toBe('agentctl: command 1 cancelled: deadline passed before the agent claimed it');
    expect(cliJson(['commands', 'idle'], { db })).toMatchObject([{ id: 1, state: 'cancelled', payload: 'ping' }]);
  });
});
