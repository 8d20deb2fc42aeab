import { AgentNotFoundError } from '../errors.js';
import { CLAIM_SQL, COMPLETE_SQL, EXPIRE_SQL, SEND_SQL } from './protocol.js';
import { type CommandRecord, type CommandState, toCommandRecord } from './rows.js';
import type { Store } from './store.js';

/** The command channel's statements on a Store: the documented protocol (send, expire, claim, complete) and the operator's reads. */

const SELECT = `SELECT c.*, a.name AS agent_name FROM commands c JOIN agents a ON a.id = c.agent_id`;

/** Queues a command for `name`; throws AgentNotFoundError if there is no such agent. */
export function insertCommand(store: Store, name: string, payload: string, deadlineAt: number | null, now: number): CommandRecord {
  return store.immediate(() => {
    const r = store.prepared(SEND_SQL).run({ name, payload, deadline_at: deadlineAt, now });
    if (r.changes !== 1) throw new AgentNotFoundError(name);
    return getCommand(store, Number(r.lastInsertRowid))!;
  });
}

/** One command with its agent's name, or undefined. */
export function getCommand(store: Store, id: number): CommandRecord | undefined {
  const row = store.prepared(`${SELECT} WHERE c.id = ?`).get(id) as Record<string, unknown> | undefined;
  return row ? toCommandRecord(row) : undefined;
}

/** Commands, newest first: of one agent and in some states if asked, at most `limit`. */
export function selectCommands(store: Store, q: { agent?: string; states?: CommandState[]; limit?: number } = {}): CommandRecord[] {
  const where: string[] = [];
  const args: Record<string, unknown> = { limit: q.limit ?? 100 };
  if (q.agent !== undefined) {
    where.push('a.name = :agent');
    args.agent = q.agent;
  }
  if (q.states?.length) {
    where.push(`c.state IN (${q.states.map((_, i) => `:s${i}`).join(', ')})`);
    q.states.forEach((s, i) => (args[`s${i}`] = s));
  }
  const sql = `${SELECT}${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY c.id DESC LIMIT :limit`;
  return (store.prepared(sql).all(args) as Record<string, unknown>[]).map(toCommandRecord);
}

// Agents poll for commands every second or so, and an UPDATE takes the write lock even when it changes nothing,
// competing with every heartbeat. So each write below is preceded by a read that finds whether it has work.
const EXPIRABLE = `SELECT 1 FROM commands WHERE state IN ('queued', 'executing') AND deadline_at <= :now
  AND (:name IS NULL OR agent_id = (SELECT id FROM agents WHERE name = :name)) LIMIT 1`;
const CLAIMABLE = `SELECT 1 FROM commands WHERE agent_id = (SELECT id FROM agents WHERE name = :name) AND state = 'queued' LIMIT 1`;

/** Settles commands past their deadline (of one agent, or all); returns how many. Writes only when there are some. */
export function expireCommands(store: Store, name: string | null, now: number): number {
  if (store.prepared(EXPIRABLE).get({ name, now }) === undefined) return 0;
  return store.retrying(() => store.prepared(EXPIRE_SQL).run({ name, now }).changes);
}

/** Claims the oldest queued command of `name` for `incarnation` with `token`; undefined when there is none to claim. */
export function claimCommand(store: Store, name: string, incarnation: number, token: string, now: number): { id: number; payload: string; createdAt: number; deadlineAt: number | null } | undefined {
  if (store.prepared(CLAIMABLE).get({ name }) === undefined) return undefined; // nothing queued: no write
  const row = store.retrying(() => store.prepared(CLAIM_SQL).get({ name, incarnation, token, now })) as Record<string, unknown> | undefined;
  if (!row) return undefined;
  return { id: Number(row.id), payload: String(row.payload), createdAt: Number(row.created_at), deadlineAt: row.deadline_at == null ? null : Number(row.deadline_at) };
}

/** Completes or fails a claimed command; false means rejected (cancelled, expired, or a stale token). */
export function finishCommand(store: Store, p: { id: number; token: string; state: 'completed' | 'failed'; result?: string | null; error?: string | null }, now: number): boolean {
  const bind = { id: p.id, token: p.token, state: p.state, result: p.result ?? null, error: p.error ?? null, now };
  return store.retrying(() => store.prepared(COMPLETE_SQL).run(bind).changes) === 1;
}

/** Cancels a queued or executing command; false if it had already finished. */
export function cancelCommandRow(store: Store, id: number, reason: string, now: number): boolean {
  const sql = `UPDATE commands SET state = 'cancelled', finished_at = :now, error = :reason WHERE id = :id AND state IN ('queued', 'executing')`;
  return store.retrying(() => store.prepared(sql).run({ id, reason, now }).changes) === 1;
}

/** The states of some commands by id (the library checks its in-flight ones, to notice cancellation). */
export function commandStates(store: Store, ids: number[]): Map<number, CommandState> {
  const out = new Map<number, CommandState>();
  if (!ids.length) return out;
  const rows = store.prepared(`SELECT id, state FROM commands WHERE id IN (SELECT value FROM json_each(?))`).all(JSON.stringify(ids)) as { id: number; state: CommandState }[];
  for (const r of rows) out.set(Number(r.id), r.state);
  return out;
}
