import type { Store } from '../../store/store.js';
import type { AgentRecord, AgentState } from '../../store/rows.js';
import { anyHeld, countWatched, dueAgents, lockAgents, readHeld, readLoops, replaceHeld, writeGuardedTransition } from '../../store/monitor.js';
import { liveAgentsOn } from '../../store/outages.js';
import { formatDuration } from '../duration.js';
import { type HostHold, hostHolds } from './hosts.js';
import { type LocalHost, type Verdict, judgeAgent, thisHost } from './judge.js';

/** The mass-conviction rule: hold convictions when at least `minAgents` and more than `fraction` of the watched agents would be convicted at once. */
export interface HoldRule {
  minAgents: number;
  fraction: number;
}

export const DEFAULT_HOLD: HoldRule = { minAgents: 3, fraction: 0.5 };

export interface ConvictOptions {
  local?: LocalHost;
  /** Hold a mass conviction for one pass (default: the 3-agent, more-than-half rule); false convicts at once. */
  hold?: HoldRule | false;
  /** Written into each event's evidence as `pass`. */
  passSeq?: number;
  /** Hold stale verdicts on other hosts while their host's fate is undecided (core/health/hosts.ts; default true). */
  hostHold?: boolean;
}

/** A transition a pass wrote. */
export interface AppliedTransition {
  agent: string;
  agentId: number;
  from: AgentState;
  to: AgentState;
  kind: Verdict['kind'];
  since: number;
  reason: string;
  evidence: Record<string, unknown>;
}

/** Verdicts held together, and why: by the mass-conviction rule, or while their host's fate is undecided. */
export interface HeldGroup {
  rule: 'mass' | 'host';
  reason: string;
  agents: string[];
}

export interface ConvictResult {
  applied: AppliedTransition[];
  /** Agents whose conviction is held this pass, by either rule (the mass-conviction rule, or their host's silence). */
  held: string[];
  /** Why the mass-conviction rule held convictions, if it did. */
  holdReason: string | null;
  /** Each group of held verdicts with its reason: the mass-conviction rule's, and one per host whose fate is undecided. */
  holds: HeldGroup[];
}

export const NO_CONVICTIONS: ConvictResult = { applied: [], held: [], holdReason: null, holds: [] };

/** The verdicts of every agent that is due at `now` (one per agent: a crash proof wins over the clock). */
export async function findVerdicts(store: Store, now: number, local: LocalHost = thisHost()): Promise<Verdict[]> {
  const byId = new Map<number, Verdict>();
  for (const a of await dueAgents(store, now, local.host)) {
    if (byId.has(a.id) && byId.get(a.id)!.kind === 'crash') continue;
    const v = judgeAgent(a, now, local);
    if (v) byId.set(a.id, v);
  }
  return [...byId.values()];
}

/**
 * The stale verdicts by the clock to hold while their host's fate is undecided (hosts.ts hostHolds), read from the
 * live agents and health loops of the hosts concerned: the observer's own host is never among them.
 */
async function findHostHolds(store: Store, verdicts: readonly Verdict[], now: number, observerHost: string | null): Promise<HostHold[]> {
  const hosts = new Set<string>();
  for (const v of verdicts) if (v.kind === 'clock' && v.to === 'stale' && v.agent.host !== null && v.agent.host !== observerHost) hosts.add(v.agent.host);
  if (!hosts.size) return [];
  const agents: AgentRecord[] = [];
  for (const h of [...hosts].sort()) agents.push(...(await liveAgentsOn(store, h)));
  const loops = (await readLoops(store)).map((l) => ({ host: l.host, lastPassAt: l.lastPassAt, everyMs: l.everyMs }));
  const candidates = new Set(verdicts.filter((v) => v.kind === 'clock' && v.to === 'stale').map((v) => v.agent.name));
  return hostHolds(agents, loops, now, { observerHost }).filter((h) => candidates.has(h.agent));
}

/** The reason of a host's held verdicts, for the log and the 'held' event. */
function hostHoldReason(host: string, holds: readonly HostHold[], now: number): string {
  const until = Math.max(...holds.map((h) => h.until));
  return `nothing heard from host ${host} since its agents fell due; holding their stale verdicts until it is clear whether the whole host went silent (${formatDuration(Math.max(0, until - now))} at most)`;
}

