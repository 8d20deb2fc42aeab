// The host roll-up rule (src/core/health/hosts.ts): which hosts are silent as a whole, from agents' facts, the
// health loops seen per host and `now`. A pure function: examples for each rule, then properties over random fleets.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type HostAgentFacts, type MonitorSighting, MONITOR_GRACE_MS, monitorSilentAfterMs, silentHosts } from '../src/core/health/hosts.js';
import { AGENT_STATES } from '../src/store/rows.js';
import { clockStart, staleAfterMs } from '../src/core/state.js';

const T = 1_000_000; // the moment a host goes silent in the examples
let seq = 0;
/** An agent beating every second (stale after 3 s), last beat at `beat`. */
function agent(host: string | null, beat: number | null, extra: Partial<HostAgentFacts> = {}): HostAgentFacts {
  return { name: `agent-${++seq}`, host, state: 'active', deregisteredAt: null, lastHeartbeatAt: beat, startedAt: 0, intervalMs: 1000, staleMultiplier: 3, ...extra };
}
const loop = (host: string | null, lastPassAt: number | null, everyMs: number | null = 1000): MonitorSighting => ({ host, lastPassAt, everyMs });
const hostsOf = (r: ReturnType<typeof silentHosts>) => r.map((h) => h.host);

describe('silent hosts: the rules', () => {
  it('a host whose agents and health loop all stopped together is silent: one reason for all of them', () => {
    const agents = [agent('c', T - 200), agent('c', T - 900), agent('c', T), agent('b', T + 9_900)];
    const r = silentHosts(agents, [loop('c', T - 500), loop('b', T + 9_800)], T + 10_000);
    expect(r).toEqual([
      { host: 'c', agents: agents.slice(0, 3).map((a) => a.name).sort(), count: 3, silentSince: T, lastMonitorPassAt: T - 500, alreadyOverdue: [], reason: 'host c unreachable: 3 agents' },
    ]);
  });

  it('one agent still within its window keeps its host reachable', () => {
    const agents = [agent('c', T), agent('c', T), agent('c', T, { intervalMs: 10_000 })];
    expect(silentHosts(agents, [], T + 29_999)).toEqual([]);
    expect(hostsOf(silentHosts(agents, [], T + 30_000))).toEqual(['c']);
  });

  it("a health loop that passed within its period and a grace keeps its host reachable; past it, it is silent", () => {
    const agents = [agent('c', T), agent('c', T)];
    const every = 500;
    const silentAfter = monitorSilentAfterMs(every);
    expect(silentAfter).toBe(every + MONITOR_GRACE_MS);
    expect(silentHosts(agents, [loop('c', T + 2000, every)], T + 2000 + silentAfter)).toEqual([]);
    expect(hostsOf(silentHosts(agents, [loop('c', T + 2000, every)], T + 2000 + silentAfter + 1))).toEqual(['c']);
    // Any one of the host's loops passing is enough.
    expect(silentHosts(agents, [loop('c', T), loop('c', T + 9_000, every)], T + 10_000)).toEqual([]);
    // A long period gets a grace of one more period; a cron run (no period) is taken to run every minute.
    expect(monitorSilentAfterMs(60_000)).toBe(120_000);
    expect(monitorSilentAfterMs(null)).toBe(120_000);
    expect(silentHosts(agents, [loop('c', T, null)], T + 120_000)).toEqual([]);
    expect(hostsOf(silentHosts(agents, [loop('c', T, null)], T + 120_001))).toEqual(['c']);
  });

  it('a loop that kept passing after its agents went overdue judged them itself: no host event', () => {
    // The agents stopped at T; the loop on the same host passed until T + 5 s (past their 3 s windows), then stopped.
    const agents = [agent('c', T), agent('c', T)];
    const r = silentHosts(agents, [loop('c', T + 5000)], T + 60_000);
    expect(r).toEqual([]);
  });

  it('a host with one live agent is never silent, however long it is quiet', () => {
    expect(silentHosts([agent('c', T)], [loop('c', T)], T + 3_600_000)).toEqual([]);
    // Nor one with a single live agent beside offline, failed, maintenance and deregistered ones.
    const others = [agent('c', T, { state: 'offline' }), agent('c', T, { state: 'failed' }), agent('c', T, { state: 'maintenance' }), agent('c', T, { deregisteredAt: T })];
    expect(silentHosts([agent('c', T), ...others], [], T + 60_000)).toEqual([]);
    // Two live ones among them are counted, the rest not.
    const live = [agent('c', T, { state: 'stale' }), agent('c', T, { state: 'initializing', lastHeartbeatAt: null, startedAt: T })];
    const r = silentHosts([...live, ...others], [], T + 60_000);
    expect(r.map((h) => [h.host, h.agents, h.count])).toEqual([['c', live.map((a) => a.name).sort(), 2]]);
  });

  it('agents that died one by one are not a silent host; two that stopped together are, without those that died before', () => {
    const early = agent('c', T - 60_000);
    const one = [early, agent('c', T - 30_000), agent('c', T)];
    expect(silentHosts(one, [], T + 60_000)).toEqual([]);
    const pair = [agent('c', T), agent('c', T - 2_999)];
    const r = silentHosts([early, ...pair], [], T + 60_000);
    expect(r).toHaveLength(1);
    expect(r[0].agents).toEqual(pair.map((a) => a.name).sort());
    expect(r[0].alreadyOverdue).toEqual([early.name]);
    expect(r[0].reason).toBe('host c unreachable: 2 agents');
    // "Together" is each agent's own window back from the host's last sign of life: 3 s is one too many.
    expect(silentHosts([agent('c', T), agent('c', T - 3000)], [], T + 60_000)).toEqual([]);
  });

  it("the observer's own host is never silent; agents with no host are never rolled up; a host never seen with a loop is judged by its agents", () => {
    const agents = [agent('a', T), agent('a', T), agent(null, T), agent(null, T), agent('c', T), agent('c', T)];
    expect(hostsOf(silentHosts(agents, [], T + 60_000))).toEqual(['a', 'c']);
    expect(hostsOf(silentHosts(agents, [], T + 60_000, { observerHost: 'a' }))).toEqual(['c']);
    expect(silentHosts(agents, [], T + 60_000, { observerHost: 'c' })[0].lastMonitorPassAt).toBeNull();
  });

  it('minAgents raises the bar, never below two', () => {
    const agents = [agent('c', T), agent('c', T), agent('c', T)];
    expect(silentHosts(agents, [], T + 60_000, { minAgents: 4 })).toEqual([]);
    expect(hostsOf(silentHosts(agents, [], T + 60_000, { minAgents: 3 }))).toEqual(['c']);
    expect(silentHosts([agent('c', T)], [], T + 60_000, { minAgents: 1 })).toEqual([]);
  });
});

