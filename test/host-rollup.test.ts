// The host roll-up rule (src/core/health/hosts.ts): which hosts are silent as a whole, from agents' facts, the
// health loops seen per host and `now`. A pure function: examples for each rule, then properties over random fleets.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type HoldAgentFacts, type HostAgentFacts, type MonitorSighting, HOST_HOLD_CAP_MS, MONITOR_GRACE_MS, hostHolds, monitorSilentAfterMs, silentHosts } from '../src/core/health/hosts.js';
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

/** An agent as hostHolds reads it: beating every second (stale after 3 s), offline after 10 s, last beat at `beat`. */
function held(host: string | null, beat: number | null, extra: Partial<HoldAgentFacts> = {}): HoldAgentFacts {
  return { ...agent(host, beat), offlineAfterMs: 10_000, ...extra };
}
const heldNames = (r: ReturnType<typeof hostHolds>) => r.map((h) => h.agent);

describe('held stale verdicts while a host may be going silent', () => {
  it('a frozen host whose agents fall due one by one: each is held from its own deadline until the host is silent', () => {
    // Frozen at T: its agents last beat at T, T - 300 and T - 700 (due at T + 3000, T + 2700, T + 2300); its loop
    // passed at T - 100, every second (silent once 2 s have passed).
    const [a, b, c] = [held('c', T, { name: 'a' }), held('c', T - 300, { name: 'b' }), held('c', T - 700, { name: 'c' })];
    const loops = [loop('c', T - 100)];
    expect(hostHolds([a, b, c], loops, T + 2299)).toEqual([]);
    expect(hostHolds([a, b, c], loops, T + 2300)).toEqual([{ agent: 'c', host: 'c', dueAt: T + 2300, until: T + 3000 }]);
    expect(heldNames(hostHolds([a, b, c], loops, T + 2999))).toEqual(['b', 'c']);
    expect(silentHosts([a, b, c], loops, T + 2999)).toEqual([]);
    // The moment the host is silent, the hold ends: the outage takes them all.
    expect(hostHolds([a, b, c], loops, T + 3000)).toEqual([]);
    expect(silentHosts([a, b, c], loops, T + 3000)[0]!.agents).toEqual(['a', 'b', 'c']);
    // Its loop decides last: held until it is silent (strictly past its period and grace).
    const late = [loop('c', T + 1500)];
    expect(hostHolds([a, b, c], late, T + 3000)).toMatchObject([{ agent: 'a', until: T + 3501 }, { agent: 'b' }, { agent: 'c' }]);
    expect(hostHolds([a, b, c], late, T + 3501)).toEqual([]);
    expect(hostsOf(silentHosts([a, b, c], late, T + 3501))).toEqual(['c']);
  });

  it('a sign of life at or after the deadline ends the hold: another agent beating or starting, or a loop passing', () => {
    const hung = held('c', T - 700, { name: 'hung' }); // due at T + 2300
    const now = T + 2500;
    expect(heldNames(hostHolds([hung, held('c', T + 2299)], [], now))).toEqual(['hung']);
    expect(hostHolds([hung, held('c', T + 2300)], [], now)).toEqual([]);
    expect(hostHolds([hung, held('c', null, { startedAt: T + 2400 })], [], now)).toEqual([]);
    const other = held('c', T);
    expect(heldNames(hostHolds([hung, other], [loop('c', T + 2299)], now))).toEqual(['hung']);
    expect(hostHolds([hung, other], [loop('c', T + 2300)], now)).toEqual([]);
    // A loop elsewhere, or an agent beating on another host, says nothing about this one.
    expect(heldNames(hostHolds([hung, other, held('b', now)], [loop('b', now)], now))).toEqual(['hung']);
  });

  it("the observer's host, agents with no host and a host with a single live agent are never held", () => {
    const pair = [held('a', T - 700), held('a', T)];
    expect(heldNames(hostHolds(pair, [], T + 2500))).toEqual([pair[0]!.name]);
    expect(hostHolds(pair, [], T + 2500, { observerHost: 'a' })).toEqual([]);
    expect(hostHolds([held(null, T - 700), held(null, T)], [], T + 2500)).toEqual([]);
    const others = [held('c', T, { state: 'offline' }), held('c', T, { state: 'failed' }), held('c', T, { state: 'maintenance' }), held('c', T, { deregisteredAt: T })];
    expect(hostHolds([held('c', T - 700), ...others], [], T + 2500)).toEqual([]);
  });

  it('a host that can no longer be silent without a new sign of life holds nothing: its agents went quiet one by one', () => {
    // b was already overdue when a last beat: a's silence since is its own, all overdue and no loop or not.
    const a = held('c', T);
    const b = held('c', T - 5000, { offlineAfterMs: 60_000 });
    expect(hostHolds([a, b], [], T + 3000)).toEqual([]);
    expect(silentHosts([a, b], [], T + 3000)).toEqual([]);
    // An agent already stale (or with no stale verdict left to give) is not held either.
    const x = held('c', T - 700, { state: 'stale' });
    expect(hostHolds([x, held('c', T)], [], T + 2500)).toEqual([]);
  });

  it("the offline threshold is never delayed: past it there is nothing to hold, and a host silent only after it holds nothing", () => {
    const others = [held('c', T), held('c', T)]; // the host is silent at T + 3000
    // Offline at T - 700 + 3700 = T + 3000: the host is silent in time, the stale verdict is held until then.
    expect(heldNames(hostHolds([held('c', T - 700, { name: 'x', offlineAfterMs: 3700 }), ...others], [], T + 2500))).toEqual(['x']);
    // Offline at T + 2999, before the host could be silent: judged alone at once.
    expect(hostHolds([held('c', T - 700, { offlineAfterMs: 3699 }), ...others], [], T + 2500)).toEqual([]);
    // Past its offline threshold an agent has an offline verdict, never held.
    const old = held('c', T - 700, { offlineAfterMs: 3000 });
    expect(hostHolds([old, held('c', T, { intervalMs: 2000 })], [], T + 2400)).toEqual([]);
  });

  it('a host found silent only long after the deadline holds nothing: the cap (3 minutes by default)', () => {
    // A hung agent beating every second beside one whose contract allows an hour, and no loop on the host.
    const fast = held('c', T, { name: 'fast' });
    const slow = held('c', T, { name: 'slow', intervalMs: 1_200_000, staleMultiplier: 3, offlineAfterMs: 7_200_000 });
    expect(hostHolds([fast, slow], [], T + 3000)).toEqual([]);
    expect(heldNames(hostHolds([{ ...fast, offlineAfterMs: 7_200_000 }, slow], [], T + 3000, { holdCapMs: 3_600_000 }))).toEqual(['fast']);
    // Exactly at the cap it holds; a millisecond beyond, not.
    const atCap = held('c', T, { intervalMs: (3000 + HOST_HOLD_CAP_MS) / 3 });
    const fastLong = held('c', T, { name: 'fast', offlineAfterMs: 3_600_000 });
    expect(heldNames(hostHolds([fastLong, atCap], [], T + 3000))).toEqual(['fast']);
    expect(hostHolds([fastLong, { ...atCap, intervalMs: atCap.intervalMs + 1 }], [], T + 3000)).toEqual([]);
    // A loop run by cron every minute on the host is waited for (silent two minutes after its last pass), except by
    // an agent whose offline threshold comes first.
    expect(heldNames(hostHolds([fastLong, held('c', T, { name: 'quick' })], [loop('c', T - 1, null)], T + 3000))).toEqual(['fast']);
  });
});

