/**
 * The alert outbox and per-agent cooldowns (migration 0003_monitor). An alert is inserted with one delivery row per
 * receiver in the transaction that decided it; deliveries are claimed before sending, so two monitors never send the
 * same one, and one whose receiver was down stays pending for a later pass.
 */
import type { Store } from './store.js';
import type { AgentState } from './rows.js';
import { jsonArrayValues } from './dialect.js';

export type AlertKind = 'alert' | 'reminder' | 'recovery' | 'test';

export interface Cooldown {
  agentId: number;
  lastAlertAt: number;
  downState: AgentState | null;
  downSince: number | null;
}

export async function readCooldown(store: Store, agentId: number): Promise<Cooldown | undefined> {
  const r = await store.sql.get('SELECT * FROM alert_cooldowns WHERE agent_id = ?', [agentId]);
  if (!r) return undefined;
  return {
    agentId,
    lastAlertAt: Number(r.last_alert_at),
    downState: (r.down_state ?? null) as AgentState | null,
    downSince: r.down_since == null ? null : Number(r.down_since),
  };
}

/** The cooldowns of some agents by id, read in one query (agents without one are absent). */
export async function readCooldowns(store: Store, agentIds: readonly number[]): Promise<Map<number, Cooldown>> {
  const out = new Map<number, Cooldown>();
  if (!agentIds.length) return out;
  const rows = await store.sql.all(`SELECT * FROM alert_cooldowns WHERE agent_id IN (${jsonArrayValues(store.sql.dialect, '?')})`, [JSON.stringify(agentIds)]);
  for (const r of rows) {
    const agentId = Number(r.agent_id);
    out.set(agentId, { agentId, lastAlertAt: Number(r.last_alert_at), downState: (r.down_state ?? null) as AgentState | null, downSince: r.down_since == null ? null : Number(r.down_since) });
  }
  return out;
}

export async function writeCooldown(store: Store, c: Cooldown): Promise<void> {
  await store.sql.run(
    `INSERT INTO alert_cooldowns (agent_id, last_alert_at, down_state, down_since) VALUES (:id, :last, :down, :since)
     ON CONFLICT (agent_id) DO UPDATE SET last_alert_at = :last, down_state = :down, down_since = :since`,
    { id: c.agentId, last: c.lastAlertAt, down: c.downState, since: c.downSince },
  );
}

/** Agents alerted down whose last alert is at least `cooldownMs` old: due a reminder (indexed: only down agents are read). */
export async function remindersDue(store: Store, now: number, cooldownMs: number): Promise<Cooldown[]> {
  const list = await store.sql.all('SELECT * FROM alert_cooldowns WHERE last_alert_at <= :cut AND down_state IS NOT NULL', { cut: now - cooldownMs });
  return list.map((r) => ({ agentId: Number(r.agent_id), lastAlertAt: Number(r.last_alert_at), downState: r.down_state as AgentState, downSince: r.down_since == null ? null : Number(r.down_since) }));
}

export interface NewAlert {
  agentId: number | null;
  agentName: string;
  kind: AlertKind;
  state: AgentState;
  eventId: number | null;
  createdAt: number;
  payload: Record<string, unknown>;
  /** The host outage a host alert or its recovery notice reports (0007_hosts); absent for an agent's own alerts. */
  outageId?: number | null;
}

