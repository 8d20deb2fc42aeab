import type { Store } from './store.js';

/**
 * Records a note in an agent's history without changing anything else: an event whose from and to are the state it
 * is in, with `evidence.rule` 'log' (the log ping of `agentctl serve`). False when no agent has that name.
 */
export function recordNote(store: Store, name: string, reason: string, evidence: Record<string, unknown>, now: number): Promise<boolean> {
  return store.tx(async (s) => {
    const a = await s.getAgent(name);
    if (!a) return false;
    await s.sql.run(
      `INSERT INTO events (agent_id, agent_name, at, from_state, to_state, reason, evidence)
       VALUES (:id, :name, :now, :state, :state, :reason, :evidence)`,
      { id: a.id, name: a.name, now, state: a.state, reason, evidence: JSON.stringify({ ...evidence, rule: 'log' }) },
    );
    return true;
  });
}
