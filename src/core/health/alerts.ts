import type { Store } from '../../store/store.js';
import type { AgentRecord, AgentState, EventRecord } from '../../store/rows.js';
import { type Cooldown, insertAlert, readCooldown, remindersDue, writeCooldown } from '../../store/alerts.js';
import { agentById, eventsAfter } from '../../store/monitor.js';
import { inOutage } from '../../store/outages.js';
import { formatDuration, iso } from '../duration.js';
import { inMaintenance, stateSeverity } from '../state.js';

/** Which transitions alert, how often, and to whom. */
export interface AlertPolicy {
  /** States whose entry sends an alert (default: offline). */
  alertOn: readonly AgentState[];
  /** At most one down alert per agent per this long; also the reminder period while it stays down (default 30 min). */
  cooldownMs: number;
  /** Delivery targets ('webhook:URL', 'exec:CMD'): each alert gets one delivery per target. */
  targets: readonly string[];
  /** This host's name, for the payload. */
  host: string | null;
}

export const DEFAULT_ALERT_ON: readonly AgentState[] = ['offline'];
export const DEFAULT_COOLDOWN_MS = 30 * 60_000;

/** Rules whose transitions somebody asked for: an operator, a goodbye, a deregistration. They never alert. */
const DELIBERATE = new Set(['manual', 'goodbye', 'deregister']);

export interface AlertTally {
  /** Events handled (transitions seen). */
  events: number;
  queued: { id: number; kind: string; agent: string; state: AgentState }[];
  suppressed: number;
  counters: Record<string, number>;
  lastEventId: number;
}


/** The JSON every receiver gets (webhook body, exec stdin). */
export function alertPayload(kind: string, a: AgentRecord, state: AgentState, now: number, extra: { previous?: AgentState | null; event?: EventRecord; downSince?: number | null; host: string | null }): Record<string, unknown> {
  const downFor = extra.downSince != null ? Math.max(0, (extra.event?.at ?? now) - extra.downSince) : null;
  const reason = extra.event?.reason ?? a.stateReason;
  const age = a.lastHeartbeatAt === null ? null : now - a.lastHeartbeatAt;
  const seen = age === null ? 'never beat' : `last heartbeat ${formatDuration(age)} ago`;
  const message =
    kind === 'recovery'
      ? `${a.name} is back (${state}) after ${formatDuration(downFor ?? 0)} down`
      : kind === 'reminder'
        ? `${a.name} is still ${state} (down for ${formatDuration(downFor ?? 0)}, ${seen})`
        : `${a.name} is ${state}: ${reason ?? 'no reason given'} (${seen})`;
  return {
    source: 'agentctl',
    kind,
    message,
    agent: { name: a.name, id: a.id, group: a.group, host: a.host, pid: a.pid },
    state,
    previous_state: extra.previous ?? null,
    reason,
    evidence: extra.event?.evidence ?? a.stateEvidence,
    at: iso(now),
    transition_at: iso(extra.event?.at ?? null),
    event_id: extra.event?.id ?? null,
    last_heartbeat: iso(a.lastHeartbeatAt),
    seconds_since_heartbeat: age === null ? null : Math.floor(age / 1000),
    down_since: iso(extra.downSince ?? null),
    down_for_ms: downFor,
    down_for: downFor === null ? null : formatDuration(downFor),
    monitor_host: extra.host,
  };
}

/**
 * Turns the transitions recorded since `cursor` (by this loop, by heartbeats, by anyone) into alerts in the outbox,
 * then queues reminders for agents still down after a cooldown. Call inside store.tx(), so that deciding and
 * queueing an alert are one write and a racing monitor cannot decide the same one again.
 */
