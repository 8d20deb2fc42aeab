import { prepareHeartbeat, updateAgentState, viewAgent, type StatusTarget } from '../../core/agents.js';
import { writeHeartbeat } from '../../core/agents.js';
import { parseDuration } from '../../core/duration.js';
import { renderMetrics } from '../../core/health/metrics.js';
import { parseList, validateGroup, validateMessage, validateName } from '../../core/validate.js';
import { AGENT_STATES } from '../../store/rows.js';
import { eventsAfter } from '../../store/monitor.js';
import { agentJson } from '../../cli/render.js';
import { statusJsonText } from '../../cli/commands/status.js';
import { eventJson } from '../../cli/commands/history.js';
import { TARGETS } from '../../cli/commands/set-status.js';
import { parseContract } from '../../cli/commands/options.js';
import { VERSION } from '../../version.js';
import { joinPieces } from '../../core/json-text.js';
import { restartByToken, sendByToken } from '../../core/controls.js';
import { commandJson } from '../../cli/commands/commands.js';
import { HttpError, onlyKeys, optionalString, readJsonObject, sendJson, statusOf } from '../http.js';
import { AgentctlError } from '../../errors.js';
import type { Route, RouteContext } from './types.js';

const EVENTS_PAGE_MAX = 10_000;
const AGENT_EVENTS = 50;

/** A whole-number query parameter (absent: `fallback`), 400 otherwise. */
function intParam(ctx: RouteContext, key: string, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  const v = ctx.url.searchParams.get(key);
  if (v === null) return fallback;
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v)) || Number(v) > max) throw new HttpError(400, `invalid ${key} '${v.slice(0, 40)}': a whole number${max < Number.MAX_SAFE_INTEGER ? ` up to ${max}` : ''}`);
  return Number(v);
}

/** GET /api/v1/agents: the document of `status --json`, with its filters state, group and q (a substring of the name). */
async function listAgents(ctx: RouteContext): Promise<void> {
  const p = ctx.url.searchParams;
  const state = p.get('state');
  const group = p.get('group');
  const q = p.get('q');
  const states = state !== null ? parseList(state, AGENT_STATES, 'state') : undefined;
  if (group !== null) validateGroup(group);
  const now = ctx.app.now();
  const query = { ...(states ? { states } : {}), ...(group !== null ? { group } : {}), ...(q !== null && q !== '' ? { nameContains: q } : {}) };
  // The very text of status --json (same builder, read in one snapshot); sent whole, with its length.
  const body = await joinPieces(statusJsonText({ config: { dbPath: ctx.app.dbPath } } as Parameters<typeof statusJsonText>[0], ctx.app.store, query, now));
  ctx.res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
  ctx.res.end(ctx.req.method === 'HEAD' ? undefined : body);
}

/** GET /api/v1/agents/<name>: the agent (as in the list) and its most recent events. */
async function oneAgent(ctx: RouteContext): Promise<void> {
  const name = validateName(ctx.params[0]);
  const now = ctx.app.now();
  const record = await ctx.app.store.getAgent(name);
  if (!record) throw new HttpError(404, 'not found');
  const events = await ctx.app.store.listEvents({ agent: name, limit: intParam(ctx, 'events', AGENT_EVENTS, EVENTS_PAGE_MAX) });
  sendJson(ctx.res, 200, { generatedAt: new Date(now).toISOString(), agent: agentJson(viewAgent(record, now)), events: events.map(eventJson) });
}

/** GET /api/v1/events?after=ID&limit=N: events after ID, oldest first; `next` is the id to ask after next time. */
async function listEvents(ctx: RouteContext): Promise<void> {
  const after = intParam(ctx, 'after', 0);
  const limit = intParam(ctx, 'limit', 1000, EVENTS_PAGE_MAX);
  if (limit === 0) throw new HttpError(400, 'invalid limit 0: at least 1');
  const events = await eventsAfter(ctx.app.store, after, limit);
  sendJson(ctx.res, 200, { events: events.map(eventJson), next: events.length ? events[events.length - 1]!.id : after });
}

