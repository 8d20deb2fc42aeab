import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bootId, hostName, processStartTime } from '../../src/core/host.js';
import { processGroup } from '../../src/core/process-control.js';
import { databaseOwnership } from '../../src/core/ownership.js';
import { BIN, agentRecord, cleanEnv, cli, historyOf, killGroupAfter, start, tempDir, waitFor } from '../helpers.js';

// These faults are about root acting on rows that someone else wrote: they need root, an unprivileged user to
// write as (setpriv), the sqlite3 shell as the foreign writer, and pid namespaces for the pid-1 case.
const asRoot = process.getuid?.() === 0;
const have = (cmd: string, ...args: string[]) => spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
const canSetpriv = asRoot && have('setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', 'true');
const hasSqlite = have('sqlite3', '-version');
const nsProbe = spawnSync('unshare', ['--pid', '--fork', '--mount-proc', 'true'], { encoding: 'utf8' });
const namespaceRefusal = !asRoot ? 'not root' : nsProbe.status !== 0 ? `unshare --pid refused: ${(nsProbe.stderr || nsProbe.error?.message || '').trim()}` : null;
if (namespaceRefusal) console.warn(`skipping the pid-namespace fault: ${namespaceRefusal}`);
if (!canSetpriv) console.warn('skipping the other-user faults: they need root and setpriv');
if (!hasSqlite) console.warn('skipping the foreign-writer faults: no sqlite3 shell');

const NOBODY = Number(spawnSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).stdout.trim());
const NOGROUP = Number(spawnSync('id', ['-g', 'nobody'], { encoding: 'utf8' }).stdout.trim());
const NOBODY_HOME = spawnSync('getent', ['passwd', 'nobody'], { encoding: 'utf8' }).stdout.split(':')[5];

