// The test cluster itself: it starts from the system's binaries, says clearly when they are missing, and leaves
// nothing behind when stopped.
import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { startCluster } from './cluster.js';
import { clusterUrl } from './pg-helpers.js';
import { waitFor } from '../helpers.js';

/** Whether `pid` runs (a zombie waiting for its reaper does not). */
const alive = (pid: number) => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
};

describe('the test cluster', () => {
  it('the run has one, on loopback, with fsync off', async () => {
    const c = new pg.Client({ connectionString: clusterUrl() });
    await c.connect();
    try {
      expect((await c.query('SHOW fsync')).rows[0].fsync).toBe('off');
      expect((await c.query('SHOW listen_addresses')).rows[0].listen_addresses).toBe('127.0.0.1');
      expect((await c.query('SELECT rolsuper FROM pg_roles WHERE rolname = current_user')).rows[0].rolsuper).toBe(true);
      expect(Number((await c.query('SHOW server_version_num')).rows[0].server_version_num)).toBeGreaterThanOrEqual(150000);
    } finally {
      await c.end();
    }
  });

  it('a second cluster starts on another free port, and stop() leaves no server and no directory', async () => {
    const cluster = await startCluster();
    let pid = 0;
    try {
      expect(cluster.port).not.toBe(Number(new URL(clusterUrl()).port));
      pid = Number(readFileSync(join(cluster.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
      expect(alive(pid)).toBe(true);
      const c = new pg.Client({ connectionString: cluster.url });
      await c.connect();
      expect((await c.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      await c.end();
    } finally {
      cluster.stop();
    }
    expect(existsSync(cluster.dir)).toBe(false);
    // pg_ctl stop waits for the pid file to go; the postmaster's exit follows.
    await waitFor(() => !alive(pid), 'the stopped postmaster to exit');
  });

  it('without the server binaries it fails with what to install, and leaves nothing', async () => {
    const saved = process.env.AGENTCTL_PG_BINDIR;
    process.env.AGENTCTL_PG_BINDIR = '/nonexistent/postgresql/bin';
    try {
      await expect(startCluster()).rejects.toThrow(/PostgreSQL's server binaries were not found .*install Debian's `postgresql` package/);
    } finally {
      if (saved === undefined) delete process.env.AGENTCTL_PG_BINDIR;
      else process.env.AGENTCTL_PG_BINDIR = saved;
    }
  });
});
