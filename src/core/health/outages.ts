/**
 * The pass step for hosts that go silent as a whole (the rule: hosts.ts). It ends the outages whose host spoke
 * again, then looks for new silent hosts among those with agents past a deadline, and opens an outage for each. Of
 * several monitors passing at once, only the one whose INSERT opened the outage (or whose UPDATE ended it) writes
 * what follows: the agents' stale transitions, the host's one event and its one alert (or its recovery notice).
 */
import type { Store } from '../../store/store.js';
import { insertAlert } from '../../store/alerts.js';
import { lockAgents, readLoops, writeGuardedTransition } from '../../store/monitor.js';
import { type OutageRecord, endOutage, hostLastSigns, hostsWithDueAgents, liveAgentsOn, openOutage, openOutages, writeHostEvent } from '../../store/outages.js';
import type { AgentRecord } from '../../store/rows.js';
import { clockStart, heartbeatAgeMs, staleAfterMs } from '../state.js';
import type { AppliedTransition } from './convict.js';
import { silentHosts } from './hosts.js';

export interface OutageStepOptions {
  /** The host running the pass: never silent itself. */
  observerHost: string | null;
  passSeq: number;
  targets: readonly string[];
}

export interface OutageStepResult {
  opened: { id: number; host: string; count: number; reason: string; alertId: number }[];
  ended: { id: number; host: string; reason: string; alertId: number }[];
  transitions: AppliedTransition[];
}

/** The alerts' agent_name of a host's alert and recovery notice (it orders their deliveries per host). */
export const hostAlertName = (host: string) => `host:${host}`;

