import type { Store } from './store.js';

export const TOKEN_ROLES = ['viewer', 'operator', 'agent'] as const;
export type TokenRole = (typeof TOKEN_ROLES)[number];

/** A stored token: everything but the token itself, which is never kept (only its SHA-256). */
export interface TokenRecord {
  id: number;
  name: string;
  role: TokenRole;
  /** Agent tokens: the glob of names it may ping for; null means any. */
  agents: string | null;
  hash: string;
  createdAt: number;
  /** A one-time login token (the link `serve` prints when no token exists). */
  once: boolean;
  usedAt: number | null;
  revokedAt: number | null;
}

function toTokenRecord(r: Record<string, unknown>): TokenRecord {
  return {
    id: Number(r.id),
    name: r.name as string,
    role: r.role as TokenRole,
    agents: (r.agents as string | null) ?? null,
    hash: r.hash as string,
    createdAt: Number(r.created_at),
    once: Number(r.once) === 1,
    usedAt: r.used_at == null ? null : Number(r.used_at),
    revokedAt: r.revoked_at == null ? null : Number(r.revoked_at),
  };
}

export interface NewToken {
  name: string;
  role: TokenRole;
  agents: string | null;
  hash: string;
  once?: boolean;
}

/**
 * Token writes made by this process. Its own commits do not change its connection's data_version (see
 * liveTokenIndex), so every write here bumps this counter, which the index checks too.
 */
let localWrites = 0;

/** Inserts a token; false when the name is taken (by a live or a revoked token: names are never reused silently). */
export async function insertToken(store: Store, t: NewToken, now: number): Promise<boolean> {
  localWrites++;
  const r = await store.sql.run('INSERT INTO tokens (name, role, agents, hash, created_at, once) VALUES (:name, :role, :agents, :hash, :now, :once) ON CONFLICT (name) DO NOTHING', {
    name: t.name,
    role: t.role,
    agents: t.agents,
    hash: t.hash,
    now,
    once: t.once ? 1 : 0,
  });
  return r.changes === 1;
}

/** Every token, oldest first (revoked ones too). */
export async function listTokens(store: Store): Promise<TokenRecord[]> {
  return (await store.sql.all('SELECT * FROM tokens ORDER BY id')).map(toTokenRecord);
}

/** Tokens that may still authenticate: not revoked, and for one-time tokens not used yet. */
export async function liveTokens(store: Store): Promise<TokenRecord[]> {
  return (await store.sql.all('SELECT * FROM tokens WHERE revoked_at IS NULL AND (once = 0 OR used_at IS NULL) ORDER BY id')).map(toTokenRecord);
}

interface TokenIndex {
  localWrites: number;
  dataVersion: number;
  byHash: Map<string, TokenRecord>;
}

const indexes = new WeakMap<Store, TokenIndex>();

/**
 * The live tokens by hash, for the server's per-request lookup. Kept in memory and read again only when the database
 * may have changed since: on SQLite, when `PRAGMA data_version` moved (another connection committed, such as
 * `agentctl token revoke`) or this process wrote a token itself; so a revoked token is refused on its very next
 * request, and a request costs one small statement instead of reading every token. Elsewhere: read every time.
 */
export async function liveTokenIndex(store: Store): Promise<Map<string, TokenRecord>> {
  if (store.sql.dialect !== 'sqlite') return new Map((await liveTokens(store)).map((t) => [t.hash, t]));
  // Taken before the tokens are read: a commit in between makes the next call read them again.
  const writes = localWrites;
  // Waits for a transaction of this connection to end: inside one, data_version would be the snapshot's.
  const version = Number((await store.sql.get<{ data_version: number }>('PRAGMA data_version'))!.data_version);
  const known = indexes.get(store);
  if (known && known.localWrites === writes && known.dataVersion === version) return known.byHash;
  const byHash = new Map((await liveTokens(store)).map((t) => [t.hash, t]));
  indexes.set(store, { localWrites: writes, dataVersion: version, byHash });
  return byHash;
}

/** One token by id, or undefined. */
export async function getToken(store: Store, id: number): Promise<TokenRecord | undefined> {
  const row = await store.sql.get('SELECT * FROM tokens WHERE id = ?', [id]);
  return row ? toTokenRecord(row) : undefined;
}

/** Marks a token revoked; false when no live token has that name. */
export async function revokeTokenRow(store: Store, name: string, now: number): Promise<boolean> {
  localWrites++;
  return (await store.sql.run('UPDATE tokens SET revoked_at = :now WHERE name = :name AND revoked_at IS NULL', { name, now })).changes === 1;
}

/** Uses up a one-time token; false when it was used (or revoked) already, so that two logins cannot share it. */
export async function useOnceToken(store: Store, id: number, now: number): Promise<boolean> {
  localWrites++;
  return (await store.sql.run('UPDATE tokens SET used_at = :now WHERE id = :id AND once = 1 AND used_at IS NULL AND revoked_at IS NULL', { id, now })).changes === 1;
}

/** Revokes the one-time login tokens nobody used (a new start of `serve` prints a fresh link). */
export async function revokeUnusedOnceTokens(store: Store, now: number): Promise<number> {
  localWrites++;
  return (await store.sql.run('UPDATE tokens SET revoked_at = :now WHERE once = 1 AND used_at IS NULL AND revoked_at IS NULL', { now })).changes;
}
