import type { Store } from '../../store/store.js';
import { toAgentRecord } from '../../store/rows.js';
import { type RestartOptions, type RestartResult, restartAgents } from '../restart.js';

/** Rules of the convictions the health loop may answer with a restart: the clock and crash proofs, never a goodbye. */
const CONVICTION_RULES = ['clock', 'pid', 'boot-id'];

/**
 * The agents `monitor --restart-stale` restarts: stale or offline by a conviction (the clock or a crash proof) and
 * registered with a launch command. Agents that said goodbye, were set offline by an operator, exited under
 * `agentctl run` (whose own restart policy decides), failed or were deregistered are left alone.
 */
export function restartCandidates(store: Store): string[] {
  const rows = store.db
    .prepare(
      `SELECT * FROM agents
        WHERE state IN ('stale', 'offline') AND launch_argv IS NOT NULL AND deregistered_at IS NULL
          AND json_extract(state_evidence, '$.rule') IN (${CONVICTION_RULES.map(() => '?').join(', ')})
        ORDER BY name`,
    )
    .all(...CONVICTION_RULES) as Record<string, unknown>[];
  return rows.map((r) => toAgentRecord(r).name);
}

/**
 * Restarts the convicted agents by their launch command with the health loop's backoff and `failed` limit
 * (restartAgents with respectBackoff): one still backing off is 'waiting' and tried again on a later pass.
 */
export async function restartConvicted(store: Store, opts: Omit<RestartOptions, 'respectBackoff' | 'dryRun'>): Promise<RestartResult[]> {
  const names = restartCandidates(store);
  return names.length ? restartAgents(store, names, { ...opts, respectBackoff: true }) : [];
}
