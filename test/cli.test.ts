import { describe, expect, it } from 'vitest';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { cli, cliAsNobody, cliJson, fileHash, sqlAll, sqlRun, tempDb, tempDir, ROOT } from './helpers.js';

describe('agentctl --help and usage errors', () => {
  it('prints help that lists the commands, exit codes and environment', () => {
    const r = cli(['--help']);
    expect(r.code).toBe(0);
    for (const word of ['status', 'check', 'register', 'heartbeat', 'set-status', 'deregister', 'history', 'Exit codes', 'AGENTCTL_DB', 'DATABASE_PATH']) {
      expect(r.stdout).toContain(word);
    }
    expect(cli(['heartbeat', '--help']).stdout).toContain('--progress');
  });

  it('main() called in-process sees the -- of the arguments it is given, not of process.argv', async () => {
    const { main } = await import('../src/cli/main.js');
    const db = tempDb();
    cli(['register', 'w', '--interval', '1h'], { db });
    // A process.argv with a -- of its own, that main() must not read.
    const argv = process.argv;
    process.argv = [argv[0]!, argv[1]!, 'register', 'w', '--', 'false', 'from-process-argv'];
    try {
      expect(await main(['node', 'agentctl', '--db', db, 'register', 'w', '--', 'true'])).toBe(0);
      expect(await main(['node', 'agentctl', '--db', db, 'send', 'w', '--json', '--', 'ping'])).toBe(0);
    } finally {
      process.argv = argv;
    }
    expect(cliJson(['status', 'w'], { db }).agents[0].launch).toMatchObject({ argv: ['true'] });
    expect(cliJson(['commands', 'w'], { db }).map((c: any) => c.payload)).toEqual(['ping']);
  });

  it('-V prints the version of package.json, whatever npm project runs it', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const r = cli(['-V'], { env: { npm_package_version: '9.9.9' } });
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(pkg.version);
  });

  it('an unknown command or flag exits 2 with one line', () => {
    const a = cli(['frobnicate']);
    expect(a.code).toBe(2);
    expect(a.stderr.trim().split('\n')).toHaveLength(1);
    const b = cli(['status', '--bogus']);
    expect(b.code).toBe(2);
    expect(b.stderr).toMatch(/unknown option '--bogus'/);
  });
});

