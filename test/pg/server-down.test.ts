// The database server goes away and comes back (stopped as a crash would, then started again on the same port):
// a heartbeat that cannot be written is an error to its caller, a library agent keeps its process alive and
// beats again once the server is back, a running monitor convicts no one meanwhile, says why, and passes again.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { type Cluster, startCluster } from './cluster.js';
import { withDatabase } from './pg-helpers.js';
import { cli, fixture, jsonLines, start, startCli, waitFor } from '../helpers.js';

let cluster: Cluster;
let db: string;

async function query<T = Record<string, unknown>>(sql: string): Promise<T[]> {
  const c = new pg.Client({ connectionString: db });
  await c.connect();
  try {
    return (await c.query(sql)).rows as T[];
  } finally {
    await c.end();
  }
}

beforeAll(async () => {
  // A cluster of its own: this test stops its server, which the rest of the run shares.
  cluster = await startCluster();
  const c = new pg.Client({ connectionString: cluster.url });
  await c.connect();
  await c.query('CREATE DATABASE fleet');
  await c.end();
  db = withDatabase(cluster.url, 'fleet');
});

afterAll(() => cluster?.stop());

describe('the database server goes away and comes back', () => {
  it('heartbeats fail loudly meanwhile, the library agent and the monitor live through it, and nobody is convicted', async () => {
    // A contract the outage stays within: stale after 3 × 100 ms, offline only after a minute.
    expect(cli(['register', 'w', '--interval', '100ms', '--offline-after', '60s'], { db }).code).toBe(0);
    const agent = start(process.execPath, [fixture('agent-beat.mjs'), db, 'w', '100']);
    const monitor = startCli(['monitor', '--every', '200ms'], { db });
    try {
      await waitFor(() => jsonLines(agent).some((e) => e.event === 'started'), 'the agent to start');
      const seq = async () => Number((await query<{ s: string }>("SELECT heartbeat_seq AS s FROM agents WHERE name = 'w'"))[0]?.s ?? 0);
      const passes = async () => Number((await query<{ n: string }>('SELECT coalesce(max(passes), 0) AS n FROM health_loops'))[0]?.n ?? 0);
      await waitFor(async () => (await seq()) >= 3 && (await passes()) >= 2, 'beats and monitor passes');

      cluster.halt();
      // A heartbeat that cannot be written is an error to its caller: one line, exit 1.
      const r = cli(['heartbeat', 'cli-agent'], { db });
      expect(r.code).toBe(1);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/^agentctl: cannot reach PostgreSQL at postgres:\/\/.*ECONNREFUSED/);
      // The library agent reports failed writes and keeps its host process alive; the monitor says why it passes no more.
      await waitFor(() => jsonLines(agent).some((e) => e.event === 'writeFailed'), 'the agent to report a failed write');
      await waitFor(() => /ERROR pass failed: cannot reach PostgreSQL/.test(monitor.errors()), 'the monitor to say why its pass failed');
      expect(agent.exitCode).toBeNull();
      expect(monitor.exitCode).toBeNull();

      await cluster.resume();
      const after = await seq();
      const passesAfter = await passes();
      await waitFor(async () => (await seq()) >= after + 3, 'beats after the server came back', 30_000);
      await waitFor(async () => (await passes()) >= passesAfter + 2, 'monitor passes after the server came back', 30_000);
      expect(agent.exitCode).toBeNull();
      expect(monitor.exitCode).toBeNull();
      // Convicted of nothing its contract did not say: never offline; stale at most, and active again.
      const states = await query<{ to_state: string }>("SELECT to_state FROM events WHERE agent_name = 'w' ORDER BY id");
      expect(states.map((e) => e.to_state)).not.toContain('offline');
      expect((await query<{ state: string }>("SELECT state FROM agents WHERE name = 'w'"))[0]!.state).toBe('active');
    } finally {
      agent.kill('SIGKILL');
      monitor.kill('SIGTERM');
    }
  });
});
