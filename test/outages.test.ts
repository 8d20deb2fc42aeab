import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { HeartbeatHealthAgent, checkHealth, openStore, recentAlerts, readCounters, updateHeartbeat, type Store } from '../dist/index.js';
import { hostname } from 'node:os';
import { recentOutages } from '../dist/store/outages.js';
import { readLoops } from '../dist/store/monitor.js';
import { DIST, cli, cliJson, exited, start, tempDb, waitFor } from './helpers.js';
import { at, injectClock } from './clock.js';

const T0 = 1_700_000_000_000;
/** The monitor's host in these tests: agents on other hosts are rows with another host name, as a foreign writer records them. */
const observer = { host: 'monitor-host', bootId: 'boot-m', startTime: () => null };
const TARGETS = ['exec:true'];

/** Registers `name` on `host` (1 s interval, stale after 3 s, offline after 10 s) and beats at `at`. */
async function onHost(s: Store, host: string, name: string, when = T0): Promise<void> {
  await s.register({ name, host, intervalMs: 1000, staleMultiplier: 3, offlineAfterMs: 10_000 }, await at(s, when));
  await updateHeartbeat(s, { name }, when);
}

/** A fresh database whose clock is the test's (test/clock.ts: on PostgreSQL the server stamps writes itself). */
async function fresh(): Promise<Store> {
  const s = await openStore({ path: tempDb() });
  await injectClock(s, T0);
  return s;
}

/** The observer's pass at `now`, the database's clock at `now` too. */
const pass = async (s: Store, now: number, policy: Parameters<typeof checkHealth>[2] = {}) => await checkHealth(s, await at(s, now), { local: observer, targets: TARGETS, hold: false, ...policy });