describe('register, heartbeat, status', () => {
  it('registers with a contract and a launch command, idempotently', () => {
    const db = tempDb();
    const r = cli(['register', 'w1', '--interval', '10s', '--stale-after', '2', '--offline-after', '1m', '--group', 'batch', '--meta', '{"region":"eu"}', '--', 'python3', 'worker.py', '--fast'], { db });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/registered w1: interval 10s, stale after 20s, offline after 1m, launch: python3 worker.py --fast/);
    const again = cli(['register', 'w1', '--interval', '5s'], { db });
    expect(again.stdout).toMatch(/^updated w1: interval 5s, stale after 10s/);
    const [a] = cliJson(['status'], { db }).agents;
    expect(a).toMatchObject({
      name: 'w1', state: 'initializing', intervalMs: 5000, staleMultiplier: 2, offlineAfterMs: 60_000, group: 'batch',
      metadata: { region: 'eu' }, launch: { argv: ['python3', 'worker.py', '--fast'] }, lastHeartbeat: null,
    });
  });

  it('refuses a launch command without --', () => {
    const db = tempDb();
    const r = cli(['register', 'w1', 'python3'], { db });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/after --/);
    expect(existsSync(db)).toBe(false);
  });

  it('heartbeat registers on first use, stays silent, and shows in status and check', () => {
    const db = tempDb();
    const r = cli(['heartbeat', 'w1', '--status', 'busy', '--message', 'crunching', '--progress', '3', '--meta', '{"jobs":1}'], { db });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim()).toBe('agentctl: registered new agent w1 (interval 30s)');
    // The line names the contract it registered with; a later beat with a contract is no registration.
    expect(cli(['heartbeat', 'w2', '--interval', '250ms'], { db }).stderr.trim()).toBe('agentctl: registered new agent w2 (interval 250ms)');
    expect(cli(['heartbeat', 'w2', '--interval', '1s'], { db }).stderr).toBe('');
    cli(['deregister', 'w2'], { db });
    const status = cliJson(['status'], { db });
    expect(status.summary).toMatchObject({ total: 1, active: 1 });
    expect(status.agents[0]).toMatchObject({ name: 'w1', state: 'active', availability: 'busy', reportedStatus: 'busy', message: 'crunching', progress: 3, metadata: { jobs: 1 }, pid: null, heartbeatSeq: 1 });
    const table = cli(['status'], { db });
    expect(table.stdout).toMatch(/NAME\s+STATE\s+LAST HEARTBEAT\s+UPTIME\s+INTERVAL\s+PID\s+HOST\s+RESTARTS\s+MESSAGE/);
    expect(table.stdout).toMatch(/w1\s+active\s+Online now/);
    expect(table.stdout).toMatch(/1 agent: 1 active/);
    expect(table.stdout).not.toMatch(/\x1b\[/); // not a TTY: no colours
    const check = cli(['check'], { db });
    expect(check.code).toBe(0);
    expect(check.stdout).toMatch(/^OK: 1 agent: 1 active \| total=1 active=1/);
  });

  it('heartbeat --pid records the process identity; a dead pid is refused', () => {
    const db = tempDb();
    expect(cli(['heartbeat', 'p1', '--pid', String(process.pid)], { db }).code).toBe(0);
    const [a] = cliJson(['status'], { db }).agents;
    expect(a.pid).toBe(process.pid);
    expect(a.pidStartTime).toBeGreaterThan(0);
    expect(a.bootId).toMatch(/[0-9a-f-]{36}/);
    const dead = cli(['heartbeat', 'p2', '--pid', '4000000'], { db });
    expect(dead.code).toBe(2);
    expect(dead.stderr).toMatch(/no process with pid 4000000/);
  });

  it('a new process registering after a long silence is initializing, not offline, until it beats', async () => {
    const db = tempDb();
    expect(cli(['heartbeat', 'w', '--interval', '10s'], { db }).code).toBe(0);
    const hours = 2 * 3_600_000;
    await sqlRun(db, 'UPDATE agents SET last_heartbeat_at = last_heartbeat_at - ?, started_at = started_at - ?, state_since = state_since - ?', [hours, hours, hours]);
    expect(cliJson(['status', 'w'], { db }).agents[0]).toMatchObject({ state: 'offline', stateReason: 'no heartbeat within the offline threshold' });
    expect(cli(['register', 'w', '--pid', String(process.pid)], { db }).code).toBe(0);
    const [a] = cliJson(['status', 'w'], { db }).agents;
    expect(a).toMatchObject({ state: 'initializing', stateReason: 'registered by a new process', pid: process.pid });
    expect(a.secondsSinceHeartbeat).toBeGreaterThanOrEqual(7200); // the last heartbeat shown is still the real one
    expect(cli(['check', 'w'], { db }).code).toBe(0);
    expect(cli(['heartbeat', 'w', '--pid', String(process.pid)], { db }).code).toBe(0);
    const history = cliJson(['history', 'w'], { db }) as any[];
    expect(history.map((e) => `${e.fromState ?? '-'}>${e.toState}:${e.reason}`)).toEqual([
      '->initializing:registered',
      'initializing>active:first heartbeat',
      'active>initializing:registered by a new process',
      'initializing>active:first heartbeat',
    ]);
  });

  it('shows stale agents by their own contract, and filters by state and group', () => {
    const db = tempDb();
    cli(['register', 'fast', '--interval', '100ms', '--group', 'g'], { db });
    cli(['heartbeat', 'fast'], { db });
    cli(['heartbeat', 'slow'], { db });
    spawnSync('sleep', ['0.4']);
    const s = cliJson(['status'], { db });
    const states = Object.fromEntries(s.agents.map((a: any) => [a.name, a.state]));
    expect(states).toEqual({ fast: 'stale', slow: 'active' });
    expect(cliJson(['status', '--state', 'stale'], { db }).agents.map((a: any) => a.name)).toEqual(['fast']);
    expect(cliJson(['status', '--group', 'g'], { db }).agents.map((a: any) => a.name)).toEqual(['fast']);
    expect(cliJson(['status', 'slow'], { db }).agents.map((a: any) => a.name)).toEqual(['slow']);
    const check = cli(['check'], { db });
    expect(check.code).toBe(1);
    expect(check.stdout).toMatch(/^WARNING: fast stale \(last heartbeat \d+(ms|s) ago\)/);
    expect(cli(['check', 'slow'], { db }).code).toBe(0);
    expect(cli(['status', '--state', 'asleep'], { db }).code).toBe(2);
  });

  it('status of an unknown agent exits 3; of a missing database says how to start', () => {
    const db = tempDb();
    const empty = cli(['status'], { db });
    expect(empty.code).toBe(1);
    expect(empty.stderr).toMatch(/does not exist \(create it with 'agentctl init/);
    expect(existsSync(db)).toBe(false);
    cli(['heartbeat', 'a'], { db });
    const r = cli(['status', 'nope'], { db });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/no agent named 'nope'/);
  });
});

