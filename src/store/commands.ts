import { AgentNotFoundError } from '../errors.js';
import { protocol } from './dialect.js';
import { type CommandRecord, type CommandState, toCommandRecord } from './rows.js';
import type { Store } from './store.js';
import { jsonArrayValues } from './dialect.js';

/** The command channel's statements on a Store: the documented protocol (send, expire, claim, complete) and the operator's reads. */

const SELECT = `SELECT c.*, a.name AS agent_name FROM commands c JOIN agents a ON a.id = c.agent_id`;

/** Queues a command for `name`; throws AgentNotFoundError if there is no such agent. */
export function insertCommand(store: Store, name: string, payload: string, deadlineAt: number | null, now: number): Promise<CommandRecord> {
  return store.tx(async (s) => {
    const r = await s.sql.get<{ id: number }>(`${protocol(s.sql.dialect).send} RETURNING id`, { name, payload, deadline_at: deadlineAt, now });
    if (!r) throw new AgentNotFoundError(name);
    return (await getCommand(s, Number(r.id)))!;
  });
}

/** One command with its agent's name, or undefined. */
export async function getCommand(store: Store, id: number): Promise<CommandRecord | undefined> {
  const row = await store.sql.get(`${SELECT} WHERE c.id = ?`, [id]);
  return row ? toCommandRecord(row) : undefined;
}

/** Commands, newest first: of one agent and in some states if asked, at most `limit`. */
export async function selectCommands(store: Store, q: { agent?: string; states?: CommandState[]; limit?: number } = {}): Promise<CommandRecord[]> {
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
  return (await store.sql.all(sql, args)).map(toCommandRecord);
}

// Agents poll for commands every second or so, and an UPDATE takes the write lock even when it changes nothing,
// competing with every heartbeat. So each write below is preceded by a read that finds whether it has work.
const EXPIRABLE = `SELECT 1 FROM commands WHERE state IN ('queued', 'executing') AND deadline_at <= :now
  AND (CAST(:name AS text) IS NULL OR agent_id = (SELECT id FROM agents WHERE name = CAST(:name AS text))) LIMIT 1`;
const CLAIMABLE = `SELECT 1 FROM commands WHERE agent_id = (SELECT id FROM agents WHERE name = :name) AND state = 'queued' LIMIT 1`;

/** Settles commands past their deadline (of one agent, or all); returns how many. Writes only when there are some. */
export async function expireCommands(store: Store, name: string | null, now: number): Promise<number> {
  if ((await store.sql.get(EXPIRABLE, { name, now })) === undefined) return 0;
  return (await store.sql.run(protocol(store.sql.dialect).expire, { name, now })).changes;
}

/** Claims the oldest queued command of `name` for `incarnation` with `token`; undefined when there is none to claim. */
export async function claimCommand(store: Store, name: string, incarnation: number, token: string, now: number): Promise<{ id: number; payload: string; createdAt: number; deadlineAt: number | null } | undefined> {
  if ((await store.sql.get(CLAIMABLE, { name })) === undefined) return undefined; // nothing queued: no write
  const row = await store.sql.get(protocol(store.sql.dialect).claim, { name, incarnation, token, now });
  if (!row) return undefined;
  return { id: Number(row.id), payload: String(row.payload), createdAt: Number(row.created_at), deadlineAt: row.deadline_at == null ? null : Number(row.deadline_at) };
}

/** Completes or fails a claimed command; false means rejected (cancelled, expired, or a stale token). */
export async function finishCommand(store: Store, p: { id: number; token: string; state: 'completed' | 'failed'; result?: string | null; error?: string | null }, now: number): Promise<boolean> {
  const bind = { id: p.id, token: p.token, state: p.state, result: p.result ?? null, error: p.error ?? null, now };
  return (await store.sql.run(protocol(store.sql.dialect).complete, bind)).changes === 1;
}

/** Cancels a queued or executing command; false if it had already finished. */
export async function cancelCommandRow(store: Store, id: number, reason: string, now: number): Promise<boolean> {
  const sql = `UPDATE commands SET state = 'cancelled', finished_at = :now, error = :reason WHERE id = :id AND state IN ('queued', 'executing')`;
  return (await store.sql.run(sql, { id, reason, now })).changes === 1;
}

/** The states of some commands by id (the library checks its in-flight ones, to notice cancellation). */
export async function commandStates(store: Store, ids: number[]): Promise<Map<number, CommandState>> {
  const out = new Map<number, CommandState>();
  if (!ids.length) return out;
  const rows = await store.sql.all<{ id: number; state: CommandState }>(`SELECT id, state FROM commands WHERE id IN (${jsonArrayValues(store.sql.dialect, '?')})`, [JSON.stringify(ids)]);
  for (const r of rows) out.set(Number(r.id), r.state);
  return out;
}