describe('held stale verdicts: properties', () => {
  const arbHoldFleet = fc
    .tuple(arbFleet, fc.array(fc.integer({ min: 1, max: 40_000 }), { minLength: 14, maxLength: 14 }))
    .map(([list, offline]) => list.map((a, i) => ({ ...a, offlineAfterMs: offline[i]! }) as HoldAgentFacts));
  const arbCap = fc.option(fc.integer({ min: 0, max: 20_000 }), { freq: 3 });

  // A host h1 that froze at T (each agent's last beat within its interval before, some beating again later) beside
  // a random fleet on the other hosts; its loops passed around T; `now` runs through the agents' deadlines.
  const arbFrozen = fc
    .record({
      contracts: fc.array(
        fc.record({
          intervalMs: fc.integer({ min: 1, max: 3000 }),
          staleMultiplier: fc.constantFrom(1, 1.5, 2, 3),
          beatFrac: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
          offlineAfterMs: fc.integer({ min: 1, max: 40_000 }).map((n) => (n < 20_000 ? n : n - 15_000)),
          state: fc.constantFrom<HoldAgentFacts['state']>('active', 'active', 'error', 'initializing', 'stale'),
          // Mostly silent since the freeze; now and then one that beats again (a sign of life).
          wokeAfter: fc.oneof({ arbitrary: fc.constant(null), weight: 6 }, { arbitrary: fc.integer({ min: 0, max: 15_000 }), weight: 1 }),
        }),
        { minLength: 1, maxLength: 5 },
      ),
      loops: fc.array(fc.record({ at: fc.integer({ min: -3000, max: 1000 }), everyMs: fc.option(fc.integer({ min: 1, max: 3000 }), { freq: 6 }) }), { maxLength: 2 }),
    })
    .map(({ contracts, loops }) => ({
      agents: contracts.map((c, i) => held('h1', c.wokeAfter === null ? T - Math.floor(c.beatFrac * c.intervalMs) : T + c.wokeAfter, { name: `f${i}`, ...c })),
      loops: loops.map((l) => loop('h1', T + l.at, l.everyMs)),
    }));
  const arbMixed = fc.tuple(arbFrozen, arbHoldFleet, arbLoops, fc.integer({ min: 0, max: 8000 })).map(([f, fleet, loops, offset]) => ({ agents: [...f.agents, ...fleet.map((a) => (a.host === 'h1' ? { ...a, host: 'h2' } : a))], loops: [...f.loops, ...loops], now: T + offset }));

  it('a held agent is overdue on a remote host that is not silent yet, and that host is silent at `until` with it among its agents if nothing speaks', () => {
    let seen = 0;
    fc.assert(
      fc.property(arbMixed, fc.constantFrom<string | null>(null, ...HOSTS), arbCap, ({ agents, loops, now }, observer, cap) => {
        const opts = { observerHost: observer, ...(cap === null ? {} : { holdCapMs: cap }) };
        const holds = hostHolds(agents, loops, now, opts);
        seen += holds.length;
        for (const h of holds) {
          const a = agents.find((x) => x.name === h.agent)!;
          expect(h.host).not.toBe(observer);
          expect(a.host).toBe(h.host);
          expect(isLive(a) && a.state !== 'stale').toBe(true);
          expect(h.dueAt).toBe(clockStart(a) + staleAfterMs(a));
          expect(now).toBeGreaterThanOrEqual(h.dueAt);
          expect(now).toBeLessThan(h.until);
          expect(h.until).toBeLessThanOrEqual(Math.min(clockStart(a) + a.offlineAfterMs, h.dueAt + (cap ?? HOST_HOLD_CAP_MS)));
          // Nothing on the host spoke since the deadline.
          expect(agents.some((x) => x.host === h.host && isLive(x) && clockStart(x) >= h.dueAt)).toBe(false);
          expect(loops.some((m) => m.host === h.host && m.lastPassAt !== null && m.lastPassAt >= h.dueAt)).toBe(false);
          expect(hostsOf(silentHosts(agents, loops, now, opts))).not.toContain(h.host);
          const later = silentHosts(agents, loops, h.until, opts).find((x) => x.host === h.host);
          expect(later?.agents).toContain(h.agent);
        }
      }),
      { numRuns: 3000 },
    );
    // The random fleets do reach the rule.
    expect(seen).toBeGreaterThan(30);
  });
});