describe('check exit codes', () => {
  it('0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN', () => {
    const db = tempDb();
    expect(cli(['check'], { db }).code).toBe(3); // no database
    cli(['heartbeat', 'a'], { db });
    expect(cli(['check'], { db }).code).toBe(0);
    cli(['heartbeat', 'b', '--status', 'error', '--message', 'no route to queue'], { db });
    const warn = cli(['check'], { db });
    expect(warn.code).toBe(1);
    expect(warn.stdout).toMatch(/WARNING: b error \(no route to queue\)/);
    cli(['set-status', 'a', 'offline', '--reason', 'pulled'], { db });
    const crit = cli(['check'], { db });
    expect(crit.code).toBe(2);
    expect(crit.stdout).toMatch(/^CRITICAL: a offline/);
    expect(cli(['check', 'zzz'], { db }).code).toBe(3);
    expect(cli(['check', 'bad name'], { db }).code).toBe(3);
    const json = cli(['check', 'b', '--json'], { db });
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ status: 'WARNING', code: 1, agents: [{ name: 'b', state: 'error' }] });
  });

  it('an unusable database is UNKNOWN for check and exit 4 elsewhere', () => {
    const db = join(tempDir(), 'junk.db');
    writeFileSync(db, 'x'.repeat(4096));
    const before = fileHash(db);
    const check = cli(['check'], { db });
    expect(check.code).toBe(3);
    expect(check.stdout).toMatch(/UNKNOWN: database .* not an SQLite database/);
    for (const args of [['status'], ['heartbeat', 'a'], ['register', 'a'], ['history']]) {
      const r = cli(args, { db });
      expect(r.code).toBe(4);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    }
    expect(fileHash(db)).toBe(before);
  });
});

