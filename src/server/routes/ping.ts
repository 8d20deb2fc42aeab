import { prepareHeartbeat } from '../../core/agents.js';
import { MESSAGE_MAX, validateName } from '../../core/validate.js';
import { markExited } from '../../store/lifecycle.js';
import { recordNote } from '../../store/notes.js';
import { HttpError, PING_BODY_LIMIT, PING_BODY_MAX, readBody, sendText } from '../http.js';
import type { Route, RouteContext } from './types.js';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

type Action = { kind: 'success' } | { kind: 'start' } | { kind: 'fail' } | { kind: 'log' } | { kind: 'exit'; code: number };

/** The action of a ping's last path segment (none: success); 400 for an exit status above 255. */
function parseAction(segment: string | undefined): Action {
  if (segment === undefined) return { kind: 'success' };
  if (segment === 'start' || segment === 'fail' || segment === 'log') return { kind: segment };
  if (/^\d+$/.test(segment)) {
    const code = Number(segment);
    if (code > 255) throw new HttpError(400, 'invalid url format');
    return { kind: 'exit', code };
  }
  throw new HttpError(404, 'not found');
}

/** The first `PING_BODY_LIMIT` bytes of the body as text (a character cut at the limit becomes U+FFFD). */
async function pingBody(ctx: RouteContext): Promise<string> {
  if (ctx.req.method !== 'POST') return '';
  return (await readBody(ctx.req, PING_BODY_MAX, PING_BODY_LIMIT)).toString('utf8');
}

/** A message within the CLI's limit: the body cut to MESSAGE_MAX characters. */
function messageOf(text: string): string | undefined {
  return text === '' ? undefined : text.slice(0, MESSAGE_MAX);
}

async function ping(ctx: RouteContext): Promise<void> {
  const [key, name, segment] = ctx.params as [string, string, string | undefined];
  void key;
  validateName(name);
  const action = parseAction(segment);
  const rid = ctx.url.searchParams.get('rid');
  if (rid !== null && !UUID_RE.test(rid)) throw new HttpError(400, 'invalid uuid format');
  const create = ctx.url.searchParams.get('create') === '1';
  const exited = parseExited(ctx.url.searchParams, action);
  const body = await pingBody(ctx);
  const { store } = ctx.app;
  const now = ctx.app.now();
  const headers = { 'Ping-Body-Limit': String(PING_BODY_LIMIT) };
  if (exited) {
    const created = await processGone(ctx, name, exited, create, rid, headers, now);
    sendText(ctx.res, created ? 201 : 200, created ? 'Created' : 'OK', headers);
    return;
  }
  if (action.kind === 'log') {
    const evidence = { via: 'ping', token: ctx.principal!.token.name, ...(rid !== null ? { rid } : {}) };
    let created = false;
    if (!await store.getAgent(name)) {
      if (!create) throw new HttpError(404, 'not found', headers);
      created = (await store.register({ name }, now)).registered;
    }
    if (!await recordNote(store, name, body === '' ? '(log ping)' : body, evidence, now)) throw new HttpError(404, 'not found', headers);
    sendText(ctx.res, created ? 201 : 200, created ? 'Created' : 'OK', headers);
    return;
  }
  const failed = action.kind === 'fail' || (action.kind === 'exit' && action.code > 0);
  let message = messageOf(body);
  if (action.kind === 'exit' && action.code > 0) message = messageOf(`exit status ${action.code}${body ? `: ${body}` : ''}`);
  if (action.kind === 'fail' && message === undefined) message = 'failure reported by ping';
  const { beat } = prepareHeartbeat({ name, status: failed ? 'error' : action.kind === 'start' ? 'busy' : 'ok', message });
  let created = false;
  if (!await ctx.app.beats.beat(beat, now)) {
    if (!create) throw new HttpError(404, 'not found', headers);
    created = (await store.heartbeat(beat, now)).registered;
  }
  sendText(ctx.res, created ? 201 : 200, created ? 'Created' : 'OK', headers);
}

