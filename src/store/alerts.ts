/**
 * The alert outbox and per-agent cooldowns (migration 0003_monitor). An alert is inserted with one delivery row per
 * receiver in the transaction that decided it; deliveries are claimed before sending, so two monitors never send the
 * same one, and one whose receiver was down stays pending for a later pass.
 */
import type { Store } from './store.js';
import type { AgentState } from './rows.js';

export type AlertKind = 'alert' | 'reminder' | 'recovery' | 'test';

export interface Cooldown {
  agentId: number;
  lastAlertAt: number;
  downState: AgentState | null;
  downSince: number | null;
}

export function readCooldown(store: Store, agentId: number): Cooldown | undefined {
  const r = store.prepared('SELECT * FROM alert_cooldowns WHERE agent_id = ?').get(agentId) as Record<string, unknown> | undefined;
  if (!r) return undefined;
  return {
    agentId,
    lastAlertAt: Number(r.last_alert_at),
    downState: (r.down_state ?? null) as AgentState | null,
    downSince: r.down_since === null ? null : Number(r.down_since),
  };
}

export function writeCooldown(store: Store, c: Cooldown): void {
  store.prepared(`INSERT INTO alert_cooldowns (agent_id, last_alert_at, down_state, down_since) VALUES (:id, :last, :down, :since)
     ON CONFLICT (agent_id) DO UPDATE SET last_alert_at = :last, down_state = :down, down_since = :since`,
  ).run({ id: c.agentId, last: c.lastAlertAt, down: c.downState, since: c.downSince });
}

/** Agents alerted down whose last alert is at least `cooldownMs` old: due a reminder (indexed: only down agents are read). */
export function remindersDue(store: Store, now: number, cooldownMs: number): Cooldown[] {
  const list = store.prepared('SELECT * FROM alert_cooldowns WHERE last_alert_at <= :cut AND down_state IS NOT NULL').all({ cut: now - cooldownMs }) as Record<string, unknown>[];
  return list.map((r) => ({ agentId: Number(r.agent_id), lastAlertAt: Number(r.last_alert_at), downState: r.down_state as AgentState, downSince: r.down_since === null ? null : Number(r.down_since) }));
}

export interface NewAlert {
  agentId: number | null;
  agentName: string;
  kind: AlertKind;
  state: AgentState;
  eventId: number | null;
  createdAt: number;
  payload: Record<string, unknown>;
}

/** Inserts an alert and a pending delivery to each target; returns its id. The payload gets `alert_id`. */
export function insertAlert(store: Store, a: NewAlert, targets: readonly string[]): number {
  const id = Number(
    store.prepared('INSERT INTO alerts (agent_id, agent_name, kind, state, event_id, created_at, payload) VALUES (:agent, :name, :kind, :state, :event, :at, :payload)').run({
      agent: a.agentId,
      name: a.agentName,
      kind: a.kind,
      state: a.state,
      event: a.eventId,
      at: a.createdAt,
      payload: '{}',
    }).lastInsertRowid,
  );
  store.prepared('UPDATE alerts SET payload = :payload WHERE id = :id').run({ id, payload: JSON.stringify({ alert_id: id, ...a.payload }) });
  const ins = store.prepared("INSERT OR IGNORE INTO alert_deliveries (alert_id, target, status) VALUES (:id, :target, 'pending')");
  for (const target of new Set(targets)) ins.run({ id, target });
  return id;
}

export interface ClaimedDelivery {
  alertId: number;
  target: string;
  attempts: number;
  payload: Record<string, unknown>;
  createdAt: number;
  /** The claim's end; also its token: only the holder of this claim records the outcome. */
  claimedUntil: number;
}

/**
 * Claims the open deliveries to `targets` (pending, or 'sending' whose claim ran out: its sender died) until
 * `claimUntil`, oldest first. Runs in BEGIN IMMEDIATE, so of two racing monitors only one gets each delivery. A
 * delivery waits while an older one about the same agent to the same receiver is open, so that a receiver never
 * gets an agent's recovery before its alert, however many deliveries are in flight. `skip`: alert ids not to claim
 * (those already tried in this round).
 */
