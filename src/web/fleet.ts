// The fleet page: summary counts, the health loop's status, filters (kept in the URL), groups with a roll-up of
// their states, and the table, one page of rows at a time so that 10,000 agents cost what 100 do.
import { el, fill, stateBadge } from './dom.js';
import { formatDuration, lastSeen } from './format.js';
import { type Model, type Row, STATES } from './model.js';

export const PAGE_SIZE = 100;
const GROUPS_SHOWN = 40;

export interface Filters {
  state: string;
  group: string;
  q: string;
  page: number;
}

/** The filters of the URL's query (?state=&group=&q=&page=). */
export function filtersOf(search: string): Filters {
  const p = new URLSearchParams(search);
  const page = Number(p.get('page') ?? '1');
  return { state: p.get('state') ?? '', group: p.get('group') ?? '', q: p.get('q') ?? '', page: Number.isInteger(page) && page > 0 ? page : 1 };
}

function searchOf(f: Filters): string {
  const p = new URLSearchParams();
  if (f.state) p.set('state', f.state);
  if (f.group) p.set('group', f.group);
  if (f.q) p.set('q', f.q);
  if (f.page > 1) p.set('page', String(f.page));
  const s = p.toString();
  return s ? `?${s}` : '';
}

const COLUMNS = ['Name', 'State', 'Last heartbeat', 'Uptime', 'Interval', 'Host', 'Restarts', 'Message'];

export class FleetView {
  readonly root = el('section', { attrs: { 'aria-labelledby': 'fleet-title' } });
  private readonly summary = el('div', { class: 'summary', attrs: { role: 'group', 'aria-label': 'Summary by state' } });
  private readonly groups = el('div', { class: 'groups' });
  private readonly tbody = el('tbody');
  private readonly pager = el('div', { class: 'pager' });
  private readonly stateSel = el('select', { attrs: { id: 'f-state', name: 'state' } });
  private readonly groupSel = el('select', { attrs: { id: 'f-group', name: 'group' } });
  private readonly text = el('input', { attrs: { id: 'f-q', name: 'q', type: 'search', placeholder: 'name, host or message', autocomplete: 'off' } });
  private readonly rows = new Map<string, HTMLTableRowElement>();
  private shown: string[] = [];
  private groupKey = '';
  private f: Filters;

  constructor(private readonly model: Model, private readonly navigate: (path: string) => void) {
    this.f = filtersOf(location.search);
    this.stateSel.append(el('option', { text: 'all states', attrs: { value: '' } }), ...STATES.map((s) => el('option', { text: s, attrs: { value: s } })));
    this.stateSel.value = this.f.state;
    this.text.value = this.f.q;
    this.stateSel.addEventListener('change', () => this.setFilters({ state: this.stateSel.value, page: 1 }));
    this.groupSel.addEventListener('change', () => this.setFilters({ group: this.groupSel.value, page: 1 }));
    let typing: number | undefined;
    this.text.addEventListener('input', () => {
      clearTimeout(typing);
      typing = window.setTimeout(() => this.setFilters({ q: this.text.value.trim(), page: 1 }), 150);
    });
    const table = el(
      'table',
      { attrs: { id: 'fleet', 'aria-label': 'Agents' } },
      el('thead', {}, el('tr', {}, ...COLUMNS.map((c) => el('th', { text: c, attrs: { scope: 'col' } })))),
      this.tbody,
    );
    fill(
      this.root,
      el('h1', { text: 'Fleet', attrs: { id: 'fleet-title' } }),
      this.summary,
      el(
        'div',
        { class: 'filters', attrs: { role: 'search' } },
        el('label', { attrs: { for: 'f-state' } }, 'State', this.stateSel),
        el('label', { attrs: { for: 'f-group' } }, 'Group', this.groupSel),
        el('label', { attrs: { for: 'f-q' } }, 'Text', this.text),
      ),
      el('h2', { text: 'Groups' }),
      this.groups,
      el('h2', { text: 'Agents' }),
      table,
      this.pager,
    );
  }

  private setFilters(change: Partial<Filters>): void {
    this.f = { ...this.f, ...change };
    history.replaceState(null, '', `/${searchOf(this.f)}`);
    this.render();
  }

  private matches(a: Row, q: string): boolean {
    if (this.f.state && a.state !== this.f.state) return false;
    if (this.f.group && a.group !== this.f.group) return false;
    if (q && !a.name.toLowerCase().includes(q) && !(a.host ?? '').toLowerCase().includes(q) && !(a.message ?? '').toLowerCase().includes(q)) return false;
    return true;
  }

  /** Draws what changed: counts, groups, and the rows of the current page (reused, so focus stays where it is). */
  render(): void {
    const m = this.model;
    if (!m.loaded) return;
    this.renderSummary();
    this.renderGroups();
    const q = this.f.q.toLowerCase();
    const hits: string[] = [];
    for (const name of m.order) {
      const a = m.agents.get(name);
      if (a && this.matches(a, q)) hits.push(name);
    }
    const pages = Math.max(1, Math.ceil(hits.length / PAGE_SIZE));
    const page = Math.min(this.f.page, pages);
    const names = hits.slice((page - 1) * PAGE_SIZE, page * PAGE_SIZE);
    const now = m.now();
    for (const name of names) this.updateRow(this.rowOf(name), m.agents.get(name)!, now);
    if (names.length !== this.shown.length || names.some((n, i) => n !== this.shown[i])) {
      for (const n of this.rows.keys()) if (!names.includes(n)) this.rows.delete(n);
      if (names.length) fill(this.tbody, ...names.map((n) => this.rows.get(n)!));
      else fill(this.tbody, el('tr', {}, el('td', { class: 'empty', text: m.agents.size ? 'No agent matches these filters.' : 'No agents registered yet.', attrs: { colspan: String(COLUMNS.length) } })));
      this.shown = names;
    }
    this.renderPager(hits.length, page, pages);
  }

