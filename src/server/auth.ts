import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { findToken, matchesPattern } from '../core/tokens.js';
import type { Store } from '../store/store.js';
import { type TokenRecord, type TokenRole, getToken, useOnceToken } from '../store/tokens.js';
import { HttpError } from './http.js';

/** What a route needs: nobody (public), a viewer (or operator), an operator, or an agent token. */
export type Access = 'public' | 'viewer' | 'operator' | 'agent';

const ALLOWED: Record<Exclude<Access, 'public'>, readonly TokenRole[]> = {
  viewer: ['viewer', 'operator'],
  operator: ['operator'],
  agent: ['agent'],
};

export const SESSION_COOKIE = 'agentctl_session';
export const CSRF_COOKIE = 'agentctl_csrf';
export const CSRF_HEADER = 'x-csrf-token';

/** Who made a request, and how they proved it. */
export interface Principal {
  token: TokenRecord;
  via: 'bearer' | 'cookie' | 'ping-key' | 'query';
  session?: Session;
}

interface Session {
  id: string;
  tokenId: number;
  csrf: string;
  expiresAt: number;
}

export interface AuthOptions {
  /** Failed attempts one client address may make per window before it gets 429 (default 10). */
  failLimit?: number;
  /** The window of failLimit, in ms (default 60 s). */
  failWindowMs?: number;
  /** How long a browser session lasts (default 12 h). */
  sessionMs?: number;
  /** Served over TLS: cookies get `Secure`. */
  secure?: boolean;
  now?: () => number;
}

function equal(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** The cookies of a request, by name (the first of each). */
function cookies(req: IncomingMessage): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of String(req.headers.cookie ?? '').split(';')) {
    const at = part.indexOf('=');
    if (at < 0) continue;
    const k = part.slice(0, at).trim();
    if (!out.has(k)) out.set(k, part.slice(at + 1).trim());
  }
  return out;
}

const STATE_CHANGING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * Authentication and roles, in one place before any route: bearer tokens, ping keys and browser sessions (cookie +
 * CSRF token), every token compared in constant time, failed attempts limited per client address. Sessions live in
 * this process only: a restart of `serve` logs browsers out.
 */
export class Auth {
  private readonly store: Store;
  private readonly sessions = new Map<string, Session>();
  private readonly failures = new Map<string, { count: number; resetAt: number }>();
  private readonly failLimit: number;
  private readonly failWindowMs: number;
  private readonly sessionMs: number;
  private readonly now: () => number;
  /** The attributes every cookie of ours carries (Secure under TLS). */
  readonly cookieAttributes: string;

  constructor(store: Store, opts: AuthOptions = {}) {
    this.store = store;
    this.failLimit = opts.failLimit ?? 10;
    this.failWindowMs = opts.failWindowMs ?? 60_000;
    this.sessionMs = opts.sessionMs ?? 12 * 3_600_000;
    this.now = opts.now ?? Date.now;
    this.cookieAttributes = `Path=/; SameSite=Strict${opts.secure ? '; Secure' : ''}`;
  }

  /** 429 with Retry-After while `addr` is over its failed-attempt limit. */
  private checkLimit(addr: string): void {
    const f = this.failures.get(addr);
    const now = this.now();
    if (!f) return;
    if (now >= f.resetAt) {
      this.failures.delete(addr);
      return;
    }
    if (f.count >= this.failLimit) {
      throw new HttpError(429, 'too many failed attempts: wait before trying again', { 'Retry-After': String(Math.max(1, Math.ceil((f.resetAt - now) / 1000))) });
    }
  }

  private fail(addr: string, message: string): never {
    const now = this.now();
    const f = this.failures.get(addr);
    if (!f || now >= f.resetAt) this.failures.set(addr, { count: 1, resetAt: now + this.failWindowMs });
    else f.count++;
    // Bound the table: a flood from many addresses forgets the oldest first.
    if (this.failures.size > 10_000) this.failures.delete(this.failures.keys().next().value!);
    throw new HttpError(401, message, { 'WWW-Authenticate': 'Bearer realm="agentctl"' });
  }

  /** The token of `secret`, or a 401 counted against `addr` (429 once over the limit). */
  private async token(addr: string, secret: string): Promise<TokenRecord> {
    this.checkLimit(addr);
    const t = secret ? await findToken(this.store, secret) : undefined;
    // A one-time login token opens a browser session and nothing else.
    if (!t || t.once) this.fail(addr, 'unknown or revoked token');
    return t;
  }

