import type { IncomingMessage, ServerResponse } from 'node:http';
import { AgentNotFoundError, AgentctlError, UsageError } from '../errors.js';

/** Largest JSON request body, in bytes (the largest valid heartbeat, metadata at its limit, fits well within it). */
export const JSON_BODY_MAX = 65_536;
/** Of a ping's body, the bytes kept (healthchecks' default PING_BODY_LIMIT); announced in `Ping-Body-Limit`. */
export const PING_BODY_LIMIT = 10_000;
/** Largest ping body read at all; beyond it the answer is 413. */
export const PING_BODY_MAX = 1_048_576;

/** An answer other than 200, with its status and a short text. Bad input is always a 4xx, never a 5xx. */
export class HttpError extends Error {
  readonly status: number;
  readonly headers: Record<string, string>;
  constructor(status: number, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.status = status;
    this.headers = headers;
  }
}

const CONFLICTS = new Set(['E_AGENT_UNAVAILABLE', 'E_NO_LAUNCH', 'E_REFUSED']);

/** The HTTP status of an error raised by core or store: usage 400, not found 404, the rest 500/503. */
export function statusOf(err: unknown): { status: number; message: string; headers: Record<string, string> } {
  if (err instanceof HttpError) return { status: err.status, message: err.message, headers: err.headers };
  if (err instanceof UsageError) return { status: 400, message: err.message, headers: {} };
  if (err instanceof AgentNotFoundError) return { status: 404, message: 'not found', headers: {} };
  if (err instanceof AgentctlError && err.code === 'E_NOT_FOUND') return { status: 404, message: 'not found', headers: {} };
  if (err instanceof AgentctlError && (err.code === 'E_BUSY' || err.code === 'E_LOCKED')) return { status: 503, message: err.message, headers: { 'Retry-After': '1' } };
  // An operator's control that cannot be done in the agent's present state (offline, no launch command, refused).
  if (err instanceof AgentctlError && CONFLICTS.has(err.code)) return { status: 409, message: err.message, headers: {} };
  return { status: 500, message: 'internal error', headers: {} };
}

/** Headers every answer carries: no sniffing, no framing, no referrer, a CSP that allows nothing. */
export const SECURITY_HEADERS: Record<string, string> = {
  'X-Content-Type-Options': 'nosniff',
  'Content-Security-Policy': "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-store',
};

/**
 * The dashboard's pages replace SECURITY_HEADERS' CSP with this one: scripts, styles and connections from this origin
 * only, no inline script or style attribute, no plugins, no framing, forms only back to this origin.
 */
export const PAGE_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

export function sendText(res: ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { ...headers, 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  res.end(res.req.method === 'HEAD' ? undefined : text);
}

export function sendJson(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { ...headers, 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

/**
 * Reads the request body, at most `max` bytes (413 beyond: a Content-Length over it is refused before reading).
 * Returns the first `keep` bytes (all of it by default).
 */
export async function readBody(req: IncomingMessage, max: number, keep = max): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > max) throw new HttpError(413, `request body too large: the limit is ${max} bytes`, { Connection: 'close' });
  const chunks: Buffer[] = [];
  let total = 0;
  let kept = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > max) throw new HttpError(413, `request body too large: the limit is ${max} bytes`, { Connection: 'close' });
    if (kept < keep) {
      const part = chunk.subarray(0, keep - kept);
      chunks.push(part);
      kept += part.length;
    }
  }
  return Buffer.concat(chunks);
}

/** Reads a JSON object body: 415 unless it is JSON, 413 past JSON_BODY_MAX, 400 unless it parses to an object. */
export async function readJsonObject(req: IncomingMessage): Promise<Record<string, unknown>> {
  const type = String(req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json') throw new HttpError(415, 'send the body as application/json');
  const body = await readBody(req, JSON_BODY_MAX);
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new HttpError(400, `invalid JSON: ${(err as Error).message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new HttpError(400, 'the body must be a JSON object');
  return value as Record<string, unknown>;
}

/** Refuses keys of `body` outside `allowed` (a typo must not pass silently). */
export function onlyKeys(body: Record<string, unknown>, allowed: readonly string[]): void {
  const extra = Object.keys(body).filter((k) => !allowed.includes(k));
  if (extra.length) throw new HttpError(400, `unknown field${extra.length > 1 ? 's' : ''} ${extra.map((k) => JSON.stringify(k)).join(', ')}: use ${allowed.join(', ')}`);
}

/** A field that must be a string when present. */
export function optionalString(body: Record<string, unknown>, key: string): string | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new HttpError(400, `${key} must be a string`);
  return v;
}

/** One path segment, percent-decoded (400 for a malformed escape). */
export function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new HttpError(400, 'invalid url format');
  }
}