describe('a host silent as a whole', () => {
  it('is one outage, one host event and one alert; its agents are stale with the reason and alert on their own only once it is over', async () => {
    const s = await fresh();
    for (const n of ['c1', 'c2', 'c3']) await onHost(s, 'host-c', n);
    const first = await pass(s, T0 + 3000);
    expect(first.outages.opened).toMatchObject([{ host: 'host-c', count: 3, reason: 'host host-c unreachable: 3 agents' }]);
    const [outage] = await recentOutages(s);
    expect(outage).toMatchObject({ host: 'host-c', agents: 3, agentNames: ['c1', 'c2', 'c3'], endedAt: null, detectedBy: 'monitor-host' });
    for (const n of ['c1', 'c2', 'c3']) {
      const a = (await s.getAgent(n))!;
      expect(a).toMatchObject({ state: 'stale', stateReason: 'host host-c unreachable: 3 agents' });
      expect(a.stateEvidence).toMatchObject({ rule: 'host', outage_id: outage!.id });
    }
    // One host event (a note on the first agent), beside the agents' own transitions.
    const hostEvents = (await s.listEvents({})).filter((e) => e.evidence?.rule === 'outage');
    expect(hostEvents).toMatchObject([{ agentName: 'c1', fromState: 'stale', toState: 'stale', reason: 'host host-c unreachable: 3 agents' }]);
    let alerts = await recentAlerts(s);
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toMatchObject({ agentName: 'host:host-c', kind: 'alert', payload: { kind: 'host', host: 'host-c', count: 3, outage_id: outage!.id } });
    expect(alerts[0]!.deliveries).toMatchObject([{ target: 'exec:true', status: 'pending' }]);
    // Offline by their own contracts while the outage is open: convicted, but no per-agent alert.
    const off = await pass(s, T0 + 10_000);
    expect(off.transitions.map((t) => `${t.agent}:${t.to}`).sort()).toEqual(['c1:offline', 'c2:offline', 'c3:offline']);
    expect(await recentAlerts(s)).toHaveLength(1);
    expect((await readCounters(s))['alerts_suppressed_outage_total']).toBe(3);
    // Passes later open nothing more.
    expect((await pass(s, T0 + 11_000)).outages.opened).toEqual([]);
    // The host speaks again: one agent beats. The outage ends with one recovery notice; no per-agent recovery.
    await updateHeartbeat(s, { name: 'c1' }, await at(s, T0 + 12_000));
    const back = await pass(s, T0 + 12_500);
    expect(back.outages.ended).toMatchObject([{ host: 'host-c', reason: 'host host-c reachable again' }]);
    expect((await recentOutages(s))[0]).toMatchObject({ id: outage!.id, endedAt: T0 + 12_500, endedReason: 'a heartbeat from the host arrived' });
    for (const n of ['c2', 'c3']) await updateHeartbeat(s, { name: n }, await at(s, T0 + 13_000));
    await pass(s, T0 + 13_500);
    alerts = await recentAlerts(s);
    expect(alerts.map((a) => `${a.agentName}:${a.kind}`)).toEqual(['host:host-c:recovery', 'host:host-c:alert']);
    expect(alerts[0]!.payload).toMatchObject({ kind: 'host-recovery', host: 'host-c', outage_id: outage!.id });
    expect((await s.listEvents({})).filter((e) => e.evidence?.rule === 'outage').map((e) => e.reason)).toEqual(['host host-c unreachable: 3 agents', 'host host-c reachable again']);
    await s.close();
  });

  it("ends when a health loop on the host passes again, with one recovery notice", async () => {
    const s = await fresh();
    for (const n of ['f1', 'f2']) await onHost(s, 'host-f', n);
    expect((await pass(s, T0 + 3000)).outages.opened).toHaveLength(1);
    // host-f's own monitor comes back (its agents are still silent) and passes.
    const hostF = { host: 'host-f', bootId: 'boot-f', startTime: () => null };
    await checkHealth(s, await at(s, T0 + 4000), { local: hostF, loop: { host: 'host-f', bootId: 'boot-f', pid: 77, pidStartTime: 1 }, hold: false });
    const next = await pass(s, T0 + 4500);
    expect(next.outages.ended).toMatchObject([{ host: 'host-f' }]);
    expect((await recentOutages(s))[0]).toMatchObject({ endedAt: T0 + 4500, endedReason: 'a health loop on the host passed' });
    expect((await recentAlerts(s)).map((a) => `${a.agentName}:${a.kind}`)).toEqual(['host:host-f:recovery', 'host:host-f:alert']);
    // Its agents are still overdue, and its loop passes: judged one by one from now on, not a new outage.
    expect((await pass(s, T0 + 5000)).outages.opened).toEqual([]);
    await s.close();
  });

  it('a single dead agent on a live host is not an outage: it is judged and alerted on its own', async () => {
    const s = await fresh();
    await onHost(s, 'host-d', 'alive');
    await onHost(s, 'host-d', 'dead');
    for (let t = 1000; t <= 10_000; t += 1000) {
      await updateHeartbeat(s, { name: 'alive' }, await at(s, T0 + t));
      await pass(s, T0 + t);
    }
    expect(await recentOutages(s)).toEqual([]);
    expect((await s.getAgent('dead'))!).toMatchObject({ state: 'offline', stateReason: 'no heartbeat within the offline threshold' });
    expect((await recentAlerts(s)).map((a) => `${a.agentName}:${a.kind}`)).toEqual(['dead:alert']);
    await s.close();
  });

  it('a host whose health loop still passes is not silent; one whose loop went quiet with it is', async () => {
    const s = await fresh();
    for (const n of ['e1', 'e2']) await onHost(s, 'host-e', n);
    // host-e's own loop passes (as its monitor records itself) until T0 + 2000.
    const loopE = { host: 'host-e', bootId: 'boot-e', pid: 4242, pidStartTime: 1 };
    await checkHealth(s, await at(s, T0 + 1000), { local: { host: 'host-e', bootId: 'boot-e', startTime: () => null }, loop: loopE, everyMs: 1000, hold: false });
    await checkHealth(s, await at(s, T0 + 2000), { local: { host: 'host-e', bootId: 'boot-e', startTime: () => null }, loop: loopE, everyMs: 1000, hold: false });
    expect((await readLoops(s)).map((l) => l.host)).toContain('host-e');
    // At T0 + 3000 its agents are overdue but its loop passed 1 s ago (within its period and grace): no outage, and
    // their stale verdicts wait to see whether the whole host went silent (its loop passed before they fell due).
    const r = await pass(s, T0 + 3000);
    expect(r.outages.opened).toEqual([]);
    expect(r.held).toEqual(['e1', 'e2']);
    expect((await s.getAgent('e1'))!.state).toBe('active');
    // Its loop stays silent past its period and grace: the whole host is silent, one outage for both.
    expect((await pass(s, T0 + 4000)).held).toEqual(['e1', 'e2']);
    expect((await pass(s, T0 + 4001)).outages.opened).toMatchObject([{ host: 'host-e', count: 2 }]);
    for (const n of ['e1', 'e2']) expect((await s.getAgent(n))!.stateReason).toBe('host host-e unreachable: 2 agents');
    await s.close();
  });

  it('a frozen host whose agents fall due one by one: none is convicted alone before its outage, and one alert says it', async () => {
    const s = await fresh();
    // host-c's agents beat at different phases (due at T0 + 3000, + 3300, + 3700), its loop every second until
    // T0 + 800; then the whole host froze.
    const beats: Record<string, number> = { c1: T0, c2: T0 + 300, c3: T0 + 700 };
    for (const n of Object.keys(beats)) await s.register({ name: n, host: 'host-c', intervalMs: 1000, staleMultiplier: 3, offlineAfterMs: 10_000 }, await at(s, T0));
    for (const [n, when] of Object.entries(beats)) await updateHeartbeat(s, { name: n }, await at(s, when));
    const hostC = { host: 'host-c', bootId: 'boot-c', startTime: () => null };
    await checkHealth(s, await at(s, T0 + 800), { local: hostC, loop: { host: 'host-c', bootId: 'boot-c', pid: 55, pidStartTime: 1 }, everyMs: 1000, hold: false });
    // This monitor alerts on stale as well as offline, and passes every 250 ms.
    const heldAt: Record<number, string[]> = {};
    const transitions: string[] = [];
    for (let t = 1000; t <= 3750; t += 250) {
      const r = await pass(s, T0 + t, { alertOn: ['stale', 'offline'] });
      if (r.held.length) heldAt[t] = r.held;
      transitions.push(...r.transitions.map((x) => `${t} ${x.agent} ${x.to}: ${x.reason}`));
    }
    expect((await recentAlerts(s)).map((a) => `${a.agentName}:${a.kind}`)).toEqual(['host:host-c:alert']);
    expect(transitions.sort()).toEqual(['c1', 'c2', 'c3'].map((n) => `3750 ${n} stale: host host-c unreachable: 3 agents`));
    expect((await s.listEvents({})).filter((e) => e.reason === 'heartbeat overdue')).toEqual([]);
    // Each stale verdict was held from its own deadline until the host was silent, the moment its slowest agent was.
    expect(heldAt).toEqual({ 3000: ['c1'], 3250: ['c1'], 3500: ['c1', 'c2'] });
    await s.close();
  });

  it('a stale verdict held for its host is told in the monitor log and by the held event', async () => {
    const s = await fresh();
    await onHost(s, 'host-g', 'g1', T0);
    await onHost(s, 'host-g', 'g2', T0 + 500);
    const lines: string[] = [];
    await at(s, T0 + 3000);
    const monitor = new HeartbeatHealthAgent({ store: s, clock: { now: () => T0 + 3000, monotonic: () => 0 }, policy: { local: observer, hold: false }, logger: { info: (m) => lines.push(`info ${m}`), warn: (m) => lines.push(`warn ${m}`) } });
    const events: [string[], string][] = [];
    monitor.on('held', (names: string[], reason: string) => events.push([names, reason]));
    const r = await monitor.checkAgentHealth();
    expect(r.holds).toEqual([{ rule: 'host', agents: ['g1'], reason: expect.stringContaining('host host-g') }]);
    expect(events).toEqual([[['g1'], r.holds[0]!.reason]]);
    // Told as information: waiting for a host's fate is the ordinary course of a host going silent.
    expect(lines).toEqual([`info pass ${r.pass}: ${r.holds[0]!.reason}: g1`]);
    expect(r.holds[0]!.reason).toMatch(/^nothing heard from host host-g since its agents fell due; holding their stale verdicts until it is clear whether the whole host went silent \(.+ at most\)$/);
    await s.close();
  });

  it('an agent that hangs alone beside one that beats on is judged alone, by the first pass after that beat', async () => {
    const s = await fresh();
    // d1 hangs after its beat at T0 + 500 (due at T0 + 3500); d2 beats every second, on the second.
    await onHost(s, 'host-d', 'd1', T0 + 500);
    await onHost(s, 'host-d', 'd2', T0);
    const log: string[] = [];
    for (let t = 1000; t <= 4500; t += 250) {
      if (t % 1000 === 0) await updateHeartbeat(s, { name: 'd2' }, await at(s, T0 + t));
      const r = await pass(s, T0 + t, { alertOn: ['stale', 'offline'] });
      log.push(...r.held.map((n) => `${t} held ${n}`), ...r.transitions.map((x) => `${t} ${x.agent} ${x.to}: ${x.reason}`));
    }
    expect(log).toEqual(['3500 held d1', '3750 held d1', '4000 d1 stale: heartbeat overdue']);
    expect(await recentOutages(s)).toEqual([]);
    expect((await recentAlerts(s)).map((a) => `${a.agentName}:${a.kind}`)).toEqual(['d1:alert']);
    await s.close();
  });

  it("an agent that hangs alone while its host's health loop keeps passing is judged alone, by the pass after the loop's", async () => {
    const s = await fresh();
    // h1 hangs after its beat at T0 (due at T0 + 3000); h2 beats every 2 s (stale after 6 s); host-h's own loop
    // passes every second, at T0 + 900, + 1900, ...
    await onHost(s, 'host-h', 'h1', T0);
    await s.register({ name: 'h2', host: 'host-h', intervalMs: 2000, staleMultiplier: 3, offlineAfterMs: 20_000 }, await at(s, T0));
    await updateHeartbeat(s, { name: 'h2' }, await at(s, T0));
    const hostH = { host: 'host-h', bootId: 'boot-h', startTime: () => null };
    const loopH = { host: 'host-h', bootId: 'boot-h', pid: 66, pidStartTime: 1 };
    const log: string[] = [];
    for (let t = 1000; t <= 4500; t += 250) {
      if (t % 2000 === 0) await updateHeartbeat(s, { name: 'h2' }, await at(s, T0 + t));
      if (t % 1000 === 0) {
        const own = await checkHealth(s, await at(s, T0 + t - 100), { local: hostH, loop: loopH, everyMs: 1000, hold: false });
        log.push(...own.transitions.map((x) => `${t - 100} (host-h's loop) ${x.agent} ${x.to}: ${x.reason}`));
      }
      const r = await pass(s, T0 + t, { alertOn: ['stale', 'offline'] });
      log.push(...r.held.map((n) => `${t} held ${n}`), ...r.transitions.map((x) => `${t} ${x.agent} ${x.to}: ${x.reason}`));
    }
    // Held by the other monitor until the host's loop passed again, which judged it by its own contract.
    expect(log).toEqual(['3000 held h1', '3250 held h1', '3500 held h1', '3750 held h1', "3900 (host-h's loop) h1 stale: heartbeat overdue"]);
    expect(await recentOutages(s)).toEqual([]);
    await s.close();
  });

  it('several monitors (real processes) passing at once over one database make each transition, outage and alert once', async () => {
    const db = tempDb();
    const s = await openStore({ path: db });
    for (const n of ['x1', 'x2']) await onHost(s, 'host-x', n);
    for (const n of ['solo1', 'solo2', 'solo3']) {
      await s.register({ name: n, intervalMs: 1000, staleMultiplier: 3, offlineAfterMs: 10_000 }, T0);
      await updateHeartbeat(s, { name: n }, T0);
    }
    await s.close();
    const script = `
      const { openStore, checkHealth } = await import(${JSON.stringify(pathToFileURL(join(DIST, 'index.js')).href)});
      const { claimDeliveries } = await import(${JSON.stringify(pathToFileURL(join(DIST, 'store/alerts.js')).href)});
      const [db, me] = process.argv.slice(1);
      const s = await openStore({ path: db });
      const local = { host: 'monitor-' + me, bootId: 'b' + me, startTime: () => null };
      const claimed = [];
      for (const t of [3000, 3000, 10000, 10000, 10000, 12000]) {
        await checkHealth(s, ${T0} + t, { local, targets: ['exec:true'], hold: false });
        for (const d of await claimDeliveries(s, ['exec:true'], ${T0} + t, ${T0} + t + 3600000)) claimed.push(d.alertId);
      }
      console.log(JSON.stringify(claimed));
      await s.close();`;
    const children = [1, 2, 3].map((i) => start(process.execPath, ['--input-type=module', '-e', script, db, String(i)]));
    const results = [];
    for (const c of children) results.push({ code: (await exited(c)).code, out: c.output(), err: c.errors() });
    for (const r of results) expect({ code: r.code, err: r.err }).toEqual({ code: 0, err: '' });
    const claimed = results.flatMap((r) => JSON.parse(r.out.trim()) as number[]);
    const raw = new Database(db, { readonly: true });
    // Each transition once: per agent, no two events with the same from and to in a row.
    const events = raw.prepare("SELECT agent_name, from_state, to_state FROM events WHERE from_state IS NOT to_state ORDER BY id").all() as { agent_name: string; from_state: string | null; to_state: string }[];
    const per = new Map<string, string[]>();
    for (const e of events) per.set(e.agent_name, [...(per.get(e.agent_name) ?? []), `${e.from_state}>${e.to_state}`]);
    for (const n of ['solo1', 'solo2', 'solo3']) expect(per.get(n)).toEqual(['null>initializing', 'initializing>active', 'active>stale', 'stale>offline']);
    for (const n of ['x1', 'x2']) expect(per.get(n)).toEqual(['null>initializing', 'initializing>active', 'active>stale', 'stale>offline']);
    expect(raw.prepare("SELECT count(*) FROM events WHERE json_extract(evidence, '$.rule') = 'outage'").pluck().get()).toBe(1);
    expect(raw.prepare('SELECT count(*) FROM host_outages').pluck().get()).toBe(1);
    // Each alert once: one offline alert per lone agent, one host alert, none for the host's agents.
    const alerts = raw.prepare('SELECT id, agent_name, kind FROM alerts ORDER BY agent_name').all() as { id: number; agent_name: string; kind: string }[];
    expect(alerts.map((a) => `${a.agent_name}:${a.kind}`)).toEqual(['host:host-x:alert', 'solo1:alert', 'solo2:alert', 'solo3:alert']);
    // Each delivery claimed by exactly one monitor.
    expect([...claimed].sort((a, b) => a - b)).toEqual(alerts.map((a) => a.id).sort((a, b) => a - b));
    // Every monitor recorded its own loop.
    expect((raw.prepare('SELECT host FROM health_loops ORDER BY host').pluck().all() as string[])).toEqual(['monitor-1', 'monitor-2', 'monitor-3']);
    raw.close();
  });
});