/** The CLI as nobody (no supplementary groups), the way another user of a shared host runs it. */
function cliAsNobody(args: string[], cwd?: string) {
  const r = spawnSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, BIN, ...args], { encoding: 'utf8', env: cleanEnv(), cwd: cwd ?? '/', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A foreign writer: the sqlite3 shell, as the documented protocol allows anyone who can write the file. */
function sql(db: string, statement: string): void {
  const r = spawnSync('sqlite3', ['-cmd', '.timeout 5000', db, statement], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`sqlite3: ${r.stderr}`);
}

/** Alive and not a zombie. */
function alive(pid: number): boolean {
  return processStartTime(pid) !== null;
}

function realUid(pid: number): number | null {
  try {
    return Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
  } catch {
    return null;
  }
}

/** A long sleep of root's in its own process group, killed after the test. */
function rootSleeper() {
  const p = start('sleep', ['600']);
  killGroupAfter(p.pid);
  return p;
}

/** Kills what a restart started (the agent and its agentctl run, each its own group) after the test. */
function cleanupAgent(db: string, name: string): void {
  const a = agentRecord(db, name);
  killGroupAfter(a?.pid);
  killGroupAfter(a?.supervisorPid);
}

describe.skipIf(!!namespaceRefusal || !hasSqlite)('fault: a row naming pid 1 (in a real pid namespace)', () => {
  it('restart refuses to signal pid 1, plans no stop of it, and an unrelated process in another session survives', async () => {
    const dir = tempDir();
    const db = join(dir, 'agents.db');
    const ag = `${process.execPath} ${BIN} --db ${db}`;
    // In the namespace, pid 1 is this shell, leading its own session: kill(-1) would reach every other process there.
    const script = [
      `setsid sleep 600 & echo $! > ${dir}/sleep.pid`,
      `${ag} register x -- /bin/true`,
      `sqlite3 -cmd '.timeout 5000' ${db} "UPDATE agents SET pid = 1, pid_start_time = $(cut -d' ' -f22 /proc/1/stat), host = '$(hostname)', boot_id = '$(cat /proc/sys/kernel/random/boot_id)' WHERE name = 'x'"`,
      // The restarts run in a session of their own, as from cron or another terminal: not in pid 1's group.
      `setsid -w ${ag} restart x --dry-run > ${dir}/plan.out 2> ${dir}/plan.err; echo $? > ${dir}/plan.rc`,
      `setsid -w ${ag} restart x --grace 1s > ${dir}/restart.out 2> ${dir}/restart.err; echo $? > ${dir}/restart.rc`,
      `cut -d' ' -f3 /proc/$(cat ${dir}/sleep.pid)/stat > ${dir}/sleep.state 2>/dev/null; true`,
    ].join('\n');
    const r = spawnSync('unshare', ['--pid', '--fork', '--mount-proc', 'setsid', 'sh', '-c', script], { encoding: 'utf8', env: cleanEnv(), timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    const read = (f: string) => readFileSync(join(dir, f), 'utf8');
    expect((await read('sleep.state')).trim(), 'the unrelated sleep must still be running').toMatch(/^[RSD]$/);
    expect(await read('plan.out')).not.toMatch(/stop agent process 1\b/);
    expect((await read('plan.rc')).trim()).not.toBe('0');
    expect(await read('plan.err')).toMatch(/refus.*pid 1\b/);
    expect((await read('restart.rc')).trim()).not.toBe('0');
    expect((await read('restart.err')).trim().split('\n')).toHaveLength(1);
    expect(await read('restart.err')).toMatch(/^agentctl: refus.*pid 1\b.*/);
    const refusal = historyOf(db, 'x').find((e) => e.evidence?.rule === 'refused');
    expect(refusal?.evidence).toMatchObject({ pid: 1, refused: expect.stringMatching(/pid 1/) });
  });
});

describe('register --pid: pids that mean "everyone" or "my own group" are usage errors', () => {
  it('--pid 0, --pid 1 and agentctl\'s own process group exit 2 and write nothing', () => {
    const dir = tempDir();
    const db = join(dir, 'agents.db');
    // A shell that leads its own group runs agentctl in that group: $$ is then agentctl's own process group.
    const own = spawnSync('setsid', ['sh', '-c', `${process.execPath} ${BIN} --db ${db} register g --pid $$`], { encoding: 'utf8', env: cleanEnv() });
    expect(own.status, own.stderr).toBe(2);
    expect(own.stderr).toMatch(/^agentctl: invalid --pid \d+: .*own process group/);
    for (const pid of ['0', '1']) {
      const r = cli(['register', 'x', '--pid', pid, '--', '/bin/true'], { db });
      expect(r.code, pid).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/^agentctl: invalid --pid/);
    }
    expect(cli(['heartbeat', 'x', '--pid', '1'], { db }).code).toBe(2);
    expect(existsSync(db)).toBe(false);
  });

  it.skipIf(!hasSqlite)('restart --dry-run of a row a foreign writer gave pid 1 plans no stop of it: it refuses (no namespace needed, nothing is signalled)', () => {
    const db = join(tempDir(), 'agents.db');
    expect(cli(['register', 'x', '--', '/bin/true'], { db }).code).toBe(0);
    sql(db, `UPDATE agents SET pid = 1, pid_start_time = ${processStartTime(1)}, host = '${hostName()}', boot_id = '${bootId()}' WHERE name = 'x'`);
    const plan = cli(['restart', 'x', '--dry-run'], { db });
    expect(plan.stdout).not.toMatch(/stop agent process 1\b/);
    expect(plan.code).toBe(1);
    expect(plan.stderr).toMatch(/^agentctl: refusing to signal pid 1 \(the agent process of 'x'\): pid 1 is init/);
    expect(historyOf(db, 'x').some((e) => e.evidence?.rule === 'refused')).toBe(false); // a dry run writes nothing
  });
});

describe.skipIf(!asRoot || !hasSqlite)('fault: a foreign supervisor_pid', () => {
  it('a supervisor_pid naming a process that is no agentctl run is not signalled, and the refusal is an event', async () => {
    const dir = tempDir();
    const db = join(dir, 'agents.db');
    const victim = rootSleeper();
    await waitFor(() => processStartTime(victim.pid!) !== null, 'the victim to start');
    expect(cli(['register', 'w', '--', '/bin/sleep', '600'], { db }).code).toBe(0);
    sql(db, `UPDATE agents SET supervisor_pid = ${victim.pid}, supervisor_start_time = ${processStartTime(victim.pid!)} WHERE name = 'w'`);
    try {
      const r = cli(['restart', 'w', '--grace', '1s'], { db });
      expect(alive(victim.pid!), 'the process named as supervisor must not be signalled').toBe(true);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^agentctl: refus.*pid \d+.*not an agentctl run/);
      const refusal = historyOf(db, 'w').find((e) => e.evidence?.rule === 'refused');
      expect(refusal?.evidence).toMatchObject({ pid: victim.pid, role: 'supervisor' });
    } finally {
      cleanupAgent(db, 'w');
    }
  });
});

describe.skipIf(!hasSqlite)('a supervisor_pid naming the agentctl run of another agent', () => {
  it('is not signalled: the restart is refused and that run keeps going', async () => {
    const dir = tempDir();
    const db = join(dir, 'agents.db');
    const other = start(process.execPath, [BIN, '--db', db, 'run', '--name', 'other', '--', 'sleep', '600']);
    await waitFor(() => agentRecord(db, 'other')?.supervisorPid === other.pid, "the other agent's run to register");
    const o = agentRecord(db, 'other')!;
    killGroupAfter(o.pid);
    expect(cli(['register', 'w', '--', '/bin/sleep', '600'], { db }).code).toBe(0);
    sql(db, `UPDATE agents SET supervisor_pid = ${o.supervisorPid}, supervisor_start_time = ${o.supervisorStartTime} WHERE name = 'w'`);
    try {
      const r = cli(['restart', 'w', '--grace', '1s'], { db });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^agentctl: refus.* is the agentctl run of 'other', not of 'w'/);
      expect(alive(other.pid!) && alive(o.pid!)).toBe(true);
    } finally {
      cleanupAgent(db, 'w');
    }
  });
});

