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
    id: r.id as number,
    name: r.name as string,
    role: r.role as TokenRole,
    agents: (r.agents as string | null) ?? null,
    hash: r.hash as string,
    createdAt: r.created_at as number,
    once: r.once === 1,
    usedAt: (r.used_at as number | null) ?? null,
    revokedAt: (r.revoked_at as number | null) ?? null,
  };
}

export interface NewToken {
  name: string;
  role: TokenRole;
  agents: string | null;
  hash: string;
  once?: boolean;
}

/** Inserts a token; false when the name is taken (by a live or a revoked token: names are never reused silently). */
export function insertToken(store: Store, t: NewToken, now: number): boolean {
  return store.retrying(
    () =>
      store
        .prepared('INSERT INTO tokens (name, role, agents, hash, created_at, once) VALUES (:name, :role, :agents, :hash, :now, :once) ON CONFLICT (name) DO NOTHING')
        .run({ name: t.name, role: t.role, agents: t.agents, hash: t.hash, now, once: t.once ? 1 : 0 }).changes === 1,
  );
}

/** Every token, oldest first (revoked ones too). */
export function listTokens(store: Store): TokenRecord[] {
  return (store.prepared('SELECT * FROM tokens ORDER BY id').all() as Record<string, unknown>[]).map(toTokenRecord);
}

/** Tokens that may still authenticate: not revoked, and for one-time tokens not used yet. */
export function liveTokens(store: Store): TokenRecord[] {
  return (store.prepared('SELECT * FROM tokens WHERE revoked_at IS NULL AND (once = 0 OR used_at IS NULL) ORDER BY id').all() as Record<string, unknown>[]).map(toTokenRecord);
}

/** One token by id, or undefined. */
export function getToken(store: Store, id: number): TokenRecord | undefined {
  const row = store.prepared('SELECT * FROM tokens WHERE id = ?').get(id) as Record<string, unknown> | undefined;
  return row ? toTokenRecord(row) : undefined;
}

/** Marks a token revoked; false when no live token has that name. */
export function revokeTokenRow(store: Store, name: string, now: number): boolean {
  return store.retrying(() => store.prepared('UPDATE tokens SET revoked_at = :now WHERE name = :name AND revoked_at IS NULL').run({ name, now }).changes === 1);
}

/** Uses up a one-time token; false when it was used (or revoked) already, so that two logins cannot share it. */
export function useOnceToken(store: Store, id: number, now: number): boolean {
  return store.retrying(() => store.prepared('UPDATE tokens SET used_at = :now WHERE id = :id AND once = 1 AND used_at IS NULL AND revoked_at IS NULL').run({ id, now }).changes === 1);
}

/** Revokes the one-time login tokens nobody used (a new start of `serve` prints a fresh link). */
export function revokeUnusedOnceTokens(store: Store, now: number): number {
  return store.retrying(() => store.prepared('UPDATE tokens SET revoked_at = :now WHERE once = 1 AND used_at IS NULL AND revoked_at IS NULL').run({ now }).changes);
}