/**
 * Convicts the agents that are due at `now`, exactly as a health-loop pass does (and `cleanup --stale` too: this is
 * the one function). Crash proofs and maintenance endings apply at once. Clock convictions are held for one pass
 * when most of the fleet (and at least three agents) would be convicted together, since that points at the observer
 * (a paused machine, a clock step) more than at the agents; on the next pass those still overdue are convicted.
 * Before that, a stale verdict by the clock of an agent on another host is held while that host's fate is
 * undecided (hosts.ts): if the whole host went silent, its outage marks the agent stale with the host's reason.
 * Every write is guarded: an agent that beat or restarted since it was read is left alone.
 */
export async function convict(store: Store, now: number, opts: ConvictOptions = {}): Promise<ConvictResult> {
  const local = opts.local ?? thisHost();
  const all = await findVerdicts(store, now, local);
  const byHost = opts.hostHold === false ? [] : await findHostHolds(store, all, now, local.host);
  const hostHeld = new Set(byHost.map((h) => h.agent));
  const verdicts = all.filter((v) => !hostHeld.has(v.agent.name));
  const perHost = new Map<string, HostHold[]>();
  for (const h of byHost) perHost.set(h.host, [...(perHost.get(h.host) ?? []), h]);
  const hostGroups: HeldGroup[] = [...perHost].map(([host, holds]) => ({ rule: 'host' as const, reason: hostHoldReason(host, holds, now), agents: holds.map((h) => h.agent) }));
  const rule = opts.hold === undefined ? DEFAULT_HOLD : opts.hold;
  // Nothing due and nothing held from the pass before: nothing to write, so no write transaction (the common pass).
  if (!verdicts.length && !(rule && (await anyHeld(store)))) {
    return { applied: [], held: byHost.map((h) => h.agent), holdReason: null, holds: hostGroups };
  }
  return await store.tx(async (store) => {
    const wasHeld = await readHeld(store);
    const clockNew = verdicts.filter((v) => v.kind === 'clock' && !wasHeld.has(v.agent.id));
    let holdReason: string | null = null;
    let toHold: Verdict[] = [];
    if (rule && clockNew.length >= rule.minAgents) {
      const watched = await countWatched(store);
      if (clockNew.length > watched * rule.fraction) {
        toHold = clockNew;
        holdReason = `${clockNew.length} of ${watched} watched agents would be convicted at once; holding for one pass`;
      }
    }
    const holding = new Set(toHold.map((v) => v.agent.id));
    const applied: AppliedTransition[] = [];
    // PostgreSQL's deadlock rule: hold every row this transaction writes before its first write (each writes an
    // event); an agent whose row another transaction holds (a heartbeat, another monitor) is left to the next pass.
    const locked = await lockAgents(store, verdicts.filter((v) => !holding.has(v.agent.id)).map((v) => v.agent.id));
    for (const v of verdicts) {
      if (holding.has(v.agent.id) || !locked.has(v.agent.id)) continue;
      const evidence = { ...v.evidence, ...(opts.passSeq !== undefined ? { pass: opts.passSeq } : {}), ...(wasHeld.has(v.agent.id) ? { held_one_pass: true } : {}) };
      if (await writeGuardedTransition(store, { agent: v.agent, to: v.to, since: v.since, reason: v.reason, evidence }, now)) {
        applied.push({ agent: v.agent.name, agentId: v.agent.id, from: v.agent.state, to: v.to, kind: v.kind, since: v.since, reason: v.reason, evidence });
      }
    }
    if (rule) await replaceHeld(store, toHold.map((v) => ({ agentId: v.agent.id, to: v.to })), now, opts.passSeq ?? 0);
    const massHeld = toHold.map((v) => v.agent.name);
    return {
      applied,
      held: [...massHeld, ...byHost.map((h) => h.agent)],
      holdReason,
      holds: [...(holdReason ? [{ rule: 'mass' as const, reason: holdReason, agents: massHeld }] : []), ...hostGroups],
    };
  });
}
