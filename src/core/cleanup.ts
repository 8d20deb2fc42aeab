import type { Store } from '../store/store.js';
import { toAgentRecord } from '../store/rows.js';
import { deriveState } from './state.js';

export interface PurgeResult {
  agents: string[];
  events: number;
  commands: number;
}

/** Rows deleted per transaction when pruning history, so heartbeats keep flowing between batches. */
const BATCH = 20_000;

/**
 * The agents `purgeAgents` would delete: offline, failed or deregistered (by their state as of `now`) and not seen —
 * no heartbeat, or never one since they started — for `olderThanMs`.
 */
export function agentsToPurge(store: Store, now: number, olderThanMs: number): string[] {
  const cutoff = now - olderThanMs;
  const rows = store.db
    .prepare('SELECT * FROM agents WHERE COALESCE(last_heartbeat_at, started_at) < ? AND updated_at < ? ORDER BY name')
    .all(cutoff, cutoff) as Record<string, unknown>[];
  return rows
    .map(toAgentRecord)
    .filter((a) => a.deregisteredAt !== null || ['offline', 'failed'].includes(deriveState(a, now).state))
    .map((a) => a.name);
}

/** Deletes those agents with their events and commands, in one transaction that re-checks each under the write lock. */
export function purgeAgents(store: Store, now: number, olderThanMs: number): PurgeResult {
  return store.immediate(() => {
    const names = agentsToPurge(store, now, olderThanMs);
    let events = 0;
    let commands = 0;
    const countEvents = store.db.prepare('SELECT COUNT(*) FROM events WHERE agent_id = (SELECT id FROM agents WHERE name = ?)').pluck();
    const countCommands = store.db.prepare('SELECT COUNT(*) FROM commands WHERE agent_id = (SELECT id FROM agents WHERE name = ?)').pluck();
    const del = store.db.prepare('DELETE FROM agents WHERE name = ?');
    for (const name of names) {
      events += countEvents.get(name) as number;
      commands += countCommands.get(name) as number;
      del.run(name); // events and commands go with it (ON DELETE CASCADE)
    }
    return { agents: names, events, commands };
  });
}

/** How many events are older than the cutoff. */
export function countEventsOlderThan(store: Store, now: number, olderThanMs: number): number {
  return store.db.prepare('SELECT COUNT(*) FROM events WHERE at < ?').pluck().get(now - olderThanMs) as number;
}

/**
 * Deletes events older than `olderThanMs`, in batches of their own transactions so that writers are never held up
 * for long. Returns how many were deleted. `signal` stops between batches (for a compromised lock).
 */
export function pruneEvents(store: Store, now: number, olderThanMs: number, signal?: AbortSignal): number {
  const cutoff = now - olderThanMs;
  const del = store.db.prepare('DELETE FROM events WHERE id IN (SELECT id FROM events WHERE at < ? ORDER BY id LIMIT ?)');
  let total = 0;
  for (;;) {
    if (signal?.aborted) throw signal.reason;
    const n = store.immediate(() => del.run(cutoff, BATCH).changes);
    total += n;
    if (n < BATCH) return total;
  }
}