// Random fleets over a few hosts, on a small time scale so that every rule's boundary is often hit.
const HOSTS = ['h1', 'h2', 'h3'];
const arbAgent = fc.record({
  host: fc.constantFrom<string | null>(...HOSTS, null),
  state: fc.constantFrom(...AGENT_STATES),
  deregisteredAt: fc.option(fc.constant(1), { freq: 8 }),
  lastHeartbeatAt: fc.option(fc.integer({ min: 0, max: 20_000 }), { freq: 6 }),
  startedAt: fc.integer({ min: 0, max: 20_000 }),
  intervalMs: fc.integer({ min: 1, max: 3000 }),
  staleMultiplier: fc.constantFrom(1, 1.5, 2, 3),
});
const arbFleet = fc.array(arbAgent, { maxLength: 14 }).map((list) => list.map((a, i) => ({ name: `agent-${i}`, ...a }) as HostAgentFacts));
const arbLoops = fc.array(
  fc.record({ host: fc.constantFrom<string | null>(...HOSTS, null), lastPassAt: fc.option(fc.integer({ min: 0, max: 20_000 }), { freq: 6 }), everyMs: fc.option(fc.integer({ min: 1, max: 3000 }), { freq: 6 }) }),
  { maxLength: 4 },
);
const arbNow = fc.integer({ min: 0, max: 30_000 });
const isLive = (a: HostAgentFacts) => a.deregisteredAt === null && !['offline', 'failed', 'maintenance'].includes(a.state);
const withinWindow = (a: HostAgentFacts, at: number) => at - clockStart(a) < staleAfterMs(a);