describe.skipIf(!asRoot)('strict mode: root acts only for a database nobody else may write', () => {
  it('sees who else may write: a directory above without the sticky bit, a symlink planted in a shared directory', () => {
    const top = tempDir();
    const open = join(top, 'open');
    mkdirSync(join(open, 'mine'), { recursive: true });
    chmodSync(open, 0o777);
    const db = join(open, 'mine', 'agents.db');
    writeFileSync(db, '');
    expect(databaseOwnership(db).writableBy).toEqual([expect.stringMatching(/^the directory .*open \(mode 0777\) is writable by others$/)]);
    chmodSync(open, 0o1777); // sticky: nobody else may rename mine/, so it is fine as a directory above
    expect(databaseOwnership(db).writableBy).toEqual([]);
    const link = join(open, 'link.db'); // but a symlink in it may be replaced by anyone
    symlinkSync(db, link);
    expect(databaseOwnership(link).writableBy).toEqual([expect.stringMatching(/^its directory .*open \(mode 1777\) is writable by others$/)]);
    expect(databaseOwnership(link)).toMatchObject({ root: true, uid: 0, runAs: null, realPath: db });
  });

  it('a database file its group may write: restart refuses in one line (nothing signalled or started), reading works, --allow-shared-db acts', () => {
    const dir = tempDir();
    const db = join(dir, 'agents.db');
    const out = join(dir, 'started.txt');
    // It keeps running once started (a command that exits at once may be gone before it is recorded with a pid).
    expect(cli(['register', 'g', '--', '/bin/sh', '-c', `echo started > ${out}; exec sleep 600`], { db }).code).toBe(0);
    chmodSync(db, 0o664);
    const r = cli(['restart', 'g'], { db });
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^agentctl: refusing to run launch commands or signal processes as root for database .*agents\.db: the database file .* \(mode 0664\) is writable by its group .*chmod go-w.*--allow-shared-db/);
    expect(existsSync(out)).toBe(false);
    expect(cli(['status', '--json'], { db }).code).toBe(0);
    expect(cli(['check', 'g'], { db }).code).not.toBe(3);
    expect(historyOf(db, 'g').at(-1)).toMatchObject({ reason: expect.stringMatching(/strict mode/), evidence: { rule: 'refused', strict: true } });
    try {
      const ok = cli(['restart', 'g', '--allow-shared-db'], { db });
      expect(ok.code, ok.stderr).toBe(0);
    } finally {
      cleanupAgent(db, 'g');
    }
  });
});

