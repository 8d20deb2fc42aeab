/**
 * The host roll-up: which hosts went silent as a whole. When a machine freezes, loses its network or powers off,
 * every agent on it goes overdue at once, and its own health loop stops passing too; that is one fact about the
 * host, to be reported once ("host H unreachable: N agents"), not N facts about its agents. A pure function of what
 * the store has already read (agents, the health loops last seen per host) and `now`: no store, no SQL, no clock.
 *
 * A host is silent at `now` when all of these hold:
 *
 *  1. It has at least `minAgents` (2) live agents: registered, and neither offline, failed nor in maintenance
 *     (the agents a pass watches). One agent going quiet is far more often the agent than its host, and a host
 *     alert for one agent would only rename that agent's own alert.
 *  2. Every live agent of the host is overdue by its own contract (silent for interval × multiplier or more,
 *     counted from its last heartbeat or its start, as core/state.ts counts it). One agent still within its window
 *     proves the host reachable, so the others' silence is their own. This waits for the slowest contract on the
 *     host: until its longest stale window has passed, its faster agents are judged alone.
 *  3. No health loop seen on the host has passed within its period plus a grace (monitorSilentAfterMs). A host on
 *     which no health loop was ever seen is judged by its agents alone.
 *  4. Its agents went silent together: `silentSince`, the host's last sign of life, is the latest of its live
 *     agents' heartbeats (or starts) and of its health loops' passes; the agents that were still within their own
 *     stale window at that moment (silentSince − last heartbeat < interval × multiplier) stopped with the host.
 *     At least `minAgents` of them must have. Live agents that were already overdue when the host last spoke went
 *     quiet on their own, earlier (and a health loop passing on the host then could check their processes): they
 *     are listed apart (`alreadyOverdue`), not counted in the host's alert, and stay judged by their own contracts.
 *     Agents that died one by one, each after the other's window, never add up to a silent host.
 *
 * The host that runs the judgement (`observerHost`) is never silent: it is running, and its own loop proves its
 * agents' crashes by their pids instead. Agents with no recorded host cannot be attributed to one and are skipped.
 * Host names are the agents' own text: the reason is stored raw, like every reason, and escaped where shown.
 *
 * Until a host is found silent, its agents fall due one by one (their heartbeats have different phases, their
 * contracts different windows): the first one overdue would be convicted alone, and alert alone, a pass or two
 * before its host's outage opens. So a stale verdict by the clock of an agent on another host (`hostHolds`) is held
 * while its host's fate is undecided, that is while all of these hold, counting from the agent's deadline D (its
 * last heartbeat or start plus its stale window):
 *
 *  a. The host is not the observer's, and it has at least `minAgents` live agents (rule 1).
 *  b. Nothing on the host spoke at or after D: no live agent of the host beat or started since, no health loop on it
 *     passed since. A sign of life ends the hold: the agent's silence is its own, and it is judged alone.
 *  c. The host can still become silent without a new sign of life: at least `minAgents` of its live agents stopped
 *     together (rule 4, counted from its last sign of life, which is before D). Otherwise it never will, and the
 *     agent is judged alone at once (for example: all its agents are overdue and its loop silent, but they went
 *     quiet one by one).
 *  d. The host is not silent yet: the moment it would be, if nothing speaks (its slowest agent overdue, its health
 *     loops silent past their period and grace), is still to come. From then on the outage step marks the agent
 *     stale with the host's reason, in the host's one alert.
 *  e. That moment comes soon enough: no later than the agent's offline threshold (an offline verdict by the
 *     agent's own contract is never held or delayed), and no later than `holdCapMs` (3 minutes) after D. A host
 *     that can only be found silent later (say a hung agent beating every second beside one whose contract allows
 *     an hour, and no health loop on the host) does not hold its agents at all: they are judged alone at once.
 *
 * The hold depends only on the rows read and `now`, so every monitor over one database holds the same verdicts.
 */
import type { AgentRecord, AgentState } from '../../store/rows.js';
import { clockStart, staleAfterMs } from '../state.js';

