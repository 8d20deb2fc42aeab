import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { checkHealth } from '../../src/core/health/pass.js';
import { HeartbeatHealthAgent } from '../../src/core/health/agent.js';
import { recentAlerts } from '../../src/store/alerts.js';
import { readLoops } from '../../src/store/monitor.js';
import { recentOutages } from '../../src/store/outages.js';
import { PG_HEARTBEAT_SQL, pgRegisterSql } from '../../src/store/postgres/protocol.js';
import { DEFAULT_CONTRACT, type Store } from '../../src/store/store.js';
import { DIST, exited, start, waitFor } from '../helpers.js';
import { freshDatabase, query } from './pg-helpers.js';
import { pgStore } from './pg-store.js';

/** Registers `name` (on `host`, or none) with a short contract (default: stale after 200 ms, offline after 1 s) and beats once: the server stamps it. */
async function agent(s: Store, name: string, host: string | null, c = { interval: 100, offline: 1000 }): Promise<void> {
  await s.sql.run(pgRegisterSql(DEFAULT_CONTRACT), {
    name, group_name: null, interval_ms: c.interval, stale_multiplier: 2, offline_after_ms: c.offline, pid: null, pid_start_time: null, host, boot_id: null, metadata: null, launch_argv: null, launch_cwd: null,
  });
  await beat(s, name);
}

const beat = (s: Store, name: string) => s.sql.run(PG_HEARTBEAT_SQL, { name, status: null, message: null, metadata: null, progress: null, writer_clock: null });

const observer = { host: 'monitor-host', bootId: 'boot-m', startTime: () => null };
const until = async (s: Store, at: number, what: string) => await waitFor(async () => (await s.now()) >= at, what);

