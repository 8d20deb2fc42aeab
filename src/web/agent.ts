// One agent's page: what it is now, its controls (operators only) and its history as a timeline, each transition
// with its evidence (the rule that fired, the age and threshold, the exit code or signal).
import { type AgentDetail, type AgentEvent, type Session, agentPath, getJson } from './api.js';
import { controlsFor } from './controls.js';
import { el, fill, stateBadge } from './dom.js';
import { clock, formatDuration, lastSeen } from './format.js';
import type { Model } from './model.js';

export class AgentView {
  readonly root = el('section', { attrs: { 'aria-labelledby': 'agent-title' } });
  private readonly head = el('div');
  private readonly facts = el('dl', { class: 'facts' });
  private readonly timeline = el('ol', { class: 'timeline', attrs: { id: 'timeline' } });
  private events: AgentEvent[] = [];
  private missing = false;
  private refreshing: number | undefined;

  constructor(private readonly model: Model, readonly name: string, session: Session, navigate: (path: string) => void) {
    const back = el('a', { text: '← Fleet', attrs: { href: '/' } });
    back.addEventListener('click', (e) => {
      e.preventDefault();
      navigate('/');
    });
    fill(
      this.root,
      el('p', {}, back),
      this.head,
      this.facts,
      session.role === 'operator' ? controlsFor(() => this.model.agents.get(this.name)!, () => this.refreshSoon(0)) : null,
      el('h2', { text: 'History' }),
      this.timeline,
    );
    void this.refresh();
  }

  /** Fetches the agent and its events again, shortly (events come in bursts). */
  refreshSoon(ms = 150): void {
    clearTimeout(this.refreshing);
    this.refreshing = window.setTimeout(() => void this.refresh(), ms);
  }

  private async refresh(): Promise<void> {
    try {
      const d = await getJson<AgentDetail>(`${agentPath(this.name)}?events=200`);
      this.events = d.events;
      this.missing = false;
      this.model.setAgent(d.agent, d.generatedAt);
    } catch (err) {
      this.missing = true;
      fill(this.head, el('h1', { text: this.name, attrs: { id: 'agent-title' } }), el('p', { class: 'result bad', text: (err as Error).message }));
    }
  }

  /** An event for this agent came in: shown at once, then the page is fetched again for the rest. */
  onEvent(e: AgentEvent): void {
    if (!this.events.some((x) => x.id === e.id)) this.events = [e, ...this.events];
    this.refreshSoon();
  }

  render(): void {
    const a = this.model.agents.get(this.name);
    if (!a || this.missing) return;
    const now = this.model.now();
    fill(this.head, el('h1', { attrs: { id: 'agent-title' } }, `${a.name} `, stateBadge(a.state)), el('p', { class: 'muted', text: a.stateReason ?? '' }));
    const fact = (k: string, v: string | Node) => [el('dt', { text: k }), el('dd', {}, v)];
    fill(
      this.facts,
      ...fact('Group', a.group ?? '-'),
      ...fact('State since', `${clock(a.stateSince)} (${formatDuration(now - a.stateSince)} ago)`),
      ...fact('Last heartbeat', lastSeen(a, now)),
      ...fact('Uptime', a.upSince === null ? '-' : formatDuration(now - a.upSince)),
      ...fact('Contract', `every ${formatDuration(a.intervalMs)}, stale after ${formatDuration(a.intervalMs * a.staleMultiplier)}, offline after ${formatDuration(a.offlineAfterMs)}`),
      ...fact('Availability', a.availability),
      ...(a.maintenanceUntil !== null ? fact('Maintenance until', clock(a.maintenanceUntil)) : []),
      ...fact('Host / pid', `${a.host ?? '-'} / ${a.pid ?? '-'}`),
      ...fact('Incarnation / restarts', `${a.incarnation} / ${a.restartCount}`),
      ...fact('Message', a.message ?? '-'),
      ...(a.progress !== null ? fact('Progress', String(a.progress)) : []),
      ...fact('Launch command', a.launch ? a.launch.argv.join(' ') : '-'),
      ...fact('Metadata', el('pre', { text: JSON.stringify(a.metadata ?? {}, null, 2) })),
    );
    const items = [...this.events].sort((x, y) => y.id - x.id).map((e) =>
      el(
        'li',
        { data: { state: e.toState } },
        el('span', { class: 'when', text: clock(e.at) }),
        e.fromState && e.fromState !== e.toState ? stateBadge(e.fromState) : null,
        e.fromState && e.fromState !== e.toState ? ' → ' : null,
        stateBadge(e.toState),
        ` ${e.reason ?? ''}`,
        e.evidence ? el('pre', { text: JSON.stringify(e.evidence, null, 2) }) : null,
      ),
    );
    if (items.length) fill(this.timeline, ...items);
    else fill(this.timeline, el('li', { class: 'muted', text: 'No events.' }));
  }
}