/** What the roll-up reads of an agent (an AgentRecord fits). */
export type HostAgentFacts = Pick<AgentRecord, 'name' | 'host' | 'state' | 'deregisteredAt' | 'lastHeartbeatAt' | 'startedAt' | 'intervalMs' | 'staleMultiplier'>;

/** A health loop last seen on a host: when it last completed a pass, and its period (null: a cron `--once` run). */
export interface MonitorSighting {
  host: string | null;
  lastPassAt: number | null;
  everyMs: number | null;
}

export interface HostRollupOptions {
  /** The host making the judgement: never silent. */
  observerHost?: string | null;
  /** Fewest agents that must go silent together (default 2, and never fewer than 2). */
  minAgents?: number;
  /** Slack beyond a health loop's period before its silence counts (default 1 s; at least one period). */
  monitorGraceMs?: number;
  /** hostHolds: the longest a stale verdict is held after the agent's deadline (default 3 minutes). */
  holdCapMs?: number;
}

/** A host that went silent as a whole, with what its one event and alert say. */
export interface SilentHost {
  host: string;
  /** The agents that went silent with the host, by name. */
  agents: string[];
  count: number;
  /** The host's last sign of life: its latest heartbeat, start or health-loop pass. */
  silentSince: number;
  /** Its health loops' latest pass, or null if none was ever seen there. */
  lastMonitorPassAt: number | null;
  /** Its live agents already overdue before the host went silent: judged on their own, not part of its alert. */
  alreadyOverdue: string[];
  /** `host H unreachable: N agents` */
  reason: string;
}

export const MIN_SILENT_AGENTS = 2;
export const MONITOR_GRACE_MS = 1000;
/**
 * The longest a stale verdict waits for its host's fate, after the agent's deadline: enough for a health loop on
 * the host run every minute by cron (silent two minutes after its last pass) to count as silent, and for a pass
 * or two beyond.
 */
export const HOST_HOLD_CAP_MS = 180_000;
/** A cron `--once` loop that did not say how often it runs: the README's crontab line runs every minute. */
const ASSUMED_CRON_MS = 60_000;
const NOT_WATCHED: ReadonlySet<AgentState> = new Set(['offline', 'failed', 'maintenance']);

/**
 * How long after its last pass a health loop counts as silent: its period plus a grace of one more period, and
 * never less than `graceMs` beyond it (a short period must not turn one slow pass on a busy machine into silence).
 */
export function monitorSilentAfterMs(everyMs: number | null, graceMs = MONITOR_GRACE_MS): number {
  const every = everyMs ?? ASSUMED_CRON_MS;
  return every + Math.max(every, graceMs);
}

/** The reason of a silent host's event and alert. */
export function hostUnreachableReason(host: string, count: number): string {
  return `host ${host} unreachable: ${count} agent${count === 1 ? '' : 's'}`;
}

/**
 * The live agents (registered, and neither offline, failed nor in maintenance) of each host but the observer's, for
 * the hosts with at least `minAgents` of them (rule 1): the hosts that could be silent as a whole.
 */
function liveByHost<A extends HostAgentFacts>(agents: readonly A[], observerHost: string | null | undefined, minAgents: number): Map<string, A[]> {
  const byHost = new Map<string, A[]>();
  for (const a of agents) {
    if (a.host === null || a.host === observerHost || a.deregisteredAt !== null || NOT_WATCHED.has(a.state)) continue;
    const list = byHost.get(a.host);
    if (list) list.push(a);
    else byHost.set(a.host, [a]);
  }
  for (const [host, live] of byHost) if (live.length < minAgents) byHost.delete(host);
  return byHost;
}

