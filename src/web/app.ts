// The dashboard of `agentctl serve`: loads the session and the fleet, follows the live event stream, and draws the
// fleet page (/) or one agent's page (/agents/NAME) without reloading. Nothing here parses HTML: see dom.ts.
import { type Agent, type AgentEvent, ApiError, type Fleet, type Session, agentPath, getJson, loadSession, openStream, postJson } from './api.js';
import { AgentView } from './agent.js';
import { byId, el, fill } from './dom.js';
import { FleetView } from './fleet.js';
import { formatDuration } from './format.js';
import { Model } from './model.js';

const model = new Model();
let session: Session;
let view: FleetView | AgentView | undefined;
let drawing = 0;

/** Redraws on the next frame (many events in one frame cost one draw). */
function draw(): void {
  if (drawing) return;
  drawing = requestAnimationFrame(() => {
    drawing = 0;
    view?.render();
    drawLoop();
  });
}

function drawLoop(): void {
  const box = byId('loop');
  const h = model.healthLoop;
  if (!h) return;
  box.className = h.warning ? 'loop warn' : 'loop';
  box.setAttribute('role', h.warning ? 'alert' : 'status');
  const age = h.lastPassAt === null ? null : model.now() - h.lastPassAt;
  box.textContent = h.warning
    ? `Warning: ${h.warning}`
    : `Health loop running: last pass ${formatDuration(age)} ago${h.everyMs ? `, every ${formatDuration(h.everyMs)}` : ''}`;
}

/** Shows the page for the current path. */
function route(): void {
  const m = /^\/agents\/([^/]+)$/.exec(location.pathname);
  const main = byId('main');
  if (m) {
    let name: string;
    try {
      name = decodeURIComponent(m[1]!);
    } catch {
      name = m[1]!;
    }
    view = new AgentView(model, name, session, navigate);
    document.title = `${name} · agentctl`;
  } else {
    view = new FleetView(model, navigate);
    document.title = 'agentctl';
  }
  fill(main, view.root);
  view.render();
  drawLoop();
}

function navigate(path: string): void {
  history.pushState(null, '', path);
  route();
  byId('main').focus();
}

async function refreshFleet(first?: Promise<Fleet>): Promise<void> {
  try {
    model.setFleet(await (first ?? getJson<Fleet>('/api/v1/agents')));
  } catch (err) {
    // The session ended (expired, token revoked, server restarted): the page itself then says how to log in.
    if (err instanceof ApiError && err.status === 401) location.reload();
    throw err;
  }
}

// Agents whose rows an event changed: fetched again (message, heartbeat, uptime) once a burst of events is over.
const dirty = new Set<string>();
let dirtyTimer: number | undefined;
let fullTimer: number | undefined;

function refreshAgentsSoon(name: string): void {
  dirty.add(name);
  clearTimeout(dirtyTimer);
  dirtyTimer = window.setTimeout(async () => {
    const names = [...dirty];
    dirty.clear();
    if (names.length > 20) return refreshFleetSoon();
    for (const n of names) {
      try {
        const d = await getJson<{ agent: Agent; generatedAt: string }>(agentPath(n));
        model.setAgent(d.agent, d.generatedAt);
      } catch {
        // deregistered meanwhile: the next full refresh drops it
      }
    }
  }, 300);
}

function refreshFleetSoon(): void {
  clearTimeout(fullTimer);
  fullTimer = window.setTimeout(() => void refreshFleet().catch(() => undefined), 500);
}

function onEvent(e: AgentEvent): void {
  if (!model.apply(e)) refreshFleetSoon();
  else if (!(view instanceof AgentView && view.name === e.agentName)) refreshAgentsSoon(e.agentName);
  if (view instanceof AgentView && view.name === e.agentName) view.onEvent(e);
}

function setLive(live: boolean): void {
  const s = byId('live');
  s.dataset.live = live ? 'on' : 'off';
  s.textContent = live ? 'live' : 'reconnecting…';
}

async function main(): Promise<void> {
  // The fleet is asked for at once, beside the session: at 10,000 agents it is the longest wait of the first paint.
  const fleet = getJson<Fleet>('/api/v1/agents');
  fleet.catch(() => undefined);
  try {
    session = await loadSession();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      location.reload(); // the server answers the page itself with the login hint
      return;
    }
    fill(byId('main'), el('p', { class: 'result bad', text: `Cannot load the session: ${(err as Error).message}` }));
    return;
  }
  byId('who').textContent = `${session.token} (${session.role})`;
  const logout = byId<HTMLButtonElement>('logout');
  logout.hidden = session.via !== 'cookie';
  logout.addEventListener('click', async () => {
    await postJson('/logout', {}).catch(() => undefined);
    location.assign('/');
  });
  model.subscribe(draw);
  // The stream first, so that nothing that happens while the fleet loads is missed.
  openStream(onEvent, setLive);
  window.addEventListener('popstate', route);
  document.addEventListener('click', (e) => {
    const a = (e.target as Element | null)?.closest?.('a[data-nav]');
    if (a && e.button === 0 && !e.metaKey && !e.ctrlKey) {
      e.preventDefault();
      navigate(a.getAttribute('href')!);
    }
  });
  route();
  try {
    await refreshFleet(fleet);
  } catch (err) {
    fill(byId('main'), el('p', { class: 'result bad', text: `Cannot load the fleet: ${(err as Error).message}` }));
  }
  // Ages tick every second; the rest (heartbeats, messages, states computed at read time) every few seconds.
  window.setInterval(draw, 1000);
  const every = () => (model.agents.size > 2000 ? 30_000 : 5_000);
  const again = () => window.setTimeout(() => void refreshFleet().catch(() => undefined).finally(again), every());
  again();
}

void main();