interface Exited {
  code: number;
  signal: string | null;
  /** What the wrapper adds, as `agentctl run` records it on the database: the child's pid (on its host), its uptime, the signal it forwarded. */
  extra: { pid?: number; uptime_ms?: number; forwarded_signal?: string };
}

const SIGNAL_RE = /^SIG[A-Z0-9]{1,12}$/;

/** A whole-number query parameter of an exit report, or undefined (400 if malformed). */
function countParam(q: URLSearchParams, key: string): number | undefined {
  const v = q.get(key);
  if (v === null) return undefined;
  if (!/^\d{1,15}$/.test(v)) throw new HttpError(400, `invalid ${key}: a whole number`);
  return Number(v);
}

/**
 * `?exited=1` on an exit-status ping: the process is gone (what `agentctl run --server` sends when its child
 * exits), not only a job that finished. Only with an exit status; `signal=SIGNAME` names the signal that killed it.
 */
function parseExited(q: URLSearchParams, action: Action): Exited | null {
  const exited = q.get('exited');
  const signal = q.get('signal');
  if (exited === null || exited === '0') {
    if (signal !== null) throw new HttpError(400, 'signal= goes with exited=1');
    if (q.has('pid') || q.has('uptime_ms') || q.has('forwarded_signal')) throw new HttpError(400, 'pid, uptime_ms and forwarded_signal go with exited=1');
    return null;
  }
  if (exited !== '1') throw new HttpError(400, 'invalid exited: use exited=1');
  if (action.kind !== 'exit') throw new HttpError(400, 'exited=1 goes with an exit status: /ping/<key>/<name>/<exit-status>?exited=1');
  if (signal !== null && !SIGNAL_RE.test(signal)) throw new HttpError(400, 'invalid signal: a name such as SIGKILL');
  const forwarded = q.get('forwarded_signal');
  if (forwarded !== null && !SIGNAL_RE.test(forwarded)) throw new HttpError(400, 'invalid forwarded_signal: a name such as SIGTERM');
  const pid = countParam(q, 'pid');
  const uptime = countParam(q, 'uptime_ms');
  return { code: action.code, signal, extra: { ...(pid !== undefined ? { pid } : {}), ...(uptime !== undefined ? { uptime_ms: uptime } : {}), ...(forwarded !== null ? { forwarded_signal: forwarded } : {}) } };
}

/**
 * The process behind an agent is gone: offline at once, with its exit status (or signal) in the event, as the
 * local `agentctl run` records an exit. Already offline or failed: nothing changes, and the answer is still OK
 * (a wrapper retrying after a lost answer must not fail). Returns whether the agent was created (?create=1).
 */
async function processGone(ctx: RouteContext, name: string, exited: Exited, create: boolean, rid: string | null, headers: Record<string, string>, now: number): Promise<boolean> {
  const { store } = ctx.app;
  let agent = await store.getAgent(name);
  let created = false;
  if (!agent) {
    if (!create) throw new HttpError(404, 'not found', headers);
    ({ registered: created, agent } = await store.register({ name }, now));
  }
  const reason = exited.signal ? `killed by ${exited.signal}` : `exited with code ${exited.code}`;
  const evidence = {
    rule: 'exit', detected_by: 'agentctl run --server', via: 'ping', token: ctx.principal!.token.name,
    exit_status: exited.code, exit_code: exited.signal ? null : exited.code, signal: exited.signal, ...exited.extra, ...(rid !== null ? { rid } : {}),
  };
  await markExited(store, name, agent.incarnation, reason, evidence, now);
  return created;
}

/**
 * Pings in healthchecks' slug form, `/ping/<key>/<name>[/start|/fail|/log|/<exit-status>]`, for curl and runitor
 * (HC_API_URL=http://HOST:PORT/ping, HC_PING_KEY=<agent token>). The key is an agent token.
 */
export const pingRoutes: Route[] = [
  {
    methods: ['GET', 'HEAD', 'POST'],
    path: /^\/ping\/([^/]+)\/([^/]+)(?:\/([^/]+))?\/?$/,
    access: 'agent',
    pingKey: (p) => p[0]!,
    agent: (p) => p[1]!,
    handle: ping,
  },
];