export function claimDeliveries(store: Store, targets: readonly string[], now: number, claimUntil: number, limit = 100, skip: readonly number[] = []): ClaimedDelivery[] {
  if (!targets.length) return [];
  return store.immediate(() => {
    const out: ClaimedDelivery[] = [];
    const pick = store.prepared(`SELECT d.alert_id, d.target, d.attempts, a.payload, a.created_at FROM alert_deliveries d JOIN alerts a ON a.id = d.alert_id
       WHERE d.target = :target AND d.status IN ('pending', 'sending') AND (d.status = 'pending' OR d.claimed_until < :now)
         AND d.alert_id NOT IN (SELECT value FROM json_each(:skip))
         AND NOT EXISTS (SELECT 1 FROM alert_deliveries e JOIN alerts b ON b.id = e.alert_id
                          WHERE e.target = d.target AND e.status IN ('pending', 'sending') AND e.alert_id < d.alert_id AND b.agent_name = a.agent_name)
       ORDER BY d.alert_id LIMIT :limit`,
    );
    const claim = store.prepared("UPDATE alert_deliveries SET status = 'sending', claimed_until = :until, attempts = attempts + 1 WHERE alert_id = :id AND target = :target");
    for (const target of new Set(targets)) {
      for (const r of pick.all({ target, now, limit, skip: JSON.stringify(skip) }) as Record<string, unknown>[]) {
        claim.run({ until: claimUntil, id: r.alert_id, target });
        out.push({ alertId: Number(r.alert_id), target, attempts: Number(r.attempts) + 1, payload: JSON.parse(String(r.payload)), createdAt: Number(r.created_at), claimedUntil: claimUntil });
      }
    }
    return out;
  });
}

/**
 * Records the outcome of a claimed delivery: sent, back to pending (to retry on a later pass), or given up. Only
 * while the claim is still this one: a sender whose claim ran out and was taken over records nothing.
 */
export function finishDelivery(store: Store, d: { alertId: number; target: string; claimedUntil?: number }, outcome: 'sent' | 'pending' | 'failed', now: number, error: string | null): void {
  store.retrying(() =>
    store.prepared(`UPDATE alert_deliveries SET status = :status, claimed_until = NULL, last_error = :error,
         sent_at = CASE WHEN :status = 'sent' THEN :now ELSE sent_at END
       WHERE alert_id = :id AND target = :target AND status = 'sending' AND (:claim IS NULL OR claimed_until = :claim)`,
    ).run({ status: outcome, error, now, id: d.alertId, target: d.target, claim: d.claimedUntil ?? null }),
  );
}

export interface AlertRow {
  id: number;
  agentName: string;
  kind: AlertKind;
  state: AgentState;
  createdAt: number;
  payload: Record<string, unknown>;
  deliveries: { target: string; status: string; attempts: number; lastError: string | null }[];
}

/** The newest alerts (newest first) with their deliveries: for the map and for tests. */
export function recentAlerts(store: Store, limit = 50): AlertRow[] {
  const list = store.prepared('SELECT * FROM alerts ORDER BY id DESC LIMIT ?').all(limit) as Record<string, unknown>[];
  const dels = store.prepared('SELECT target, status, attempts, last_error FROM alert_deliveries WHERE alert_id = ? ORDER BY target');
  return list.map((r) => ({
    id: Number(r.id),
    agentName: String(r.agent_name),
    kind: r.kind as AlertKind,
    state: r.state as AgentState,
    createdAt: Number(r.created_at),
    payload: JSON.parse(String(r.payload)),
    deliveries: (dels.all(r.id) as Record<string, unknown>[]).map((d) => ({ target: String(d.target), status: String(d.status), attempts: Number(d.attempts), lastError: d.last_error === null ? null : String(d.last_error) })),
  }));
}
