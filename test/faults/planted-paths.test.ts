import { describe, expect, it, type TestContext } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { BIN, FIXTURES, agentRecord, cleanEnv, cli, fileHash, killGroupAfter, start, tempDir, waitFor } from '../helpers.js';
import { processStartTime } from '../../src/core/host.js';

// The health loop runs as root in directories other users may write: every path beside the database may have been
// planted by one of them. Here `nobody` plants, root runs agentctl, and the planted target must come out unchanged.

const isRoot = process.getuid?.() === 0;
const hasSetpriv = spawnSync('setpriv', ['--version']).status === 0;

function needNobody(ctx: TestContext): void {
  if (!isRoot) ctx.skip('not root: cannot plant paths as another user (run the suite as root)');
  if (!hasSetpriv) ctx.skip('running as root without setpriv: cannot act as nobody');
}

/** Runs a command as nobody (setpriv, no supplementary groups); fails the test if it fails. */
function asNobody(argv: string[]): void {
  const r = spawnSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', ...argv], { encoding: 'utf8', env: cleanEnv() });
  if (r.status !== 0) throw new Error(`as nobody: ${argv.join(' ')} exited ${r.status}: ${r.stderr}`);
}

/** A shared sticky directory (like /tmp) holding root's database, and a root-only 0600 file another user would like written. */
function sharedHost() {
  const shared = tempDir();
  chmodSync(shared, 0o1777);
  const db = join(shared, 'x.db');
  expect(cli(['heartbeat', 'a'], { db }).code).toBe(0);
  const vault = tempDir();
  const secret = join(vault, 'secret');
  writeFileSync(secret, 'root:only\n', { mode: 0o600 });
  return { shared, db, secret, before: fileHash(secret) };
}

/** One health-loop pass as root; `passed` is true when the pass ran (its JSON outcome was printed). */
function monitorOnce(db: string, env: Record<string, string> = {}, extra: string[] = []) {
  const r = cli(['monitor', '--once', '--every', '1m', '--json', ...extra], { db, env });
  const passed = r.stdout.split('\n').some((l) => l.startsWith('{'));
  return { ...r, passed };
}

const today = () => new Date().toISOString().slice(0, 10);
const tomorrow = () => new Date(Date.now() + 86_400_000).toISOString().slice(0, 10);