/** Inserts an alert and a pending delivery to each target; returns its id. The payload gets `alert_id`. */
export async function insertAlert(store: Store, a: NewAlert, targets: readonly string[]): Promise<number> {
  const row = await store.sql.get<{ id: number }>(
    'INSERT INTO alerts (agent_id, agent_name, kind, state, event_id, created_at, payload, outage_id) VALUES (:agent, :name, :kind, :state, :event, :at, :payload, :outage) RETURNING id',
    { agent: a.agentId, name: a.agentName, kind: a.kind, state: a.state, event: a.eventId, at: a.createdAt, payload: '{}', outage: a.outageId ?? null },
  );
  const id = Number(row!.id);
  await store.sql.run('UPDATE alerts SET payload = :payload WHERE id = :id', { id, payload: JSON.stringify({ alert_id: id, ...a.payload }) });
  for (const target of new Set(targets)) {
    await store.sql.run("INSERT INTO alert_deliveries (alert_id, target, status) VALUES (:id, :target, 'pending') ON CONFLICT DO NOTHING", { id, target });
  }
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
 * `claimUntil`, oldest first. On SQLite it runs in BEGIN IMMEDIATE, so of two racing monitors only one gets each delivery; on PostgreSQL the
 * rows are taken with FOR UPDATE OF d SKIP LOCKED (a delivery another monitor is claiming is skipped, and the
 * NOT EXISTS below still sees it open, so that agent's later deliveries wait too). A
 * delivery waits while an older one about the same agent to the same receiver is open, so that a receiver never
 * gets an agent's recovery before its alert, however many deliveries are in flight. `skip`: alert ids not to claim
 * (those already tried in this round).
 */
export async function claimDeliveries(store: Store, targets: readonly string[], now: number, claimUntil: number, limit = 100, skip: readonly number[] = []): Promise<ClaimedDelivery[]> {
  if (!targets.length) return [];
  return store.tx(async (s) => {
    const out: ClaimedDelivery[] = [];
    const pick = `SELECT d.alert_id, d.target, d.attempts, a.payload, a.created_at FROM alert_deliveries d JOIN alerts a ON a.id = d.alert_id
       WHERE d.target = :target AND d.status IN ('pending', 'sending') AND (d.status = 'pending' OR d.claimed_until < :now)
         AND d.alert_id NOT IN (${jsonArrayValues(s.sql.dialect, ':skip')})
         AND NOT EXISTS (SELECT 1 FROM alert_deliveries e JOIN alerts b ON b.id = e.alert_id
                          WHERE e.target = d.target AND e.status IN ('pending', 'sending') AND e.alert_id < d.alert_id AND b.agent_name = a.agent_name)
       ORDER BY d.alert_id LIMIT :limit${s.sql.dialect === 'postgres' ? ' FOR UPDATE OF d SKIP LOCKED' : ''}`;
    // Guarded like the pick: the claim checks again what the pick saw, since another monitor's transaction may have
    // claimed the row between the two on a database server (SQLite's write lock makes that impossible); then this one
    // claims nothing.
    const claim = `UPDATE alert_deliveries SET status = 'sending', claimed_until = :until, attempts = attempts + 1
       WHERE alert_id = :id AND target = :target AND (status = 'pending' OR (status = 'sending' AND claimed_until < :now))`;
    for (const target of new Set(targets)) {
      for (const r of await s.sql.all(pick, { target, now, limit, skip: JSON.stringify(skip) })) {
        if ((await s.sql.run(claim, { until: claimUntil, id: r.alert_id, target, now })).changes !== 1) continue;
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
export async function finishDelivery(store: Store, d: { alertId: number; target: string; claimedUntil?: number }, outcome: 'sent' | 'pending' | 'failed', now: number, error: string | null): Promise<void> {
  await store.sql.run(
    `UPDATE alert_deliveries SET status = :status, claimed_until = NULL, last_error = :error,
         sent_at = CASE WHEN :status = 'sent' THEN :now ELSE sent_at END
       WHERE alert_id = :id AND target = :target AND status = 'sending' AND (CAST(:claim AS BIGINT) IS NULL OR claimed_until = :claim)`,
    { status: outcome, error, now, id: d.alertId, target: d.target, claim: d.claimedUntil ?? null },
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
export async function recentAlerts(store: Store, limit = 50): Promise<AlertRow[]> {
  const list = await store.sql.all('SELECT * FROM alerts ORDER BY id DESC LIMIT ?', [limit]);
  const out: AlertRow[] = [];
  for (const r of list) {
    const dels = await store.sql.all('SELECT target, status, attempts, last_error FROM alert_deliveries WHERE alert_id = ? ORDER BY target', [r.id]);
    out.push({
      id: Number(r.id),
      agentName: String(r.agent_name),
      kind: r.kind as AlertKind,
      state: r.state as AgentState,
      createdAt: Number(r.created_at),
      payload: JSON.parse(String(r.payload)),
      deliveries: dels.map((d) => ({ target: String(d.target), status: String(d.status), attempts: Number(d.attempts), lastError: d.last_error == null ? null : String(d.last_error) })),
    });
  }
  return out;
}