  /**
   * Who made `req`: the ping key in the path (`pingKey`), else `Authorization: Bearer`, else the session cookie,
   * else a badge's `?token=` (`queryKey`). 401 when none is given or what is given is wrong.
   */
  async authenticate(req: IncomingMessage, pingKey?: string, queryKey?: string): Promise<Principal> {
    const addr = req.socket.remoteAddress ?? 'unknown';
    if (pingKey !== undefined) return { token: await this.token(addr, pingKey), via: 'ping-key' };
    const auth = req.headers.authorization;
    if (auth !== undefined) {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
      if (!m) this.fail(addr, 'use Authorization: Bearer TOKEN');
      return { token: await this.token(addr, m[1]!), via: 'bearer' };
    }
    const sid = cookies(req).get(SESSION_COOKIE);
    if (sid !== undefined) {
      this.checkLimit(addr);
      const s = this.sessions.get(sid);
      const t = s && s.expiresAt > this.now() ? await getToken(this.store, s.tokenId) : undefined;
      // The token behind a session is read again on every request, so revoking it ends the session at once.
      if (!s || !t || t.revokedAt !== null) {
        if (s) this.sessions.delete(sid);
        this.fail(addr, 'session expired or revoked: log in again');
      }
      return { token: t, via: 'cookie', session: s };
    }
    if (queryKey !== undefined) return { token: await this.token(addr, queryKey), via: 'query' };
    throw new HttpError(401, 'authentication required: send Authorization: Bearer TOKEN', { 'WWW-Authenticate': 'Bearer realm="agentctl"' });
  }

  /**
   * 403 unless `p` may do what `access` asks (and, for agent tokens, act for `agent`). A state-changing request
   * authenticated by its cookie must carry the session's CSRF token in X-CSRF-Token.
   */
  authorize(req: IncomingMessage, p: Principal, access: Exclude<Access, 'public'>, agent?: string): void {
    if (!ALLOWED[access].includes(p.token.role)) throw new HttpError(403, `forbidden: this needs a token of the ${ALLOWED[access].join(' or ')} role; '${p.token.name}' is ${p.token.role}`);
    if (agent !== undefined && p.token.agents !== null && !matchesPattern(p.token.agents, agent)) {
      throw new HttpError(403, `forbidden: token '${p.token.name}' may act only for agents matching '${p.token.agents}'`);
    }
    if (p.via === 'cookie' && STATE_CHANGING.has(req.method ?? '')) {
      const sent = req.headers[CSRF_HEADER];
      if (typeof sent !== 'string' || !equal(sent, p.session!.csrf)) throw new HttpError(403, 'forbidden: missing or wrong CSRF token (send it in X-CSRF-Token)');
    }
  }

  /**
   * Opens a browser session for the token `secret` (viewer or operator; a one-time token is used up by it). Returns
   * the Set-Cookie values: the session (HttpOnly) and the CSRF token (readable by the page, which echoes it).
   */
  async login(req: IncomingMessage, secret: string): Promise<{ token: TokenRecord; csrf: string; cookies: string[] }> {
    const addr = req.socket.remoteAddress ?? 'unknown';
    this.checkLimit(addr);
    const t = secret ? await findToken(this.store, secret) : undefined;
    if (!t) this.fail(addr, 'unknown, used or revoked token');
    if (t.role === 'agent') throw new HttpError(403, 'forbidden: agent tokens cannot log in');
    if (t.once && !await useOnceToken(this.store, t.id, this.now())) this.fail(addr, 'this login link was used already');
    this.expire();
    const s: Session = { id: randomBytes(32).toString('base64url'), tokenId: t.id, csrf: randomBytes(32).toString('base64url'), expiresAt: this.now() + this.sessionMs };
    this.sessions.set(s.id, s);
    // Bounded: past this many live sessions, the oldest is logged out.
    if (this.sessions.size > 10_000) this.sessions.delete(this.sessions.keys().next().value!);
    const common = `${this.cookieAttributes}; Max-Age=${Math.floor(this.sessionMs / 1000)}`;
    return { token: t, csrf: s.csrf, cookies: [`${SESSION_COOKIE}=${s.id}; HttpOnly; ${common}`, `${CSRF_COOKIE}=${s.csrf}; ${common}`] };
  }

  /** Ends the session of `p` (logout). */
  logout(p: Principal): void {
    if (p.session) this.sessions.delete(p.session.id);
  }

  private expire(): void {
    const now = this.now();
    for (const [id, s] of this.sessions) if (s.expiresAt <= now) this.sessions.delete(id);
  }
}
