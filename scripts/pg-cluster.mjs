// A throwaway PostgreSQL cluster (for the test run and the bench): the system's binaries (Debian's `postgresql`), initdb and
// pg_ctl run as the `postgres` user when the run is root (PostgreSQL refuses to run as root), data and socket
// directories in a fresh temp dir, a free loopback port, fsync off. Started once per test run by
// test/pg/global-setup.ts, which hands its URL to the test workers in AGENTCTL_TEST_PG, and by scripts/bench-pg.mjs;
// stopped (immediate) and removed at the end. Plain JavaScript so that the bench runs it without a build;
// pg-cluster.d.mts gives its types.
import { spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

/** The superuser the tests connect as (trust on loopback). */
export const TEST_SUPERUSER = 'agentctl_test';
/** A role that must give a password (scram-sha-256), to test refused credentials. */
export const PASSWORD_ROLE = 'agentctl_pw';

/** Environment for the server's tools: nothing of the test run's (its leak mark, PG* variables) reaches the server. */
function serverEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(PG|AGENTCTL_|LEAK_MARK)/.test(k)) env[k] = v;
  env.LC_ALL = 'C';
  env.LANG = 'C';
  return env;
}

/** The directory with initdb, pg_ctl and pg_isready: AGENTCTL_PG_BINDIR, `pg_config --bindir`, or the newest /usr/lib/postgresql/N/bin. */
export function findBindir() {
  const has = (d) => !!d && existsSync(join(d, 'initdb')) && existsSync(join(d, 'pg_ctl'));
  const given = process.env.AGENTCTL_PG_BINDIR;
  if (given) return has(given) ? given : undefined;
  const r = spawnSync('pg_config', ['--bindir'], { encoding: 'utf8' });
  const fromConfig = r.status === 0 ? r.stdout.trim() : undefined;
  if (has(fromConfig)) return fromConfig;
  const base = '/usr/lib/postgresql';
  const versions = existsSync(base) ? readdirSync(base).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a)) : [];
  for (const v of versions) if (has(join(base, v, 'bin'))) return join(base, v, 'bin');
  return undefined;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts a cluster; throws with a clear message (and the server's log) when it cannot. Waits for the server to
 * say it is ready (pg_isready, and the "ready" line of postmaster.pid), as long as the postmaster is alive: no
 * fixed window.
 */
/** @returns {Promise<import('./pg-cluster.d.mts').Cluster>} */
export async function startCluster() {
  const bindir = findBindir();
  if (!bindir) {
    throw new Error(
      "PostgreSQL's server binaries were not found (initdb, pg_ctl: looked at AGENTCTL_PG_BINDIR, `pg_config --bindir` and /usr/lib/postgresql/*/bin). The PostgreSQL tests need them: install Debian's `postgresql` package (.ci/run does), or set AGENTCTL_PG_BINDIR.",
    );
  }
  const asRoot = process.getuid?.() === 0;
  let uid;
  let gid;
  if (asRoot) {
    const id = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
    const g = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
    if (id.status !== 0) throw new Error('the tests run as root and PostgreSQL refuses to: they need the `postgres` user (Debian\'s `postgresql` package creates it)');
    uid = Number(id.stdout.trim());
    gid = Number(g.stdout.trim());
  }
  const dir = mkdtempSync(join(tmpdir(), 'agentctl-pg-'));
  const data = join(dir, 'data');
  const sock = join(dir, 'sock');
  const log = join(dir, 'server.log');
  if (uid !== undefined) chownSync(dir, uid, gid);
  chmodSync(dir, 0o700);
  const env = serverEnv();
  const run = (tool, args) => {
    const cmd = join(bindir, tool);
    const r = asRoot
      ? spawnSync('runuser', ['-u', 'postgres', '--', cmd, ...args], { encoding: 'utf8', env, cwd: dir })
      : spawnSync(cmd, args, { encoding: 'utf8', env, cwd: dir });
    return r;
  };
  const fail = (what, r) => {
    let serverLog = '';
    try {
      serverLog = readFileSync(log, 'utf8').split('\n').slice(-30).join('\n');
    } catch {
      serverLog = '';
    }
    const out = r ? `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}` : '';
    stopAndRemove();
    throw new Error(`the test PostgreSQL cluster could not be started: ${what}\n${out}${serverLog ? `\nserver log:\n${serverLog}` : ''}`);
  };
  let started = false;
  const stopAndRemove = () => {
    if (started) run('pg_ctl', ['stop', '-D', data, '-m', 'immediate', '-s']);
    started = false;
    rmSync(dir, { recursive: true, force: true });
  };

  const init = run('initdb', ['-D', data, '-U', TEST_SUPERUSER, '--auth=trust', '--encoding=UTF8', '--no-locale', '--no-sync', '-N']);
  if (init.status !== 0) fail('initdb failed', init);
  const mk = asRoot ? spawnSync('runuser', ['-u', 'postgres', '--', 'mkdir', '-m', '0700', sock], { encoding: 'utf8' }) : spawnSync('mkdir', ['-m', '0700', sock], { encoding: 'utf8' });
  if (mk.status !== 0) fail('could not make the socket directory', mk);
  // Trust for the test superuser (and every other role) on loopback and the socket, a password for PASSWORD_ROLE.
  writeFileSync(
    join(data, 'pg_hba.conf'),
    [
      `local all ${PASSWORD_ROLE} scram-sha-256`,
      'local all all trust',
      `host all ${PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256`,
      'host all all 127.0.0.1/32 trust',
      '',
    ].join('\n'),
  );
  if (uid !== undefined) chownSync(join(data, 'pg_hba.conf'), uid, gid);

  let port = 0;
  const options = () => `-c fsync=off -c full_page_writes=off -c synchronous_commit=off -c listen_addresses=127.0.0.1 -c max_connections=200 -p ${port} -k ${sock}`;
  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    const r = run('pg_ctl', ['start', '-D', data, '-l', log, '-W', '-s', '-o', options()]);
    if (r.status !== 0) fail('pg_ctl start failed', r);
    started = true;
    const ready = await waitReady(() => run('pg_isready', ['-q', '-h', '127.0.0.1', '-p', String(port), '-d', 'postgres', '-U', TEST_SUPERUSER]).status === 0, data);
    if (ready === 'ready') break;
    // The postmaster died: another process may have taken the port between our probe and its bind.
    started = false;
    const text = existsSync(log) ? readFileSync(log, 'utf8') : '';
    if (attempt < 3 && /could not bind|Address already in use/.test(text)) continue;
    fail('the server exited before it was ready');
  }
  const password = randomBytes(12).toString('hex');
  const psql = run('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', sock, '-p', String(port), '-U', TEST_SUPERUSER, '-d', 'postgres', '-c', `CREATE ROLE ${PASSWORD_ROLE} LOGIN PASSWORD '${password}'`]);
  if (psql.status !== 0) fail(`could not create the role ${PASSWORD_ROLE}`, psql);
  return {
    url: `postgres://${TEST_SUPERUSER}@127.0.0.1:${port}/postgres`,
    port,
    password,
    dir,
    stop: stopAndRemove,
    /** Stops the server as a crash or a power cut would (immediate: no checkpoint, sessions cut), keeping its data. */
    halt() {
      if (!started) return;
      const r = run('pg_ctl', ['stop', '-D', data, '-m', 'immediate', '-s']);
      if (r.status !== 0) throw new Error(`pg_ctl stop failed: ${r.stdout}${r.stderr}`);
      started = false;
    },
    /** Starts the halted server again on the same port and data, and waits until it accepts connections. */
    async resume() {
      if (started) return;
      const r = run('pg_ctl', ['start', '-D', data, '-l', log, '-W', '-s', '-o', options()]);
      if (r.status !== 0) throw new Error(`pg_ctl start failed: ${r.stdout}${r.stderr}`);
      started = true;
      const ready = await waitReady(() => run('pg_isready', ['-q', '-h', '127.0.0.1', '-p', String(port), '-d', 'postgres', '-U', TEST_SUPERUSER]).status === 0, data);
      if (ready !== 'ready') throw new Error(`the halted test cluster did not start again:\n${readFileSync(log, 'utf8').split('\n').slice(-30).join('\n')}`);
    },
  };
}

/** Waits until `probe` succeeds and postmaster.pid says "ready", or the postmaster is gone ('dead'). */
async function waitReady(probe, data) {
  for (let i = 0; ; i++) {
    const pidFile = join(data, 'postmaster.pid');
    let lines = [];
    try {
      lines = readFileSync(pidFile, 'utf8').split('\n');
    } catch {
      lines = [];
    }
    const pid = Number(lines[0]);
    if (lines.length > 0 && pid > 0) {
      let alive = true;
      try {
        process.kill(pid, 0);
      } catch (err) {
        alive = err.code === 'EPERM';
      }
      if (!alive) return 'dead';
      if (lines[7]?.trim() === 'ready' && probe()) return 'ready';
    } else if (i > 20 && !existsSync(pidFile)) {
      // pg_ctl -W has returned; a postmaster that never wrote its pid file within a few seconds failed at start.
      if (i > 200) return 'dead';
    }
    await sleep(Math.min(25 * (i + 1), 200));
  }
}
