import type { Store } from '../../store/store.js';
import type { AgentState } from '../../store/rows.js';
import { countWatched, dueAgents, lockAgents, readHeld, replaceHeld, writeGuardedTransition } from '../../store/monitor.js';
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

export interface ConvictResult {
  applied: AppliedTransition[];
  /** Agents whose conviction is held for one more pass. */
  held: string[];
  /** Why convictions were held, if they were. */
  holdReason: string | null;
}

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
 * Convicts the agents that are due at `now`, exactly as a health-loop pass does (and `cleanup --stale` too: this is
 * the one function). Crash proofs and maintenance endings apply at once. Clock convictions are held for one pass
 * when most of the fleet (and at least three agents) would be convicted together, since that points at the observer
 * (a paused machine, a clock step) more than at the agents; on the next pass those still overdue are convicted.
 * Every write is guarded: an agent that beat or restarted since it was read is left alone.
 */
export async function convict(store: Store, now: number, opts: ConvictOptions = {}): Promise<ConvictResult> {
  const verdicts = await findVerdicts(store, now, opts.local ?? thisHost());
  const rule = opts.hold === undefined ? DEFAULT_HOLD : opts.hold;
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
    return { applied, held: toHold.map((v) => v.agent.name), holdReason };
  });
}