/** The hosts silent as a whole at `now` (rules in this module's comment), sorted by host name, their agents by name. */
export function silentHosts(agents: readonly HostAgentFacts[], monitors: readonly MonitorSighting[], now: number, opts: HostRollupOptions = {}): SilentHost[] {
  const minAgents = Math.max(MIN_SILENT_AGENTS, opts.minAgents ?? MIN_SILENT_AGENTS);
  const grace = opts.monitorGraceMs ?? MONITOR_GRACE_MS;
  const out: SilentHost[] = [];
  for (const [host, live] of liveByHost(agents, opts.observerHost, minAgents)) {
    if (live.some((a) => now - clockStart(a) < staleAfterMs(a))) continue;
    const passes = monitors.filter((m) => m.host === host && m.lastPassAt !== null);
    if (passes.some((m) => now - m.lastPassAt! <= monitorSilentAfterMs(m.everyMs, grace))) continue;
    const lastMonitorPassAt = passes.length ? Math.max(...passes.map((m) => m.lastPassAt!)) : null;
    const silentSince = Math.max(...live.map(clockStart), lastMonitorPassAt ?? -Infinity);
    const together = live.filter((a) => silentSince - clockStart(a) < staleAfterMs(a));
    if (together.length < minAgents) continue;
    const names = (list: HostAgentFacts[]) => list.map((a) => a.name).sort();
    out.push({
      host,
      agents: names(together),
      count: together.length,
      silentSince,
      lastMonitorPassAt,
      alreadyOverdue: names(live.filter((a) => !together.includes(a))),
      reason: hostUnreachableReason(host, together.length),
    });
  }
  return out.sort((x, y) => (x.host < y.host ? -1 : x.host > y.host ? 1 : 0));
}

/** What hostHolds reads of an agent: the roll-up's facts and its offline threshold. */
export type HoldAgentFacts = HostAgentFacts & Pick<AgentRecord, 'offlineAfterMs'>;

/** A stale verdict held while the agent's host's fate is undecided. */
export interface HostHold {
  agent: string;
  host: string;
  /** The agent's deadline: when its stale window ended. */
  dueAt: number;
  /** When the host will be found silent if nothing on it speaks before: the hold ends then at the latest. */
  until: number;
}

/**
 * The agents whose stale verdict by the clock is held at `now` while their host's fate is undecided (rules a to e in
 * this module's comment), sorted by host and agent name. Only agents that are overdue, not yet stale and not yet
 * past their offline threshold have a stale verdict to hold.
 */
export function hostHolds(agents: readonly HoldAgentFacts[], monitors: readonly MonitorSighting[], now: number, opts: HostRollupOptions = {}): HostHold[] {
  const minAgents = Math.max(MIN_SILENT_AGENTS, opts.minAgents ?? MIN_SILENT_AGENTS);
  const grace = opts.monitorGraceMs ?? MONITOR_GRACE_MS;
  const cap = opts.holdCapMs ?? HOST_HOLD_CAP_MS;
  const out: HostHold[] = [];
  for (const [host, live] of liveByHost(agents, opts.observerHost, minAgents)) { // a
    const passes = monitors.filter((m) => m.host === host && m.lastPassAt !== null);
    const lastSign = Math.max(...live.map(clockStart), ...passes.map((m) => m.lastPassAt!));
    if (live.filter((a) => lastSign - clockStart(a) < staleAfterMs(a)).length < minAgents) continue; // c
    // When the host will be silent if nothing speaks: its slowest agent overdue and every loop on it silent.
    const silentAt = Math.max(...live.map((a) => clockStart(a) + staleAfterMs(a)), ...passes.map((m) => m.lastPassAt! + monitorSilentAfterMs(m.everyMs, grace) + 1));
    if (now >= silentAt) continue; // d
    for (const a of live) {
      const dueAt = clockStart(a) + staleAfterMs(a);
      const offlineAt = clockStart(a) + a.offlineAfterMs;
      if (a.state === 'stale' || now < dueAt || now >= offlineAt) continue; // no stale verdict to hold
      if (lastSign >= dueAt) continue; // b
      if (silentAt > Math.min(offlineAt, dueAt + cap)) continue; // e
      out.push({ agent: a.name, host, dueAt, until: silentAt });
    }
  }
  return out.sort((x, y) => (x.host < y.host ? -1 : x.host > y.host ? 1 : x.agent < y.agent ? -1 : x.agent > y.agent ? 1 : 0));
}