/** Ends the outages whose host spoke again (a heartbeat or a health-loop pass after detection). */
async function endOutages(store: Store, now: number, opts: OutageStepOptions, out: OutageStepResult, open: readonly OutageRecord[]): Promise<void> {
  for (const o of open) {
    const signs = await hostLastSigns(store, o.host);
    const why =
      signs.heartbeatAt !== null && signs.heartbeatAt > o.detectedAt ? 'a heartbeat from the host arrived'
      : signs.loopPassAt !== null && signs.loopPassAt > o.detectedAt ? 'a health loop on the host passed'
      : null;
    if (!why) continue;
    await store.tx(async (s) => {
      if (!(await endOutage(s, o.id, now, why))) return; // another monitor ended it
      const reason = `host ${o.host} reachable again`;
      let eventId: number | null = null;
      for (const name of o.agentNames) {
        const a = await s.getAgent(name);
        if (!a) continue;
        eventId = await writeHostEvent(s, a, now, reason, { host: o.host, outage_id: o.id, count: o.agents, agents: o.agentNames, ended_because: why, pass: opts.passSeq });
        break;
      }
      const alertId = await insertAlert(
        s,
        { agentId: null, agentName: hostAlertName(o.host), kind: 'recovery', state: 'active', eventId, createdAt: now, outageId: o.id, payload: hostPayload('recovery', o.host, o.agents, o.agentNames, reason, o.id, now, opts.observerHost, { silent_since: iso(o.silentSince), down_for_ms: now - o.detectedAt, ended_because: why }) },
        opts.targets,
      );
      out.ended.push({ id: o.id, host: o.host, reason, alertId });
    });
  }
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** The JSON a receiver gets for a host's alert or recovery notice. */
function hostPayload(kind: 'alert' | 'recovery', host: string, count: number, agents: string[], reason: string, outageId: number, now: number, monitorHost: string | null, extra: Record<string, unknown>): Record<string, unknown> {
  return {
    source: 'agentctl',
    kind: kind === 'alert' ? 'host' : 'host-recovery',
    message: reason,
    host,
    count,
    agents,
    state: kind === 'alert' ? 'stale' : 'active',
    reason,
    outage_id: outageId,
    evidence: { rule: 'host', outage_id: outageId },
    at: iso(now),
    monitor_host: monitorHost,
    ...extra,
  };
}

/** Opens an outage for each host silent as a whole at `now`; the winner of each writes its transitions, event and alert. */
async function openNewOutages(store: Store, now: number, opts: OutageStepOptions, out: OutageStepResult, stillOpen: readonly OutageRecord[]): Promise<void> {
  const open = new Set(stillOpen.map((o) => o.host));
  const hosts = (await hostsWithDueAgents(store, now)).filter((h) => h !== opts.observerHost && !open.has(h));
  if (!hosts.length) return;
  const loops = (await readLoops(store)).map((l) => ({ host: l.host, lastPassAt: l.lastPassAt, everyMs: l.everyMs }));
  const agents: AgentRecord[] = [];
  for (const h of hosts) agents.push(...(await liveAgentsOn(store, h)));
  for (const silent of silentHosts(agents, loops, now, { observerHost: opts.observerHost })) {
    const byName = new Map(agents.filter((a) => a.host === silent.host).map((a) => [a.name, a]));
    await store.tx(async (s) => {
      const id = await openOutage(s, { host: silent.host, detectedAt: now, silentSince: silent.silentSince, agentNames: silent.agents, detectedBy: opts.observerHost });
      if (id === null) return; // another monitor opened it first: it reports it
      const members = silent.agents.map((n) => byName.get(n)!).filter(Boolean);
      const locked = await lockAgents(s, members.map((a) => a.id));
      const transitions: AppliedTransition[] = [];
      for (const a of members) {
        if (!locked.has(a.id) || a.state === 'stale') continue;
        const since = clockStart(a) + staleAfterMs(a);
        const evidence = { rule: 'host', detected_by: 'monitor', outage_id: id, host: silent.host, heartbeat_age_ms: heartbeatAgeMs(a, now), stale_after_ms: staleAfterMs(a), offline_after_ms: a.offlineAfterMs, pass: opts.passSeq };
        if (await writeGuardedTransition(s, { agent: a, to: 'stale', since, reason: silent.reason, evidence }, now)) {
          transitions.push({ agent: a.name, agentId: a.id, from: a.state, to: 'stale', kind: 'clock', since, reason: silent.reason, evidence });
        }
      }
      const first = await s.getAgent(silent.agents[0]!);
      const eventId = first ? await writeHostEvent(s, first, now, silent.reason, { host: silent.host, outage_id: id, count: silent.count, agents: silent.agents, silent_since: silent.silentSince, pass: opts.passSeq }) : null;
      const alertId = await insertAlert(
        s,
        { agentId: null, agentName: hostAlertName(silent.host), kind: 'alert', state: 'stale', eventId, createdAt: now, outageId: id, payload: hostPayload('alert', silent.host, silent.count, silent.agents, silent.reason, id, now, opts.observerHost, { silent_since: iso(silent.silentSince), last_monitor_pass: silent.lastMonitorPassAt === null ? null : iso(silent.lastMonitorPassAt), already_overdue: silent.alreadyOverdue }) },
        opts.targets,
      );
      out.transitions.push(...transitions);
      out.opened.push({ id, host: silent.host, count: silent.count, reason: silent.reason, alertId });
    });
  }
}

/**
 * One pass's host step: ends outages whose host spoke again, then (unless the pass suspects itself: `detect` false)
 * opens outages for hosts silent as a whole.
 */
export async function hostOutageStep(store: Store, now: number, opts: OutageStepOptions & { detect: boolean }): Promise<OutageStepResult> {
  const out: OutageStepResult = { opened: [], ended: [], transitions: [] };
  const open = await openOutages(store);
  await endOutages(store, now, opts, out, open);
  // The hosts whose outage is still open, as far as this pass knows (one another monitor opened meanwhile is found
  // by openOutage's own guard).
  const ended = new Set(out.ended.map((o) => o.id));
  if (opts.detect) await openNewOutages(store, now, opts, out, open.filter((o) => !ended.has(o.id)));
  return out;
}