describe('fault: paths planted beside the database by another user', () => {
  it('a symlink at the lock owner file: root never writes through it, replaces it, and says why', (ctx) => {
    needNobody(ctx);
    const { db, secret, before } = sharedHost();
    asNobody(['ln', '-s', secret, `${db}.monitor.owner`]);
    const r = monitorOnce(db);
    expect(r.code, r.stderr).toBe(0);
    expect(r.passed).toBe(true);
    expect(fileHash(secret)).toBe(before);
    expect(r.stderr).toMatch(/monitor lock's owner file is not trusted .*x\.db\.monitor\.owner is a symlink owned by uid \d+; agentctl never follows one/);
  });

  it('a symlink at the day\'s health log in another user\'s logs directory: never appended to, and the loop says why', (ctx) => {
    needNobody(ctx);
    const { shared, db, secret, before } = sharedHost();
    // nobody gets there first: makes logs/ beside the database and plants today's (and tomorrow's) log file.
    asNobody(['mkdir', join(shared, 'logs')]);
    for (const day of [today(), tomorrow()]) asNobody(['ln', '-s', secret, join(shared, 'logs', `health-${day}.log`)]);
    // At debug level every pass writes a line, so the log file is opened for certain.
    const r = monitorOnce(db, { AGENTCTL_LOG_LEVEL: 'debug' });
    expect(r.code, r.stderr).toBe(0);
    expect(r.passed).toBe(true);
    expect(fileHash(secret)).toBe(before);
    expect(r.stderr).toMatch(/cannot write the log file in .*logs: refusing to use .*logs: the directory belongs to uid \d+.*logging to stderr only/);
  });

  it('a symlink at the day\'s health log in a shared log directory: O_NOFOLLOW refuses it, the target is unchanged', (ctx) => {
    needNobody(ctx);
    const { shared, db, secret, before } = sharedHost();
    // A log directory root made for everyone (sticky, world-writable): nobody may create names in it.
    const logs = join(shared, 'shared-logs');
    mkdirSync(logs);
    chmodSync(logs, 0o1777);
    for (const day of [today(), tomorrow()]) asNobody(['ln', '-s', secret, join(logs, `health-${day}.log`)]);
    const r = monitorOnce(db, { AGENTCTL_LOG_LEVEL: 'debug' }, ['--log-dir', logs]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.passed).toBe(true);
    expect(fileHash(secret)).toBe(before);
    expect(r.stderr).toMatch(/cannot write the log file .*refusing to use .*health-\d{4}-\d\d-\d\d\.log: it is a symlink .*never writes through one/);
  });

  it("a symlink at restart's NAME.log in a shared log directory: the agent's output never goes through it", (ctx) => {
    needNobody(ctx);
    // The database in root's own directory; only the log directory is shared (sticky, world-writable).
    const dir = tempDir();
    chmodSync(dir, 0o755);
    const db = join(dir, 'x.db');
    const logs = join(dir, 'shared-logs');
    mkdirSync(logs);
    chmodSync(logs, 0o1777);
    const vault = tempDir();
    const secret = join(vault, 'secret');
    writeFileSync(secret, 'root:only\n', { mode: 0o600 });
    const before = fileHash(secret);
    expect(cli(['register', 'x', '--', '/bin/sh', '-c', 'echo planted-output; sleep 60'], { db }).code).toBe(0);
    asNobody(['ln', '-s', secret, join(logs, 'x.log')]);
    const r = cli(['restart', 'x'], { db, env: { AGENTCTL_LOG_DIR: logs } });
    // Should the restart have gone ahead, its agent is killed after the test.
    const after = agentRecord(db, 'x');
    killGroupAfter(after?.supervisorPid);
    killGroupAfter(after?.pid);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/refusing to use .*shared-logs\/x\.log: it is a symlink owned by uid \d+; agentctl never writes through one/);
    expect(fileHash(secret)).toBe(before);
  });

  it('a lock directory made by another user: db-check reports it as a problem, and root\'s loop runs at once', (ctx) => {
    needNobody(ctx);
    const { db } = sharedHost();
    asNobody(['mkdir', `${db}.monitor.lock`]);
    const check = cli(['db-check'], { db });
    expect(check.code).toBe(1);
    expect(check.stdout).toMatch(/FAIL {2}monitor lock: .*x\.db\.monitor\.lock belongs to uid \d+, neither the database's owner \(uid 0\) nor root: not honoured/);
    expect(check.stdout).not.toMatch(/ok {4}monitor lock/);
    // A stale period far longer than the test: only refusing the planted lock lets the pass run.
    const r = monitorOnce(db, { AGENTCTL_LOCK_STALE: '1h' });
    expect(r.code, r.stderr).toBe(0);
    expect(r.passed, r.stderr).toBe(true);
    expect(r.stderr).toMatch(/belongs to uid \d+, neither the database's owner \(uid 0\) nor root: not honoured; removed it/);
    expect(existsSync(`${db}.monitor.lock`)).toBe(false);
  });

  it('a lock directory of another user with a file in it is moved aside, not removed recursively; a symlinked lock is removed', (ctx) => {
    needNobody(ctx);
    const { shared, db, secret, before } = sharedHost();
    asNobody(['mkdir', `${db}.monitor.lock`]);
    asNobody(['ln', '-s', secret, join(`${db}.monitor.lock`, 'inside')]);
    const r = monitorOnce(db, { AGENTCTL_LOCK_STALE: '1h' });
    expect(r.passed, r.stderr).toBe(true);
    expect(r.stderr).toMatch(/not honoured; moved aside to .*x\.db\.monitor\.lock\.planted-\d+ \(remove it\)/);
    expect(fileHash(secret)).toBe(before);
    const aside = readdirSync(shared).find((f) => f.startsWith('x.db.monitor.lock.planted-'))!;
    expect(lstatSync(join(shared, aside, 'inside')).isSymbolicLink()).toBe(true);

    asNobody(['ln', '-s', secret, `${db}.monitor.lock`]);
    const check = cli(['db-check'], { db });
    expect(check.code).toBe(1);
    expect(check.stdout).toMatch(/FAIL {2}monitor lock: .*x\.db\.monitor\.lock is a symlink owned by uid \d+; a lock is never a symlink/);
    const again = monitorOnce(db, { AGENTCTL_LOCK_STALE: '1h' });
    expect(again.passed, again.stderr).toBe(true);
    expect(fileHash(secret)).toBe(before);
  });
});

describe('fault: a lock without a live owner', () => {
  it('an owner file naming a process on this host that is gone: the lock is taken over at once, not after the stale period', () => {
    const { db } = { db: join(tempDir(), 'x.db') };
    expect(cli(['heartbeat', 'a'], { db }).code).toBe(0);
    // A real process that has exited: its pid (and start time) are recorded, the process is gone.
    const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    const pid = Number(gone.stdout);
    mkdirSync(`${db}.monitor.lock`);
    writeFileSync(`${db}.monitor.owner`, JSON.stringify({ pid, pidStartTime: processStartTime(process.pid), host: hostname(), acquiredAt: Date.now(), operation: 'monitor' }));
    const r = monitorOnce(db, { AGENTCTL_LOCK_STALE: '1h' });
    expect(r.code, r.stderr).toBe(0);
    expect(r.passed, r.stderr).toBe(true);
    expect(r.stderr).toMatch(new RegExp(`took over the monitor lock of pid ${pid}`));
  });

  it('a lock directory with no owner file: the loop waits for its stale period, no longer, then runs', () => {
    const db = join(tempDir(), 'x.db');
    expect(cli(['heartbeat', 'a'], { db }).code).toBe(0);
    mkdirSync(`${db}.monitor.lock`);
    const r = monitorOnce(db, { AGENTCTL_LOCK_STALE: '2s' });
    expect(r.code, r.stderr).toBe(0);
    expect(r.passed, r.stderr).toBe(true);
    expect(r.stderr).not.toMatch(/nothing to do/);
  });
});

describe('fault: modes of what agentctl creates beside the database', () => {
  /** Runs the CLI under umask 000, so that only the modes agentctl asks for count. */
  function cliUmask0(args: string[]) {
    const r = spawnSync('sh', ['-c', 'umask 000; exec "$0" "$@"', process.execPath, BIN, ...args], { encoding: 'utf8', env: cleanEnv({ AGENTCTL_LOG_LEVEL: 'debug' }) });
    expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(0);
  }
  const writableByOthers = (p: string) => (statSync(p).mode & 0o022).toString(8);

  it('under umask 000, no lock owner file, log, log directory, backup or map/metrics output is group- or other-writable', async () => {
    const dir = tempDir();
    const db = join(dir, 'x.db');
    expect(cli(['heartbeat', 'a'], { db }).code).toBe(0);
    cliUmask0(['--db', db, 'monitor', '--once', '--every', '1m', '--map', join(dir, 'map.json'), '--metrics', join(dir, 'metrics.prom')]);
    cliUmask0(['--db', db, 'map', '--out', join(dir, 'out.json')]);
    cliUmask0(['--db', db, 'run', '--name', 'r', '--log', join(dir, 'run.log'), '--', '/bin/sh', '-c', 'echo hello']);
    cliUmask0(['--db', db, 'db-check', '--fix']);
    const logs = join(dir, 'logs');
    const made = [logs, ...readdirSync(logs).map((f) => join(logs, f)), join(dir, 'map.json'), join(dir, 'metrics.prom'), join(dir, 'out.json'), join(dir, 'run.log'), ...readdirSync(dir).filter((f) => f.includes('.backup-')).map((f) => join(dir, f))];
    expect(made.length).toBeGreaterThanOrEqual(7);
    for (const p of made) expect(writableByOthers(p), p).toBe('0');

    // The owner file exists while the lock is held.
    const holder = start('sh', ['-c', 'umask 000; exec "$0" "$@"', process.execPath, join(FIXTURES, 'hold-lock.mjs'), db, 'maintenance', '30000']);
    await waitFor(() => holder.output().includes('locked'), 'the holder to lock');
    expect(writableByOthers(`${db}.maintenance.owner`)).toBe('0');
    expect(writableByOthers(`${db}.maintenance.lock`)).toBe('0');
  });
});