describe('set-status, deregister, history', () => {
  it('manual controls write events with reasons, and history shows them', () => {
    const db = tempDb();
    cli(['heartbeat', 'w'], { db });
    expect(cli(['set-status', 'w', 'busy'], { db }).stdout).toMatch(/^w is now busy$/m);
    const m = cli(['set-status', 'w', 'maintenance', '--for', '30m', '--reason', 'kernel upgrade'], { db });
    expect(m.code).toBe(0);
    expect(m.stdout).toMatch(/maintenance for 30m/);
    expect(cliJson(['status'], { db }).agents[0].state).toBe('maintenance');
    expect(cli(['check'], { db }).code).toBe(0);
    cli(['set-status', 'w', 'available'], { db });
    cli(['set-status', 'w', 'offline'], { db });
    const h = cli(['history', 'w'], { db });
    expect(h.code).toBe(0);
    const lines = h.stdout.trim().split('\n');
    expect(lines.map((l) => l.replace(/^\S+ \S+\s+/, ''))).toEqual([
      'w  (new) → initializing  registered',
      expect.stringMatching(/^w  initializing → active  first heartbeat/),
      expect.stringMatching(/^w  active → maintenance  kernel upgrade/),
      expect.stringMatching(/^w  maintenance → active  maintenance ended by operator/),
      expect.stringMatching(/^w  active → offline  set offline by operator/),
    ]);
    const json = cliJson(['history', 'w', '--limit', '2'], { db }) as any[];
    expect(json.map((e) => e.toState)).toEqual(['active', 'offline']);
    expect(json[1].evidence).toMatchObject({ rule: 'manual', previous: 'active' });
  });

  it('rejects bad set-status input without writing', () => {
    const db = tempDb();
    cli(['heartbeat', 'w'], { db });
    const before = cliJson(['history'], { db }).length;
    expect(cli(['set-status', 'w', 'sleeping'], { db }).code).toBe(2);
    expect(cli(['set-status', 'w', 'busy', '--for', '5m'], { db }).code).toBe(2);
    expect(cli(['set-status', 'w', 'maintenance', '--for', 'later'], { db }).code).toBe(2);
    expect(cli(['set-status', 'nobody', 'offline'], { db }).code).toBe(3);
    expect(cliJson(['history'], { db }).length).toBe(before);
  });

  it('deregister hides the agent; an unknown one exits 3', () => {
    const db = tempDb();
    cli(['heartbeat', 'gone'], { db });
    cli(['heartbeat', 'kept'], { db });
    expect(cli(['deregister', 'gone'], { db }).stdout).toMatch(/deregistered gone/);
    expect(cliJson(['status'], { db }).agents.map((a: any) => a.name)).toEqual(['kept']);
    expect(cliJson(['status', '--all'], { db }).agents.map((a: any) => a.name)).toEqual(['gone', 'kept']);
    expect(cli(['deregister', 'nobody'], { db }).code).toBe(3);
    expect(cli(['history', 'nobody'], { db }).code).toBe(3);
  });

  it('history --since and --limit', () => {
    const db = tempDb();
    for (const n of ['a', 'b', 'c']) cli(['heartbeat', n], { db });
    expect(cliJson(['history', '--limit', '1'], { db })).toHaveLength(1);
    expect(cliJson(['history', '--since', '1h'], { db })).toHaveLength(6);
    expect(cli(['history', '--limit', '0'], { db }).code).toBe(2);
    expect(cli(['history', '--since', 'yesterday'], { db }).code).toBe(2);
  });
});