export async function queueAlerts(store: Store, cursor: number, now: number, policy: AlertPolicy, batch = 10_000): Promise<AlertTally> {
  const tally: AlertTally = { events: 0, queued: [], suppressed: 0, counters: {}, lastEventId: cursor };
  const count = (name: string) => (tally.counters[name] = (tally.counters[name] ?? 0) + 1);
  const queue = async (kind: 'alert' | 'reminder' | 'recovery', a: AgentRecord, state: AgentState, event: EventRecord | undefined, payload: Record<string, unknown>) => {
    const id = await insertAlert(store, { agentId: a.id, agentName: a.name, kind, state, eventId: event?.id ?? null, createdAt: now, payload }, policy.targets);
    tally.queued.push({ id, kind, agent: a.name, state });
    count(`alerts_queued_total:${kind}`);
  };
  for (const e of await eventsAfter(store, cursor, batch)) {
    tally.events++;
    tally.lastEventId = e.id;
    const rule = typeof e.evidence?.rule === 'string' ? e.evidence.rule : null;
    // A registration, a refused restart and a note (a log ping, a host's event) keep the agent's state: no transition
    // to count or alert on. A host's event has its own alert, queued with the outage (outages.ts).
    if (e.fromState === null || rule === 'refused' || rule === 'log' || rule === 'outage') continue;
    count(`transitions_total:${e.toState}`);
    if ((e.toState === 'stale' || e.toState === 'offline') && rule === 'clock') count('heartbeat_timeouts_total');
    if (rule === 'pid' || rule === 'boot-id') count('crash_proofs_total');
    if (e.agentId === null) continue;
    const a = await agentById(store, e.agentId);
    if (!a) continue;
    const cd = await readCooldown(store, a.id);
    if (rule !== null && DELIBERATE.has(rule)) {
      // Nobody needs telling about what they did themselves; a deregistered agent is no longer down either.
      if (cd?.downState && rule === 'deregister') await writeCooldown(store, { ...cd, downState: null, downSince: null });
      continue;
    }
    if (inMaintenance(a, now)) continue;
    if (policy.alertOn.includes(e.toState) && stateSeverity(a.state) && a.host !== null && (await inOutage(store, a.host, e.at))) {
      // Its host is down as a whole and has had its one alert: record the agent as down, not told (its last alert
      // before the spell), so no per-agent recovery follows it back, and a reminder comes a cooldown after it went
      // down if it is still down once the outage is over.
      if (!cd?.downState) {
        count('alerts_suppressed_outage_total');
        await writeCooldown(store, { agentId: a.id, lastAlertAt: Math.min(cd?.lastAlertAt ?? e.at - 1, e.at - 1), downState: e.toState, downSince: e.at });
      }
      continue;
    }
    if (policy.alertOn.includes(e.toState)) {
      // A down spell that is already over (a heartbeat recorded the silence and the return together): history has
      // it; an alert and a recovery notice for it now would only be noise.
      if (!stateSeverity(a.state)) continue;
      const escalation = Boolean(cd?.downState) && stateSeverity(e.toState) > stateSeverity(cd!.downState!);
      if (cd?.downState && !escalation) continue; // already down and alerted: reminders take it from here
      const downSince = cd?.downState ? cd.downSince : e.at;
      if (cd && now - cd.lastAlertAt < policy.cooldownMs && !escalation) {
        // Within the cooldown: no alert now, but remember it is down, so a reminder follows once the cooldown ends.
        tally.suppressed++;
        count('alerts_suppressed_total');
        await writeCooldown(store, { ...cd, downState: e.toState, downSince });
        continue;
      }
      await queue('alert', a, e.toState, e, alertPayload('alert', a, e.toState, now, { previous: e.fromState, event: e, downSince, host: policy.host }));
      await writeCooldown(store, { agentId: a.id, lastAlertAt: now, downState: e.toState, downSince });
    } else if (e.toState === 'active' && cd?.downState) {
      // A recovery notice only for a down spell someone was told about (an alert or reminder at or after it began).
      const told = cd.downSince !== null && cd.lastAlertAt >= cd.downSince;
      if (told) await queue('recovery', a, e.toState, e, alertPayload('recovery', a, e.toState, now, { previous: e.fromState, event: e, downSince: cd.downSince, host: policy.host }));
      await writeCooldown(store, { agentId: a.id, lastAlertAt: told ? now : cd.lastAlertAt, downState: null, downSince: null });
    }
  }
  await queueReminders(store, now, policy, queue);
  return tally;
}

async function queueReminders(store: Store, now: number, policy: AlertPolicy, queue: (kind: 'reminder', a: AgentRecord, s: AgentState, e: undefined, p: Record<string, unknown>) => void): Promise<void> {
  for (const cd of await remindersDue(store, now, policy.cooldownMs)) {
    const a = await agentById(store, cd.agentId);
    if (!a || a.deregisteredAt !== null || !stateSeverity(a.state)) {
      await writeCooldown(store, { ...cd, downState: null, downSince: null } satisfies Cooldown);
      continue;
    }
    if (inMaintenance(a, now)) continue;
    // While its host's outage is open, the host's alert stands for it.
    if (a.host !== null && (await inOutage(store, a.host, now))) continue;
    queue('reminder', a, a.state, undefined, alertPayload('reminder', a, a.state, now, { previous: null, downSince: cd.downSince, host: policy.host }));
    await writeCooldown(store, { ...cd, lastAlertAt: now });
  }
}