  private rowOf(name: string): HTMLTableRowElement {
    let tr = this.rows.get(name);
    if (tr) return tr;
    const link = el('a', { text: name, attrs: { href: `/agents/${encodeURIComponent(name)}` } });
    link.addEventListener('click', (e) => {
      if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
      e.preventDefault();
      this.navigate(link.getAttribute('href')!);
    });
    tr = el('tr', { attrs: { tabindex: '0' }, data: { name } }, el('td', {}, link), ...COLUMNS.slice(1).map(() => el('td')));
    tr.children[6]!.className = 'num';
    tr.children[7]!.className = 'msg';
    tr.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && e.target === tr) this.navigate(link.getAttribute('href')!);
    });
    this.rows.set(name, tr);
    return tr;
  }

  private updateRow(tr: HTMLTableRowElement, a: Row, now: number): void {
    const c = tr.children;
    const badge = c[1]!.firstElementChild as HTMLElement | null;
    if (!badge || badge.dataset.state !== a.state) fill(c[1]!, stateBadge(a.state));
    tr.dataset.state = a.state;
    setText(c[2]!, lastSeen(a, now));
    setText(c[3]!, a.upSince === null ? '-' : formatDuration(now - a.upSince));
    setText(c[4]!, formatDuration(a.intervalMs));
    setText(c[5]!, a.host ?? '-');
    setText(c[6]!, String(a.restartCount));
    setText(c[7]!, a.message ?? '');
  }

  private renderSummary(): void {
    const counts = this.model.counts();
    const total = this.model.agents.size;
    const button = (label: string, n: number, state: string) => {
      const b = el('button', { class: 'count', attrs: { type: 'button', 'aria-pressed': String(this.f.state === state) } }, el('b', { text: n.toLocaleString('en-US') }), state ? stateBadge(label) : label);
      b.addEventListener('click', () => {
        this.stateSel.value = this.f.state === state ? '' : state;
        this.setFilters({ state: this.stateSel.value, page: 1 });
      });
      return b;
    };
    const key = JSON.stringify([counts, total, this.f.state]);
    if (this.summary.dataset.key === key) return;
    this.summary.dataset.key = key;
    fill(this.summary, button('total', total, ''), ...STATES.map((s) => button(s, counts[s] ?? 0, s)));
  }

  private renderGroups(): void {
    const by = new Map<string, Record<string, number>>();
    for (const a of this.model.agents.values()) {
      const g = a.group ?? '';
      const c = by.get(g) ?? {};
      c[a.state] = (c[a.state] ?? 0) + 1;
      by.set(g, c);
    }
    const names = [...by.keys()].sort();
    const key = JSON.stringify([[...by], this.f.group]);
    if (key === this.groupKey) return;
    this.groupKey = key;
    const current = this.f.group;
    fill(this.groupSel, el('option', { text: 'all groups', attrs: { value: '' } }), ...names.filter(Boolean).map((g) => el('option', { text: g, attrs: { value: g } })));
    this.groupSel.value = current;
    const cards = names.slice(0, GROUPS_SHOWN).map((g) => {
      const c = by.get(g)!;
      const total = Object.values(c).reduce((x, y) => x + y, 0);
      const bar = el('span', { class: 'bar' }, ...STATES.filter((s) => c[s]).map((s) => el('span', { class: 'state', data: { state: s }, text: `${c[s]} ${s}` })));
      const card = el('button', { class: 'group', attrs: { type: 'button', 'aria-pressed': String(current === g && g !== '') } }, el('b', { text: g || '(no group)' }), ` ${total}`, bar);
      if (g) card.addEventListener('click', () => this.setFilters({ group: current === g ? '' : g, page: 1 }));
      else card.disabled = true;
      return card;
    });
    fill(this.groups, ...cards, names.length > GROUPS_SHOWN ? el('span', { class: 'muted', text: `and ${names.length - GROUPS_SHOWN} more (use the group filter)` }) : null);
    if (!names.length) fill(this.groups, el('span', { class: 'muted', text: 'No groups.' }));
  }

  private renderPager(total: number, page: number, pages: number): void {
    const key = `${total}/${page}/${pages}`;
    if (this.pager.dataset.key === key) return;
    this.pager.dataset.key = key;
    const from = total ? (page - 1) * PAGE_SIZE + 1 : 0;
    const to = Math.min(total, page * PAGE_SIZE);
    const prev = el('button', { text: '← Previous', attrs: { type: 'button' } });
    const next = el('button', { text: 'Next →', attrs: { type: 'button' } });
    prev.disabled = page <= 1;
    next.disabled = page >= pages;
    prev.addEventListener('click', () => this.setFilters({ page: page - 1 }));
    next.addEventListener('click', () => this.setFilters({ page: page + 1 }));
    fill(this.pager, prev, el('span', { text: `${from.toLocaleString('en-US')}–${to.toLocaleString('en-US')} of ${total.toLocaleString('en-US')}`, attrs: { id: 'page-info' } }), next);
  }
}

function setText(e: Element, text: string): void {
  if (e.textContent !== text) e.textContent = text;
}