describe('bad input writes nothing', () => {
  it.each([
    [['heartbeat', 'bad name']],
    [['heartbeat', 'a', '--status', 'fine']],
    [['heartbeat', 'a', '--meta', '{oops']],
    [['heartbeat', 'a', '--meta', '"text"']],
    [['heartbeat', 'a', '--meta', '<17 KB of JSON>']],
    [['heartbeat', 'a', '--message', 'm'.repeat(1025)]],
    [['heartbeat', 'a', '--progress', '-1']],
    [['heartbeat', 'a', '--progress', '1.5']],
    [['heartbeat', 'a', '--interval', '0s']],
    [['heartbeat', 'a', '--interval', 'fast']],
    [['register', 'a', '--stale-after', '0.5']],
    [['register', 'a', '--offline-after', '-5m']],
    [['register', 'a', '--group', 'has space']],
    [['register', 'x'.repeat(129)]],
  ])('%j exits 2 with one line and no database', (args) => {
    const db = tempDb();
    const big = JSON.stringify({ big: 'x'.repeat(17_000) });
    const r = cli(args.map((a) => (a === '<17 KB of JSON>' ? big : a)), { db });
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^agentctl: /);
    expect(existsSync(db)).toBe(false);
  });

  it('leaves an existing database unchanged', async () => {
    const db = tempDb();
    cli(['heartbeat', 'a'], { db });
    const snapshot = async () => JSON.stringify(await sqlAll(db, 'SELECT * FROM agents')) + JSON.stringify(await sqlAll(db, 'SELECT * FROM events'));
    const before = await snapshot();
    for (const args of [['heartbeat', 'a', '--meta', '[]'], ['heartbeat', 'a', '--status', 'sad'], ['register', 'a', '--interval', 'x']]) {
      expect(cli(args, { db }).code).toBe(2);
    }
    expect(await snapshot()).toBe(before);
  });

  it('a database in a missing directory exits 1 and creates nothing', () => {
    const dir = join(tempDir(), 'nope');
    const r = cli(['heartbeat', 'a'], { db: join(dir, 'a.db') });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/directory .*nope does not exist/);
    expect(existsSync(dir)).toBe(false);
  });

  it('a directory without write permission exits 1 with a clear line (as an unprivileged user)', (ctx) => {
    const root = process.getuid?.() === 0;
    if (!root) {
      // The permission bits apply to us directly.
      const dir = tempDir();
      chmodSync(dir, 0o555);
      const r = cli(['heartbeat', 'a'], { db: join(dir, 'a.db') });
      chmodSync(dir, 0o755);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/is not writable/);
      expect(existsSync(join(dir, 'a.db'))).toBe(false);
      return;
    }
    // Root ignores permission bits: run as nobody through setpriv, or say why this was not checked.
    if (spawnSync('setpriv', ['--version']).status !== 0) ctx.skip('running as root without setpriv: cannot drop privileges');
    const dir = tempDir();
    chmodSync(dir, 0o755);
    const locked = join(dir, 'ro');
    mkdirSync(locked, { mode: 0o755 });
    chmodSync(dir, 0o755);
    const r = cliAsNobody(['heartbeat', 'a'], { db: join(locked, 'a.db') });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/is not writable/);
    expect(existsSync(join(locked, 'a.db'))).toBe(false);
  });

  it('AGENTCTL_DB and DATABASE_PATH choose the database; --db wins', () => {
    const d = tempDir();
    cli(['heartbeat', 'via-env'], { env: { AGENTCTL_DB: join(d, 'a.db') } });
    cli(['heartbeat', 'via-seed'], { env: { DATABASE_PATH: join(d, 'b.db') } });
    cli(['heartbeat', 'via-flag'], { db: join(d, 'c.db'), env: { AGENTCTL_DB: join(d, 'a.db') } });
    expect(cliJson(['status'], { db: join(d, 'a.db') }).agents.map((a: any) => a.name)).toEqual(['via-env']);
    expect(cliJson(['status'], { db: join(d, 'b.db') }).agents.map((a: any) => a.name)).toEqual(['via-seed']);
    expect(cliJson(['status'], { db: join(d, 'c.db') }).agents.map((a: any) => a.name)).toEqual(['via-flag']);
  });

  it('the per-user default database is created under XDG_STATE_HOME', () => {
    const d = tempDir();
    expect(cli(['heartbeat', 'home'], { env: { XDG_STATE_HOME: d, HOME: d } }).code).toBe(0);
    expect(existsSync(join(d, 'agentctl', 'agentctl.db'))).toBe(true);
  });

  it('bad environment values are usage errors, all named in one line', () => {
    const r = cli(['status'], { db: tempDb(), env: { AGENTCTL_LOCK_TIMEOUT: 'soon', RETRY_ATTEMPTS: '0' } });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/2 problems: .*AGENTCTL_LOCK_TIMEOUT.*RETRY_ATTEMPTS/);
  });
});

describe('the heartbeat fast path', () => {
  it('handles --flag=value, --json and global flags after the name, like the full CLI', () => {
    const db = tempDb();
    cli(['register', 'f'], { db });
    const r = cli(['heartbeat', 'f', `--db=${db}`, '--status=busy', '--progress', '9', '--json', '--no-color']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ name: 'f', registered: false });
    expect(cliJson(['status', 'f'], { db }).agents[0]).toMatchObject({ availability: 'busy', progress: 9, heartbeatSeq: 1 });
  });

  it('hands help, unknown flags and invalid input to the full CLI', () => {
    const db = tempDb();
    cli(['heartbeat', 'f'], { db });
    expect(cli(['heartbeat', '--help'], { db }).stdout).toMatch(/Usage: agentctl heartbeat/);
    expect(cli(['heartbeat', 'f', '--wat'], { db }).stderr).toBe("agentctl: unknown option '--wat'\n");
    expect(cli(['heartbeat', 'f', '--progress', 'x'], { db }).stderr).toBe("agentctl: invalid --progress 'x': must be a whole number\n");
    expect(cli(['heartbeat', 'f', 'g'], { db }).code).toBe(2);
    expect(cliJson(['status', 'f'], { db }).agents[0].heartbeatSeq).toBe(1);
  });
});