describe('health_loops', () => {
  it('a pass records its loop; it deletes the rows of its host whose process is gone or from another boot, and rows older than 7 days', async () => {
    const s = await fresh();
    const row = async (host: string, boot: string, pid: number, start: number, when: number) =>
      await s.sql.run('INSERT INTO health_loops (host, boot_id, pid, pid_start_time, started_at, passes, last_pass_at) VALUES (?, ?, ?, ?, ?, 1, ?)', [host, boot, pid, start, when, when]);
    // On this (test) host: a loop whose process is alive, one that is gone, one whose pid is now another process, one from an older boot.
    const alive = new Map([[101, 5], [103, 9]]);
    const local = { host: 'here', bootId: 'boot-now', startTime: (pid: number) => alive.get(pid) ?? null };
    await row('here', 'boot-now', 101, 5, T0);
    await row('here', 'boot-now', 102, 5, T0);
    await row('here', 'boot-now', 103, 5, T0);
    await row('here', 'boot-old', 101, 5, T0);
    // Elsewhere: a recent loop stays (this host cannot judge its process); one silent for more than 7 days goes.
    await row('there', 'boot-x', 7, 1, T0);
    await row('far', 'boot-y', 8, 1, T0 - 8 * 24 * 3600_000);
    const me = { host: 'here', bootId: 'boot-now', pid: 999, pidStartTime: 42 };
    await checkHealth(s, await at(s, T0 + 1000), { local, loop: me, everyMs: 1000 });
    const loops = await readLoops(s);
    expect(loops.map((l) => `${l.host}/${l.bootId}/${l.pid}`).sort()).toEqual(['here/boot-now/101', 'here/boot-now/999', 'there/boot-x/7']);
    expect(loops.find((l) => l.pid === 999)).toMatchObject({ passes: 1, lastPassAt: T0 + 1000, everyMs: 1000, startedAt: T0 + 1000 });
    await checkHealth(s, await at(s, T0 + 2000), { local, loop: me, everyMs: 1000 });
    expect((await readLoops(s)).find((l) => l.pid === 999)).toMatchObject({ passes: 2, lastPassAt: T0 + 2000, startedAt: T0 + 1000 });
    await s.close();
  });

  it("status --json lists the loops seen and their hosts; a loop's clean stop is recorded", async () => {
    const db = tempDb();
    expect(cli(['monitor', '--once', '--every', '1m'], { db }).code).toBe(0);
    const loop = cliJson(['status'], { db }).healthLoop;
    expect(loop).toMatchObject({ ran: true, overdue: false, hosts: [hostname()] });
    expect(loop.loops).toMatchObject([{ host: hostname(), everyMs: 60_000, passes: 1, overdue: false, stoppedAt: null }]);
    const s = await openStore({ path: db });
    const agent = new HeartbeatHealthAgent({ store: s, everyMs: 50 });
    const running = agent.start();
    await waitFor(async () => (await readLoops(s)).some((l) => l.pid === process.pid && l.passes >= 1), 'the loop to pass');
    await agent.stop();
    await running;
    expect((await readLoops(s)).find((l) => l.pid === process.pid)!.stoppedAt).not.toBeNull();
    await s.close();
  });
});
