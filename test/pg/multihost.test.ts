// Three hosts on one PostgreSQL database, each running its agents under `agentctl run` and its own
// `agentctl monitor`, all at once: a crash on one host is proven by that host's monitor alone, a host frozen as a
// whole is one outage with one alert and one recovery, the others' agents stay active, and every transition and
// every alert is made once although three monitors pass over the same rows.
import { describe, expect, it } from 'vitest';
import { BIN, waitFor } from '../helpers.js';
import { receiver } from '../receiver.js';
import { type Host, type HostProcess, startHost } from './hosts.js';
import { freshDatabase, query } from './pg-helpers.js';

// Stale after 1.5 s, offline after 8 s: a beat or a pass delayed on a busy machine convicts no one, and the frozen
// host's outage (its agents overdue, its monitor silent for its period plus a second) opens well before offline.
const CONTRACT = ['--interval', '500ms', '--stale-after', '3', '--offline-after', '8s'];
const AGENTS: Record<string, string[]> = { a: ['a1', 'a2', 'a3'], b: ['b1', 'b2'], c: ['c1', 'c2', 'c3'] };

interface Row {
  agent_name: string;
  t: string;
  reason: string | null;
  evidence: string | null;
}

describe('three hosts on one PostgreSQL database', () => {
  it("a crash is proven by its host's monitor alone, a frozen host is one outage and one recovery, and every transition and alert is made once", async () => {
    const url = await freshDatabase();
    const hook = await receiver();
    const hosts: Record<string, Host> = {};
    for (const h of ['a', 'b', 'c']) hosts[h] = await startHost(`mh-${h}`);
    const runs: Record<string, HostProcess> = {};
    const monitors: Record<string, HostProcess> = {};
    const agentctl = (h: string, args: string[]) => hosts[h].spawn([process.execPath, BIN, '--db', url, ...args]);
    const sql = <T = Record<string, unknown>>(text: string, args: unknown[] = []) => query<T>(url, text, args);
    const state = async (name: string) => (await sql<{ state: string }>('SELECT state FROM agents WHERE name = $1', [name]))[0]?.state;
    const everyone = Object.values(AGENTS).flat();
    try {
      // The first monitor creates the schema; the others and the agents then find it.
      // The monitors alert on stale as well: an agent of the frozen host convicted alone would alert alone.
      const monitor = ['monitor', '--every', '200ms', '--alert-on', 'stale', '--alert-webhook', hook.url];
      monitors.a = await agentctl('a', monitor);
      await waitFor(async () => (await query(url, "SELECT 1 FROM information_schema.tables WHERE table_name = 'health_loops'").catch(() => [])).length > 0, 'the schema');
      for (const h of ['b', 'c']) monitors[h] = await agentctl(h, monitor);
      for (const [h, names] of Object.entries(AGENTS)) {
        for (const n of names) runs[n] = await agentctl(h, ['run', '--name', n, ...CONTRACT, '--', 'sleep', '1000']);
      }
      await waitFor(async () => (await sql("SELECT name FROM agents WHERE state = 'active'")).length === everyone.length, 'every agent to be active', 30_000);
      await waitFor(async () => (await sql('SELECT host FROM health_loops WHERE passes > 0')).length === 3, 'the three monitors to pass', 30_000);
      const recorded = await sql<{ name: string; host: string }>('SELECT name, host FROM agents ORDER BY name');
      expect(recorded).toEqual(everyone.sort().map((n) => ({ name: n, host: `mh-${n[0]}` })));

      // A crash on host A: its supervisor and its worker SIGKILLed (the supervisor first, so that it reports nothing).
      const worker = (await sql<{ pid: number }>("SELECT pid FROM agents WHERE name = 'a1'"))[0].pid;
      hosts.a.kill(runs.a1.innerPid, 'SIGKILL');
      // (Its exit settles only when its output ends, and the worker holds that open: wait for the process itself.)
      const supervisorGone = () => !hosts.a.members().some((m) => m.innerPid === runs.a1.innerPid && m.state !== 'Z');
      await waitFor(supervisorGone, "a1's supervisor to be gone");
      hosts.a.kill(worker, 'SIGKILL');
      await waitFor(() => hosts.a.outerPid(worker) === null, 'the worker to be gone');
      const passesAt = async () => (await sql<{ passes: number }>("SELECT passes FROM health_loops WHERE host = 'mh-a' AND stopped_at IS NULL"))[0].passes;
      const before = await passesAt();
      // The pass under way may have read the agents before the kill; the next one sees the process gone.
      await waitFor(async () => (await passesAt()) >= before + 2, "two more passes of host A's monitor", 30_000);
      expect(await state('a1')).toBe('offline');
      const crash = await sql<Row>("SELECT agent_name, reason, evidence::text AS evidence FROM events WHERE agent_name = 'a1' AND to_state = 'offline'");
      expect(crash).toHaveLength(1);
      expect(crash[0].reason).toBe('process gone');
      expect(JSON.parse(crash[0].evidence!)).toMatchObject({ rule: 'pid', pid_check: 'gone', detected_by: 'monitor', monitor_host: 'mh-a', pid: worker });

      // Host C frozen as a whole (its agents and its monitor), for less than its agents' offline threshold.
      await hosts.c.stopAll();
      await waitFor(async () => (await sql("SELECT id FROM host_outages WHERE host = 'mh-c'")).length > 0, "host C's outage to open", 30_000);
      for (const n of AGENTS.c) expect(await state(n)).toBe('stale');
      await hosts.c.contAll();
      await waitFor(async () => (await sql("SELECT id FROM host_outages WHERE host = 'mh-c' AND ended_at IS NOT NULL")).length > 0, "host C's outage to end", 30_000);
      await waitFor(async () => (await sql("SELECT name FROM agents WHERE name LIKE 'c%' AND state = 'active'")).length === AGENTS.c.length, "host C's agents to be active again", 30_000);
      // Every alert is delivered: a1's, host C's and its recovery (each exactly once, counted below).
      await waitFor(() => hook.bodies.length >= 3, 'the three alerts to be delivered', 30_000);
      await waitFor(async () => (await sql("SELECT host FROM health_loops WHERE host = 'mh-c' AND passes > 0 AND stopped_at IS NULL")).length === 1, "host C's monitor to pass again");
      for (const h of ['a', 'b', 'c']) expect(hosts[h].members().some((m) => m.state === 'T')).toBe(false);

      // Each transition once, per agent, in order.
      const events = await sql<Row>(
        "SELECT agent_name, coalesce(from_state, 'null') || '>' || to_state AS t, reason, evidence::text AS evidence FROM events WHERE from_state IS DISTINCT FROM to_state ORDER BY id",
      );
      const per = new Map<string, string[]>();
      for (const e of events) per.set(e.agent_name, [...(per.get(e.agent_name) ?? []), e.t]);
      const started = ['null>initializing', 'initializing>active'];
      expect(Object.fromEntries(per)).toEqual({
        a1: [...started, 'active>offline'],
        a2: started,
        a3: started,
        // B's agents stayed active throughout.
        b1: started,
        b2: started,
        c1: [...started, 'active>stale', 'stale>active'],
        c2: [...started, 'active>stale', 'stale>active'],
        c3: [...started, 'active>stale', 'stale>active'],
      });
      // C's agents went stale for their host's silence, never by a crash proof and never offline, and none alone:
      // one that fell overdue a pass before the others (its last beat a little earlier) waited for its host's fate.
      const cStale = events.filter((x) => x.agent_name.startsWith('c') && x.t === 'active>stale');
      expect(cStale.map((e) => [e.agent_name, e.reason, JSON.parse(e.evidence!).rule])).toEqual(AGENTS.c.map((n) => [n, 'host mh-c unreachable: 3 agents', 'host']));
      const crashes = await sql<{ agent_name: string }>("SELECT agent_name FROM events WHERE evidence ->> 'rule' IN ('pid', 'boot-id')");
      expect(crashes).toEqual([{ agent_name: 'a1' }]);

      // One outage of host C, opened and ended once.
      const outages = await sql<{ host: string; agents: number; ended: boolean }>('SELECT host, agents::int AS agents, ended_at IS NOT NULL AS ended FROM host_outages');
      expect(outages).toEqual([{ host: 'mh-c', agents: 3, ended: true }]);

      // Each alert once, in the outbox and at the receiver: a1's crash, host C's one alert and its recovery (none of
      // C's agents alerted on its own, although the monitors alert on stale).
      const alerts = await sql<{ k: string }>("SELECT agent_name || ':' || kind AS k FROM alerts ORDER BY agent_name, kind");
      expect(alerts.map((a) => a.k)).toEqual(['a1:alert', 'host:mh-c:alert', 'host:mh-c:recovery']);
      const received = hook.bodies.map((b) => `${b.agent ? b.agent.name : `host:${b.host}`}:${b.kind}`).sort();
      expect(received).toEqual(['a1:alert', 'host:mh-c:host', 'host:mh-c:host-recovery']);
      expect(hook.bodies.find((b) => b.kind === 'alert')).toMatchObject({ monitor_host: 'mh-a', reason: 'process gone', agent: { name: 'a1', host: 'mh-a' } });

      // Three monitors ran all along, one per host.
      const loops = await sql<{ host: string }>('SELECT host FROM health_loops WHERE stopped_at IS NULL ORDER BY host');
      expect(loops).toEqual([{ host: 'mh-a' }, { host: 'mh-b' }, { host: 'mh-c' }]);
      // No monitor failed a pass or a delivery (their log is on stderr).
      for (const h of ['a', 'b', 'c']) expect(monitors[h].errors()).not.toMatch(/ (ERROR|WARN) /);
    } finally {
      await Promise.all(Object.values(hosts).map((h) => h.close()));
    }
  }, 120_000);
});
