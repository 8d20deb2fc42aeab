import type { Store } from '../../store/store.js';
import type { AgentState } from '../../store/rows.js';
import { type LoopIdentity, beginPass, bumpCounters, pruneLoops, recordLoopPass, recordPass, setEventCursor, takeEventCursor } from '../../store/monitor.js';
import { expireCommands } from '../../store/commands.js';
import { formatDuration } from '../duration.js';
import { type AlertTally, DEFAULT_ALERT_ON, DEFAULT_COOLDOWN_MS, queueAlerts } from './alerts.js';
import { type AppliedTransition, type HeldGroup, type HoldRule, NO_CONVICTIONS, convict } from './convict.js';
import { type LocalHost, thisHost } from './judge.js';
import { processStartTime } from '../host.js';
import { VERSION } from '../../version.js';
import { type OutageStepResult, hostOutageStep } from './outages.js';

/** Everything a pass needs besides the store and the clock. Every field has the seeds' default. */
export interface HealthPolicy {
  /** States whose entry sends an alert (default ['offline']). */
  alertOn?: readonly AgentState[];
  /** Per-agent alert cooldown and reminder period (default 30 min). */
  alertCooldownMs?: number;
  /** Alert delivery targets ('webhook:URL', 'exec:CMD'); none: alerts are still recorded, for the map. */
  targets?: readonly string[];
  /** The mass-conviction hold (default: ≥ 3 agents and more than half); false: never hold. */
  hold?: HoldRule | false;
  /** The loop's period, recorded so `status` knows when a pass is overdue (for cron: how often it runs). */
  everyMs?: number | null;
  /** This host, for crash proofs (default: the real one). */
  local?: LocalHost;
  /**
   * Set by a loop that suspects itself (it was paused, the machine slept, the wall clock stepped): this pass then
   * convicts no one. The pass itself adds one suspicion: a clock earlier than the last recorded pass.
   */
  suspect?: string | null;
  /** This loop process, as health_loops names it (default: this process on `local`'s host and boot). */
  loop?: LoopIdentity;
}

/** This process's start time, read once per pid (it cannot change while the process lives; a fork has another pid). */
let ownStart: { pid: number; start: number } | undefined;

/** This process as a health loop on `local`. */
export function loopIdentity(local: LocalHost): LoopIdentity {
  if (ownStart?.pid !== process.pid) ownStart = { pid: process.pid, start: processStartTime(process.pid) ?? 0 };
  return { host: local.host ?? '', bootId: local.bootId ?? '', pid: process.pid, pidStartTime: ownStart.start };
}

/** What one pass did. */
export interface HealthReport {
  pass: number;
  at: number;
  durationMs: number;
  /** Why this pass convicted no one, if it suspected the observer. */
  suspect: string | null;
  transitions: AppliedTransition[];
  /** Agents whose conviction this pass held: by the mass-conviction rule, or while their host's fate is undecided. */
  held: string[];
  /** Why the mass-conviction rule held convictions, if it did. */
  holdReason: string | null;
  /** The held verdicts in groups, each with its reason. */
  holds: HeldGroup[];
  alerts: AlertTally['queued'];
  alertsSuppressed: number;
  /** Commands whose deadline passed, settled by this pass (queued → cancelled, executing → failed). */
  commandsExpired: number;
  /** Hosts this pass found silent as a whole (it opened their outage), and outages it ended. */
  outages: OutageStepResult;
  /** False when another monitor held the alert cursor: this pass queued no alerts (the next one catches up). */
  alerted: boolean;
}

/** A wall clock this far behind the last recorded pass counts as a step back. */
const CLOCK_BACK_TOLERANCE_MS = 2000;

/**
 * One health pass as a plain function of (store, now, policy): convicts the agents that are due (the shared
 * `convict` rule), turns every transition since the last pass into alerts in the outbox (with cooldowns, reminders
 * and recovery notices), settles commands whose deadline has passed (so a deadline holds even when nobody reads
 * the commands), counts what happened and records the loop's own heartbeat. Sending the queued alerts is
 * the caller's (asynchronous) business: see deliverAlerts.
 */