describe('silent hosts: properties', () => {
  it('a host with a live agent within its window, or a loop within its period and grace, is never silent', () => {
    fc.assert(
      fc.property(arbFleet, arbLoops, arbNow, (agents, loops, now) => {
        for (const h of silentHosts(agents, loops, now)) {
          expect(agents.some((a) => a.host === h.host && isLive(a) && withinWindow(a, now))).toBe(false);
          expect(loops.some((m) => m.host === h.host && m.lastPassAt !== null && now - m.lastPassAt <= monitorSilentAfterMs(m.everyMs))).toBe(false);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it("a silent host's agents and its already-overdue ones are exactly its live agents, all overdue, split at its last sign of life", () => {
    fc.assert(
      fc.property(arbFleet, arbLoops, arbNow, fc.constantFrom<string | null>(null, ...HOSTS), (agents, loops, now, observer) => {
        for (const h of silentHosts(agents, loops, now, { observerHost: observer })) {
          expect(h.host).not.toBe(observer);
          const live = agents.filter((a) => a.host === h.host && isLive(a));
          expect([...h.agents, ...h.alreadyOverdue].sort()).toEqual(live.map((a) => a.name).sort());
          expect(new Set([...h.agents, ...h.alreadyOverdue]).size).toBe(live.length);
          const passes = loops.filter((m) => m.host === h.host && m.lastPassAt !== null).map((m) => m.lastPassAt!);
          expect(h.silentSince).toBe(Math.max(...live.map(clockStart), ...passes));
          for (const a of live) {
            expect(withinWindow(a, now)).toBe(false);
            expect(h.agents.includes(a.name)).toBe(withinWindow(a, h.silentSince));
          }
          expect(h.count).toBe(h.agents.length);
          expect(h.count).toBeGreaterThanOrEqual(2);
          expect(h.reason).toBe(`host ${h.host} unreachable: ${h.count} agents`);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('the order of the rows read does not matter', () => {
    fc.assert(
      fc.property(arbFleet, arbLoops, arbNow, fc.integer(), (agents, loops, now, seed) => {
        const shuffle = <X>(xs: X[]) => xs.map((x, i) => ({ x, k: Math.sin(seed + i) })).sort((p, q) => p.k - q.k).map((p) => p.x);
        expect(silentHosts(shuffle(agents), shuffle(loops), now)).toEqual(silentHosts(agents, loops, now));
      }),
      { numRuns: 500 },
    );
  });

  it('a host frozen as a whole is found silent with all its agents once its slowest window and its loop have passed; a beating host beside it is not', () => {
    const arbContract = fc.record({ intervalMs: fc.integer({ min: 1, max: 5000 }), staleMultiplier: fc.constantFrom(1.5, 2, 3), beatFrac: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }) });
    fc.assert(
      fc.property(
        fc.array(arbContract, { minLength: 2, maxLength: 8 }),
        fc.integer({ min: 1, max: 5000 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        fc.integer({ min: 0, max: 100_000 }),
        (contracts, every, passFrac, extra) => {
          // Until the freeze at T every agent beat once per interval and the loop passed once per period, so each
          // last beat (and the last pass) falls within one period before T.
          const frozen = contracts.map((c, i) => agent('frozen', T - Math.floor(c.beatFrac * c.intervalMs), { name: `f${i}`, intervalMs: c.intervalMs, staleMultiplier: c.staleMultiplier }));
          const lastPass = T - Math.floor(passFrac * every);
          const overdueAt = Math.max(...frozen.map((a) => clockStart(a) + staleAfterMs(a)), lastPass + monitorSilentAfterMs(every) + 1);
          const now = overdueAt + extra;
          // The other host beats on, its last beat within its interval before now.
          const awake = [agent('awake', now - 10), agent('awake', now - 999)];
          const r = silentHosts([...awake, ...frozen], [loop('frozen', lastPass, every), loop('awake', now - 5, every)], now);
          expect(r.map((h) => [h.host, h.agents, h.alreadyOverdue])).toEqual([['frozen', frozen.map((a) => a.name).sort(), []]]);
        },
      ),
      { numRuns: 1000 },
    );
  });
});