describe.skipIf(!canSetpriv || !hasSqlite)('fault: another user\'s row makes root act', () => {
  /** A directory anyone may write (1777, like /tmp) with a database nobody made, naming `pid` with a launch command. */
  async function sharedFleet(pid: number) {
    const dir = tempDir();
    chmodSync(dir, 0o1777);
    const db = join(dir, 'x.db');
    const owned = join(dir, 'owned.txt');
    const r = cliAsNobody(['--db', db, 'register', 'evil', '--pid', String(pid), '--interval', '1s', '--stale-after', '1', '--', '/bin/sh', '-c', `id -u > ${owned}`], dir);
    expect(r.code, r.stderr).toBe(0);
    // Stale after one second without a beat: the health loop convicts it by the clock.
    await waitFor(() => JSON.parse(cli(['status', '--json'], { db }).stdout).agents[0].state === 'stale', 'evil to be stale', 30_000, 100);
    return { dir, db, owned };
  }

  it('in a 1777 directory: root\'s monitor --restart-stale neither kills root\'s process nor runs the command (as root or anyone)', async () => {
    const victim = rootSleeper();
    await waitFor(() => processStartTime(victim.pid!) !== null, 'the victim to start');
    const { dir, db, owned } = await sharedFleet(victim.pid!);
    try {
      const r = cli(['monitor', '--once', '--restart-stale', '--log-dir', join(tempDir(), 'logs')], { db });
      expect(r.code, r.stderr).toBe(0);
      expect(alive(victim.pid!), "root's process must survive").toBe(true);
      expect(existsSync(owned), 'the launch command must not run').toBe(false);
      expect(r.stderr).toMatch(/refus.*writable by others.*(chmod|chown|directory of its own).*--allow-shared-db/);
      expect(agentRecord(db, 'evil')?.state).toBe('stale');
      const refusal = historyOf(db, 'evil').find((e) => e.evidence?.rule === 'refused');
      expect(refusal?.evidence).toMatchObject({ strict: true, path: expect.stringContaining(dir) });
    } finally {
      cleanupAgent(db, 'evil');
    }
  });

  it('with the override (AGENTCTL_ALLOW_SHARED_DB=1): root still refuses root\'s process, and acts as the owner for the owner\'s', async () => {
    const victim = rootSleeper();
    await waitFor(() => processStartTime(victim.pid!) !== null, 'the victim to start');
    const first = await sharedFleet(victim.pid!);
    try {
      const r = cli(['monitor', '--once', '--restart-stale', '--log-dir', join(tempDir(), 'logs')], { db: first.db, env: { AGENTCTL_ALLOW_SHARED_DB: '1' } });
      expect(r.code, r.stderr).toBe(0);
      expect(alive(victim.pid!), "root's process must survive").toBe(true);
      expect(existsSync(first.owned)).toBe(false);
      expect(r.stderr).toMatch(/refus.*pid \d+.*uid 0.*only uid 65534/);
    } finally {
      cleanupAgent(first.db, 'evil');
    }
    // nobody's own process: root may stop it (nobody could) and starts the command again as nobody.
    const mine = start('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', 'sleep', '600']);
    killGroupAfter(mine.pid);
    await waitFor(() => realUid(mine.pid!) === NOBODY, 'nobody\'s sleep to start');
    const second = await sharedFleet(mine.pid!);
    try {
      const r = cli(['monitor', '--once', '--restart-stale', '--log-dir', join(tempDir(), 'logs')], { db: second.db, env: { AGENTCTL_ALLOW_SHARED_DB: '1' } });
      expect(r.code, r.stderr).toBe(0);
      await waitFor(() => existsSync(second.owned) && readFileSync(second.owned, 'utf8').endsWith('\n'), 'the launch command to run', 30_000);
      expect(readFileSync(second.owned, 'utf8').trim()).toBe(String(NOBODY));
      await waitFor(() => !alive(mine.pid!), "nobody's old process to be stopped", 30_000);
    } finally {
      cleanupAgent(second.db, 'evil');
    }
  });

  it('not root: a user\'s restart refuses another uid\'s process (here root\'s) instead of trying to signal it', async () => {
    const victim = rootSleeper();
    await waitFor(() => processStartTime(victim.pid!) !== null, 'the victim to start');
    const { dir, db, owned } = await sharedFleet(victim.pid!);
    const r = cliAsNobody(['--db', db, 'restart', 'evil', '--grace', '1s'], dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^agentctl: refusing to signal pid \d+ .*runs as uid 0, and only uid 65534's processes may be signalled/);
    expect(alive(victim.pid!)).toBe(true);
    expect(existsSync(owned)).toBe(false);
    expect(historyOf(db, 'evil').at(-1)).toMatchObject({ evidence: { rule: 'refused', pid: victim.pid, allowed_uid: NOBODY } });
  });

  it('a database owned by another user in a directory of its own: root runs the launch command as that user, with that user\'s groups', async () => {
    const dir = tempDir();
    const home = join(dir, 'fleet');
    mkdirSync(home, { mode: 0o755 });
    chownSync(home, NOBODY, NOGROUP);
    chmodSync(dir, 0o755);
    const db = join(home, 'x.db');
    const ids = join(home, 'ids.txt');
    const script = join(home, 'agent.sh');
    writeFileSync(script, `{ id -u; id -G; echo "$HOME \${SECRET_TOKEN:-none}"; } > ${ids}.tmp; mv ${ids}.tmp ${ids}; exec sleep 600\n`, { mode: 0o755 });
    const r = cliAsNobody(['--db', db, 'register', 'mine', '--', '/bin/sh', script], home);
    expect(r.code, r.stderr).toBe(0);
    try {
      const restart = cli(['restart', 'mine'], { db, env: { SECRET_TOKEN: 'root-only' } }); // root's environment is not the owner's
      expect(restart.code, restart.stderr).toBe(0);
      const a = agentRecord(db, 'mine')!;
      expect(realUid(a.supervisorPid!), 'agentctl run runs as the owner').toBe(NOBODY);
      await waitFor(() => existsSync(ids), 'the launch command to write its ids', 30_000);
      const [uid, groups, env] = readFileSync(ids, 'utf8').trim().split('\n');
      expect(uid).toBe(String(NOBODY));
      expect(env).toBe(`${NOBODY_HOME} none`); // nobody's home; root's SECRET_TOKEN not passed on
      expect(groups!.split(' ').map(Number)).toEqual([NOGROUP]); // nobody's groups, none of root's
      expect(processGroup(a.pid!)).toBe(a.pid); // the agent leads its own group, as agentctl run starts it
      // Again: the owner's agent and its agentctl run may be stopped (they run as nobody), and it starts as nobody.
      const again = cli(['restart', 'mine', '--grace', '5s'], { db });
      expect(again.code, again.stderr).toBe(0);
      expect(again.stdout).toMatch(new RegExp(`stop agent process group ${a.pid}:`));
      expect(again.stdout).toMatch(/under agentctl run as nobody \(the database's owner\)/);
      const b = agentRecord(db, 'mine')!;
      expect(b.pid).not.toBe(a.pid);
      expect(alive(a.pid!) || alive(a.supervisorPid!)).toBe(false);
      expect(realUid(b.pid!)).toBe(NOBODY);
    } finally {
      cleanupAgent(db, 'mine');
    }
  });
});