export async function checkHealth(store: Store, now: number, policy: HealthPolicy = {}): Promise<HealthReport> {
  const t0 = performance.now();
  const local = policy.local ?? thisHost();
  const { passSeq, before } = await store.tx(async (store) => {
    const r = await beginPass(store);
    // The first pass ever starts alerting from here, not from the whole history.
    if (r.before?.eventCursor == null) await setEventCursor(store, await store.lastEventId());
    return r;
  });
  let suspect = policy.suspect ?? null;
  if (!suspect && before?.lastPassAt != null && now < before.lastPassAt - CLOCK_BACK_TOLERANCE_MS) {
    suspect = `the wall clock is ${formatDuration(before.lastPassAt - now)} behind the last pass`;
  }
  // Hosts first: a host silent as a whole marks its agents stale with its own reason (once, by whichever monitor
  // opens its outage), before the clock would convict them one by one. A suspect pass only ends outages.
  const outages = await hostOutageStep(store, now, { observerHost: local.host, passSeq, targets: policy.targets ?? [], detect: !suspect });
  const convicted = suspect ? NO_CONVICTIONS : await convict(store, now, { local, passSeq, ...(policy.hold !== undefined ? { hold: policy.hold } : {}) });
  let commandsExpired = 0;
  const loop = policy.loop ?? loopIdentity(local);
  const tally = await store.tx(async (store) => {
    // A suspect clock convicts no one and expires nothing: both judge by the wall clock.
    commandsExpired = suspect ? 0 : await expireCommands(store, null, now);
    // Of several monitors passing at once, the one holding the cursor turns the new events into alerts.
    const taken = await takeEventCursor(store);
    let t: AlertTally | null = null;
    if (taken) {
      t = await queueAlerts(store, taken.cursor, now, {
        alertOn: policy.alertOn ?? DEFAULT_ALERT_ON,
        cooldownMs: policy.alertCooldownMs ?? DEFAULT_COOLDOWN_MS,
        targets: policy.targets ?? [],
        host: local.host,
      });
      if (t.lastEventId !== taken.cursor) await setEventCursor(store, t.lastEventId);
      // The single-loop record, for readers of schema version 6 (its row is this pass's while it holds the cursor).
      await recordPass(store, { at: now, durationMs: performance.now() - t0, everyMs: policy.everyMs ?? null, pid: process.pid, host: local.host });
    }
    await bumpCounters(store, {
      ...(t?.counters ?? {}),
      passes_total: 1,
      suspect_passes_total: suspect ? 1 : 0,
      convictions_held_total: convicted.held.length,
      commands_expired_total: commandsExpired,
      host_outages_total: outages.opened.length,
      host_outages_ended_total: outages.ended.length,
      // A host's alert and its recovery notice are alerts like any other.
      'alerts_queued_total:alert': (t?.counters['alerts_queued_total:alert'] ?? 0) + outages.opened.length,
      'alerts_queued_total:recovery': (t?.counters['alerts_queued_total:recovery'] ?? 0) + outages.ended.length,
    });
    await recordLoopPass(store, loop, { at: now, durationMs: performance.now() - t0, everyMs: policy.everyMs ?? null, passSeq, suspect, clockSkewMs: null, version: VERSION });
    await pruneLoops(store, loop, local.startTime, now);
    return t;
  });
  return {
    pass: passSeq,
    at: now,
    durationMs: performance.now() - t0,
    suspect,
    transitions: [...outages.transitions, ...convicted.applied],
    held: convicted.held,
    holdReason: convicted.holdReason,
    holds: convicted.holds,
    alerts: [
      ...outages.opened.map((o) => ({ id: o.alertId, kind: 'alert', agent: `host ${o.host}`, state: 'stale' as AgentState })),
      ...outages.ended.map((o) => ({ id: o.alertId, kind: 'recovery', agent: `host ${o.host}`, state: 'active' as AgentState })),
      ...(tally?.queued ?? []),
    ],
    alertsSuppressed: tally?.suppressed ?? 0,
    commandsExpired,
    outages,
    alerted: tally !== null,
  };
}