/** GET /api/v1/events/stream: Server-Sent Events, resumed after Last-Event-ID (or ?after=ID). */
async function stream(ctx: RouteContext): Promise<void> {
  const header = ctx.req.headers['last-event-id'];
  const given = typeof header === 'string' && header !== '' ? header : ctx.url.searchParams.get('after');
  if (given !== null && !/^\d+$/.test(given)) throw new HttpError(400, 'invalid Last-Event-ID: an event id');
  await ctx.app.stream.open(ctx.res, given === null ? undefined : Number(given));
}

/**
 * POST /api/v1/agents/<name>/heartbeat {status, message, metadata, progress, interval, staleAfter, offlineAfter}:
 * one heartbeat, validated as the CLI's `heartbeat` validates it (a contract given registers it in the same
 * transaction). An unknown name is 404 unless ?create=1 (then 201).
 */
async function heartbeat(ctx: RouteContext): Promise<void> {
  const name = validateName(ctx.params[0]);
  const body = await readJsonObject(ctx.req);
  onlyKeys(body, ['status', 'message', 'metadata', 'progress', 'interval', 'staleAfter', 'offlineAfter']);
  const status = optionalString(body, 'status');
  // The contract, as `heartbeat --interval/--stale-after/--offline-after` takes it (what `run --server` sends first).
  const contract = parseContract({
    interval: optionalString(body, 'interval'),
    staleAfter: typeof body.staleAfter === 'number' ? String(body.staleAfter) : optionalString(body, 'staleAfter'),
    offlineAfter: optionalString(body, 'offlineAfter'),
  });
  const message = optionalString(body, 'message');
  const progress = body.progress;
  if (progress !== undefined && progress !== null && typeof progress !== 'number') throw new HttpError(400, 'progress must be a whole number');
  const metadata = body.metadata === null ? undefined : body.metadata;
  if (metadata !== undefined && (typeof metadata !== 'object' || Array.isArray(metadata))) throw new HttpError(400, 'metadata must be a JSON object');
  const prepared = prepareHeartbeat({
    name,
    ...contract,
    status: status as 'ok' | 'busy' | 'error' | undefined, // prepareHeartbeat checks it
    message,
    metadata: metadata as Record<string, unknown> | undefined,
    progress: progress === null ? undefined : (progress as number | undefined),
  });
  const { store } = ctx.app;
  const now = ctx.app.now();
  if (!await store.getAgent(name) && ctx.url.searchParams.get('create') !== '1') throw new HttpError(404, 'not found');
  const r = await writeHeartbeat(store, prepared, now);
  sendJson(ctx.res, r.registered ? 201 : 200, { name, at: new Date(now).toISOString(), registered: r.registered });
}

/**
 * POST /api/v1/agents/<name>/status {status, for, reason}: set-status's manual controls, validated as the CLI
 * validates them and done by the same core function; the event names the token that asked.
 */
async function setStatus(ctx: RouteContext): Promise<void> {
  const name = validateName(ctx.params[0]);
  const body = await readJsonObject(ctx.req);
  onlyKeys(body, ['status', 'for', 'reason']);
  const status = optionalString(body, 'status');
  const forText = optionalString(body, 'for');
  const reason = optionalString(body, 'reason');
  if (status === undefined || !(TARGETS as readonly string[]).includes(status)) throw new HttpError(400, `invalid status ${JSON.stringify(status ?? null)}: use one of ${TARGETS.join(', ')}`);
  if (forText !== undefined && status !== 'maintenance') throw new HttpError(400, 'for applies only to maintenance');
  const forMs = forText !== undefined ? parseDuration(forText, 'for') : undefined;
  if (reason !== undefined) validateMessage(reason);
  const now = ctx.app.now();
  const r = await updateAgentState(ctx.app.store, name, status as StatusTarget, now, { reason, forMs, token: ctx.principal!.token.name });
  sendJson(ctx.res, 200, { name, from: viewAgent(r.before, now).state, agent: agentJson(viewAgent(r.after, now)) });
}

/**
 * POST /api/v1/agents/<name>/restart {}: `agentctl restart NAME` (same core function, same checks: strict mode,
 * signals only to what may be signalled, the maintenance lock); an event names the token.
 */