describe('many monitors on PostgreSQL', () => {
  it('three monitor processes at once make each transition, the outage and each alert once, and claim each delivery once', async () => {
    const url = await freshDatabase();
    const s = await pgStore(url);
    // Stale after 1 s, offline after 3 s: the children are passing well before the first threshold.
    const slow = { interval: 500, offline: 3000 };
    for (const n of ['solo1', 'solo2', 'solo3']) await agent(s, n, null, slow);
    for (const n of ['x1', 'x2']) await agent(s, n, 'host-x', slow);
    const t0 = await s.now();
    await s.close();
    const mod = (p: string) => JSON.stringify(pathToFileURL(join(DIST, p)).href);
    // Each child: a Store over its own pool, passing with the server's clock until every agent is offline and a
    // while after, claiming deliveries after each pass.
    const script = `
      const { openStore } = await import(${mod('store/open-store.js')});
      const { checkHealth } = await import(${mod('core/health/pass.js')});
      const { claimDeliveries } = await import(${mod('store/alerts.js')});
      const [url, me, end] = process.argv.slice(1);
      const s = await openStore({ path: url });
      const sql = s.sql;
      const local = { host: 'monitor-' + me, bootId: 'b' + me, startTime: () => null };
      const claimed = [];
      let passes = 0;
      for (;;) {
        const now = await sql.now();
        await checkHealth(s, now, { local, targets: ['exec:true'], hold: false, everyMs: 50 });
        passes++;
        for (const d of await claimDeliveries(s, ['exec:true'], now, now + 3600000)) claimed.push(d.alertId);
        if (now > Number(end)) break;
      }
      console.log(JSON.stringify({ claimed, passes }));
      await s.close();`;
    const end = t0 + 4500;
    const children = [1, 2, 3].map((i) => start(process.execPath, ['--input-type=module', '-e', script, url, String(i), String(end)]));
    const results = [];
    for (const c of children) results.push({ code: (await exited(c)).code, out: c.output(), err: c.errors() });
    for (const r of results) expect({ code: r.code, err: r.err }).toEqual({ code: 0, err: '' });
    const claimed = results.flatMap((r) => (JSON.parse(r.out.trim()) as { claimed: number[] }).claimed);
    const events = await query<{ agent_name: string; t: string }>(url, `SELECT agent_name, coalesce(from_state, 'null') || '>' || to_state AS t FROM events WHERE from_state IS DISTINCT FROM to_state ORDER BY id`);
    const per = new Map<string, string[]>();
    for (const e of events) per.set(e.agent_name, [...(per.get(e.agent_name) ?? []), e.t]);
    for (const n of ['solo1', 'solo2', 'solo3', 'x1', 'x2']) expect({ n, t: per.get(n) }).toEqual({ n, t: ['null>initializing', 'initializing>active', 'active>stale', 'stale>offline'] });
    expect(await query(url, `SELECT reason FROM events WHERE evidence ->> 'rule' = 'outage'`)).toEqual([{ reason: 'host host-x unreachable: 2 agents' }]);
    expect(await query(url, `SELECT state_reason FROM agents WHERE name = 'x1'`)).toEqual([{ state_reason: 'no heartbeat within the offline threshold' }]);
    expect(await query(url, `SELECT count(*)::int AS n FROM host_outages`)).toEqual([{ n: 1 }]);
    const alerts = await query<{ id: number; k: string }>(url, `SELECT id::int AS id, agent_name || ':' || kind AS k FROM alerts ORDER BY agent_name`);
    expect(alerts.map((a) => a.k)).toEqual(['host:host-x:alert', 'solo1:alert', 'solo2:alert', 'solo3:alert']);
    expect([...claimed].sort((a, b) => a - b)).toEqual(alerts.map((a) => a.id).sort((a, b) => a - b));
    expect(await query(url, `SELECT host FROM health_loops ORDER BY host`)).toEqual([{ host: 'monitor-1' }, { host: 'monitor-2' }, { host: 'monitor-3' }]);
  });

  it('a silent host is one outage with one alert; its return ends it with one recovery notice; a lone dead agent is not an outage', async () => {
    const url = await freshDatabase();
    const s = await pgStore(url);
    try {
      for (const n of ['c1', 'c2']) await agent(s, n, 'host-c');
      await agent(s, 'alive', 'host-d');
      await agent(s, 'dead', 'host-d');
      const t0 = await s.now();
      const pass = async () => await checkHealth(s, await s.now(), { local: observer, targets: ['exec:true'], hold: false });
      await until(s, t0 + 250, 'the stale windows to pass');
      await beat(s, 'alive');
      const first = await pass();
      expect(first.outages.opened).toMatchObject([{ host: 'host-c', count: 2 }]);
      expect((await s.getAgent('c2'))!).toMatchObject({ state: 'stale', stateReason: 'host host-c unreachable: 2 agents' });
      expect((await s.getAgent('dead'))!).toMatchObject({ state: 'stale', stateReason: 'heartbeat overdue' });
      await until(s, t0 + 1100, 'the offline thresholds to pass');
      await beat(s, 'alive');
      await pass();
      expect((await s.getAgent('c1'))!.state).toBe('offline');
      expect((await recentAlerts(s)).map((a) => `${a.agentName}:${a.kind}`).sort()).toEqual(['dead:alert', 'host:host-c:alert']);
      await beat(s, 'c1');
      const back = await pass();
      expect(back.outages.ended).toMatchObject([{ host: 'host-c', reason: 'host host-c reachable again' }]);
      expect((await recentOutages(s))[0]).toMatchObject({ host: 'host-c', endedReason: 'a heartbeat from the host arrived' });
      expect((await recentAlerts(s)).map((a) => `${a.agentName}:${a.kind}`).sort()).toEqual(['dead:alert', 'host:host-c:alert', 'host:host-c:recovery']);
      expect(await query(url, `SELECT count(*)::int AS n FROM host_outages`)).toEqual([{ n: 1 }]);
      expect((await readLoops(s)).map((l) => l.host)).toEqual(['monitor-host']);
    } finally {
      await s.close();
    }
  });

  it('a monitor that cannot reach the database convicts no one and logs why, and takes no lock file', async () => {
    const url = await freshDatabase();
    const s = await pgStore(url);
    await agent(s, 'w', null);
    const gone = await pgStore(url);
    await gone.close(); // its pool is closed: every query fails
    const lines: string[] = [];
    const log = (l: string) => lines.push(l);
    const loop = new HeartbeatHealthAgent({ store: gone, everyMs: 50, logger: { info: log, warn: log, error: log } });
    const running = loop.start();
    await waitFor(() => lines.some((l) => /pass failed/.test(l)), 'a failed pass to be logged');
    await loop.stop();
    await running;
    expect(lines.find((l) => /pass failed/.test(l))).toMatch(/pass failed: .+/);
    expect((await s.getAgent('w'))!.state).toBe('active');
    expect(await query(url, 'SELECT count(*)::int AS n FROM health_loops')).toEqual([{ n: 0 }]);
    await s.close();
  });
});
