// The dashboard's calls to agentctl serve: the read API, the controls (each carrying the session's CSRF token) and
// the live stream. The session cookie is HttpOnly; the CSRF token comes from /api/v1/session.

export type Role = 'viewer' | 'operator' | 'agent';

export interface Session {
  token: string;
  role: Role;
  via: string;
  csrfToken: string | null;
}

export interface Agent {
  name: string;
  group: string | null;
  state: string;
  stateSince: number;
  stateReason: string | null;
  stateEvidence: unknown;
  intervalMs: number;
  staleMultiplier: number;
  offlineAfterMs: number;
  lastHeartbeatAt: number | null;
  uptimeMs: number | null;
  pid: number | null;
  host: string | null;
  incarnation: number;
  restartCount: number;
  message: string | null;
  availability: string;
  maintenanceUntil: number | null;
  metadata: unknown;
  progress: number | null;
  launch: { argv: string[]; cwd: string | null } | null;
  reportedStatus: string | null;
}

export interface HealthLoop {
  ran: boolean;
  lastPassAt: number | null;
  everyMs: number | null;
  overdue: boolean;
  warning: string | null;
}

export interface Fleet {
  generatedAt: string;
  agents: Agent[];
  summary: Record<string, number>;
  healthLoop: HealthLoop | null;
}

export interface AgentEvent {
  id: number;
  agentName: string;
  at: number;
  fromState: string | null;
  toState: string;
  reason: string | null;
  evidence: unknown;
}

export interface AgentDetail {
  generatedAt: string;
  agent: Agent;
  events: AgentEvent[];
}

export class ApiError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

let csrf: string | null = null;

async function answer<T>(res: Response): Promise<T> {
  const body = (await res.json().catch(() => null)) as { error?: string } | null;
  if (!res.ok) throw new ApiError(res.status, body?.error ?? `HTTP ${res.status}`);
  return body as T;
}

export async function getJson<T>(path: string): Promise<T> {
  return answer<T>(await fetch(path, { credentials: 'same-origin', headers: { Accept: 'application/json' } }));
}

/** A change: POST with a JSON body and the session's CSRF token. */
export async function postJson<T>(path: string, body: unknown): Promise<T> {
  const headers: Record<string, string> = { 'Content-Type': 'application/json', Accept: 'application/json' };
  if (csrf) headers['X-CSRF-Token'] = csrf;
  return answer<T>(await fetch(path, { method: 'POST', credentials: 'same-origin', headers, body: JSON.stringify(body) }));
}

export async function loadSession(): Promise<Session> {
  const s = await getJson<Session>('/api/v1/session');
  csrf = s.csrfToken;
  return s;
}

export const agentPath = (name: string) => `/api/v1/agents/${encodeURIComponent(name)}`;

/**
 * The live stream of events. EventSource reconnects by itself and resumes with Last-Event-ID, so nothing is missed
 * across a dropped connection.
 */
export function openStream(onEvent: (e: AgentEvent) => void, onState: (live: boolean) => void): EventSource {
  const es = new EventSource('/api/v1/events/stream');
  es.onopen = () => onState(true);
  es.onerror = () => onState(false);
  es.onmessage = (m) => {
    try {
      onEvent(JSON.parse(m.data) as AgentEvent);
    } catch {
      // a malformed line is skipped; the next refresh shows the truth
    }
  };
  return es;
}