async function restart(ctx: RouteContext): Promise<void> {
  const name = validateName(ctx.params[0]);
  onlyKeys(await readJsonObject(ctx.req), []);
  const r = await restartByToken(ctx.app.store, name, ctx.principal!.token.name, { logDir: ctx.app.logDir, now: ctx.app.now, allowSharedDb: ctx.app.allowSharedDb });
  // A restart that could not be done (the agent runs on another host, did not come back) is said, not a 500.
  if (r.error) throw r.error instanceof AgentctlError && statusOf(r.error).status === 500 ? new HttpError(409, r.error.message) : r.error;
  sendJson(ctx.res, 200, { name, action: r.action, steps: r.steps, pid: r.pid ?? null });
}

/**
 * POST /api/v1/agents/<name>/commands {payload, timeout, queue}: `agentctl send NAME -- PAYLOAD` (same core
 * function and limits; 409 for an offline or failed agent unless queue); an event names the token. 201 with the command.
 */
async function sendToAgent(ctx: RouteContext): Promise<void> {
  const name = validateName(ctx.params[0]);
  const body = await readJsonObject(ctx.req);
  onlyKeys(body, ['payload', 'timeout', 'queue']);
  const payload = optionalString(body, 'payload');
  if (payload === undefined || payload === '') throw new HttpError(400, 'payload must be a non-empty string');
  const timeout = optionalString(body, 'timeout');
  if (body.queue !== undefined && typeof body.queue !== 'boolean') throw new HttpError(400, 'queue must be true or false');
  const timeoutMs = timeout !== undefined ? parseDuration(timeout, 'timeout') : undefined;
  const c = await sendByToken(ctx.app.store, name, payload, ctx.principal!.token.name, ctx.app.now(), { timeoutMs, queue: body.queue === true });
  sendJson(ctx.res, 201, commandJson(c));
}

function session(ctx: RouteContext): void {
  const p = ctx.principal!;
  sendJson(ctx.res, 200, { token: p.token.name, role: p.token.role, via: p.via, csrfToken: p.session?.csrf ?? null });
}

/** The read API, the stream, the JSON heartbeat, the operator's controls, /metrics and /healthz. */
export const apiRoutes: Route[] = [
  { methods: ['GET', 'HEAD'], path: /^\/healthz$/, access: 'public', handle: healthz },
  { methods: ['GET', 'HEAD'], path: /^\/metrics$/, access: 'viewer', handle: metrics },
  { methods: ['GET', 'HEAD'], path: /^\/api\/v1\/session$/, access: 'viewer', handle: session },
  { methods: ['GET', 'HEAD'], path: /^\/api\/v1\/agents$/, access: 'viewer', handle: listAgents },
  { methods: ['GET', 'HEAD'], path: /^\/api\/v1\/agents\/([^/]+)$/, access: 'viewer', handle: oneAgent },
  { methods: ['GET', 'HEAD'], path: /^\/api\/v1\/events$/, access: 'viewer', handle: listEvents },
  { methods: ['GET'], path: /^\/api\/v1\/events\/stream$/, access: 'viewer', handle: stream },
  { methods: ['POST'], path: /^\/api\/v1\/agents\/([^/]+)\/heartbeat$/, access: 'agent', agent: (p) => p[0]!, handle: heartbeat },
  { methods: ['POST'], path: /^\/api\/v1\/agents\/([^/]+)\/status$/, access: 'operator', handle: setStatus },
  { methods: ['POST'], path: /^\/api\/v1\/agents\/([^/]+)\/restart$/, access: 'operator', handle: restart },
  { methods: ['POST'], path: /^\/api\/v1\/agents\/([^/]+)\/commands$/, access: 'operator', handle: sendToAgent },
];

/** GET /healthz, without authentication: 200 while the database answers, 503 otherwise. */
async function healthz(ctx: RouteContext): Promise<void> {
  try {
    await ctx.app.store.lastEventId();
  } catch {
    sendJson(ctx.res, 503, { status: 'unavailable', version: VERSION });
    return;
  }
  sendJson(ctx.res, 200, { status: 'ok', version: VERSION });
}

/** GET /metrics: the exposition of `agentctl metrics`. */
async function metrics(ctx: RouteContext): Promise<void> {
  const text = await renderMetrics(ctx.app.store, ctx.app.now());
  ctx.res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  ctx.res.end(ctx.req.method === 'HEAD' ? undefined : text);
}

