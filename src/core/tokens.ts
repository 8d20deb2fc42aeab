import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { AgentctlError, UsageError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import type { Store } from '../store/store.js';
import { TOKEN_ROLES, type TokenRecord, type TokenRole, insertToken, liveTokenIndex, liveTokens, listTokens, revokeTokenRow, revokeUnusedOnceTokens } from '../store/tokens.js';
import { validateName } from './validate.js';

export { TOKEN_ROLES, type TokenRecord, type TokenRole };

/** No token by that name (exit 3, like an unknown agent). */
export class TokenNotFoundError extends AgentctlError {
  constructor(name: string) {
    super('E_NOT_FOUND', ExitCode.NOT_FOUND, `no live token named '${name}' (see 'agentctl token list')`);
  }
}

/** A token's prefix: says what the string is when it turns up in a log or a shell history. */
const PREFIX = 'agentctl_';

/** A new token: 32 random bytes, base64url (high entropy, so one SHA-256 is enough to store it). */
export function generateToken(): string {
  return PREFIX + randomBytes(32).toString('base64url');
}

/** The stored form of a token: its SHA-256 in hex. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** The glob of `--agents`: the agent-name alphabet plus `*` (any run) and `?` (one character). */
const PATTERN_RE = /^[A-Za-z0-9._:@*?-]{1,128}$/;

export function validateAgentPattern(pattern: string): string {
  if (!PATTERN_RE.test(pattern)) throw new UsageError(`invalid --agents pattern ${JSON.stringify(pattern.slice(0, 40))}: use agent-name characters with * and ?, like 'batch-*'`);
  return pattern;
}

/** Whether `name` matches the glob `pattern` (whole name; * any run, ? one character). */
export function matchesPattern(pattern: string, name: string): boolean {
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`, 's');
  return re.test(name);
}

export interface CreateTokenInput {
  name: string;
  role: string;
  agents?: string | undefined;
}

/** Validates, stores the hash of a new token and returns the token itself (the only time it exists anywhere). */
export async function createToken(store: Store, input: CreateTokenInput, now: number, opts: { once?: boolean } = {}): Promise<{ token: string; record: TokenRecord }> {
  validateName(input.name, 'token name');
  if (!(TOKEN_ROLES as readonly string[]).includes(input.role)) throw new UsageError(`invalid role '${input.role}': use one of ${TOKEN_ROLES.join(', ')}`);
  if (input.agents !== undefined) {
    if (input.role !== 'agent') throw new UsageError('--agents applies only to tokens of the agent role');
    validateAgentPattern(input.agents);
  }
  const token = generateToken();
  const t = { name: input.name, role: input.role as TokenRole, agents: input.agents ?? null, hash: hashToken(token), once: opts.once ?? false };
  if (!await insertToken(store, t, now)) throw new UsageError(`a token named '${input.name}' exists already (revoked tokens keep their names): choose another name`);
  return { token, record: (await listTokens(store)).find((r) => r.name === input.name)! };
}

/** Revokes the live token `name`; it stops working at once, browser sessions made with it included. */
export async function revokeToken(store: Store, name: string, now: number): Promise<void> {
  validateName(name, 'token name');
  if (!await revokeTokenRow(store, name, now)) throw new TokenNotFoundError(name);
}

/**
 * The live token whose hash is `token`'s, or undefined. Found by its SHA-256 in the index of live tokens (a guess's
 * hash shares nothing with the real token's, so the lookup's time says nothing about how close a guess came); the
 * hashes are then compared in constant time (crypto.timingSafeEqual) all the same.
 */
export async function findToken(store: Store, token: string): Promise<TokenRecord | undefined> {
  const hash = hashToken(token);
  const t = (await liveTokenIndex(store)).get(hash);
  if (!t) return undefined;
  return timingSafeEqual(Buffer.from(t.hash, 'hex'), Buffer.from(hash, 'hex')) ? t : undefined;
}

/**
 * When no token but unused one-time login tokens exists, makes a fresh one-time operator token for the login link
 * `serve` prints (and revokes the unused ones before it). Returns the token, or null when real tokens exist.
 */
export async function ensureLoginToken(store: Store, now: number): Promise<string | null> {
  return await store.tx(async (store) => {
    if ((await liveTokens(store)).some((t) => !t.once)) return null;
    await revokeUnusedOnceTokens(store, now);
    return (await createToken(store, { name: `login-${now}`, role: 'operator' }, now, { once: true })).token;
  });
}

/** A token as `token list --json` and the API show it: never its hash. */
export function tokenJson(t: TokenRecord) {
  return {
    name: t.name,
    role: t.role,
    agents: t.agents,
    once: t.once,
    createdAt: t.createdAt,
    createdAtIso: new Date(t.createdAt).toISOString(),
    usedAt: t.usedAt,
    revokedAt: t.revokedAt,
    live: t.revokedAt === null && !(t.once && t.usedAt !== null),
  };
}
