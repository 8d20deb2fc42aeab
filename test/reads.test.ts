import { joinPieces } from '../src/core/json-text.js';
import { describe, expect, it } from 'vitest';
import Table from 'cli-table3';
import { openStore, type Store } from '../src/store/store.js';
import { AGENT_STATES } from '../src/store/rows.js';
import { readCooldown, writeCooldown } from '../src/store/alerts.js';
import { readCounters, readMonitor } from '../src/store/monitor.js';
import { deregisterAgent, getRegisteredAgents, type AgentQuery, type AgentView, registerAgent, updateAgentState, updateHeartbeat } from '../src/core/agents.js';
import { formatDuration, iso } from '../src/core/duration.js';
import { countStates, heartbeatAgeMs, seedStatus } from '../src/core/state.js';
import { healthLoopStatus } from '../src/core/health/loop-status.js';
import { heartbeatMapText } from '../src/core/health/map.js';
import { escapeLabel, metricsText } from '../src/core/health/metrics.js';
import { agentJson, painter, paintState } from '../src/cli/render.js';
import { lastSeen, oneLine } from '../src/cli/format.js';
import { statusJsonText } from '../src/cli/commands/status.js';
import { renderStatus } from '../src/cli/status-screen.js';
import type { CliContext } from '../src/cli/context.js';
import { cli, cliJson, tempDb } from './helpers.js';
import { at, injectClock, releaseClock } from './clock.js';

// The reads stream their documents row by row now. Each is compared here with what the code before did (kept below
// as the reference: the record → view → object → JSON.stringify path), on a fleet in every state, at one `now`.

const NOW = Date.UTC(2026, 0, 15, 12, 0, 0);

/** A fleet in every state, with nested and non-ASCII metadata, groups, a pid, a launch command and a cooldown. */
async function variedFleet(db: string): Promise<void> {
  const s = await openStore({ path: db });
  try {
    await injectClock(s, NOW);
    /** `ago` ms before NOW, the database's clock set to it (test/clock.ts). */
    const before = async (ago: number) => await at(s, NOW - ago);
    await updateHeartbeat(s, { name: 'active-1', message: 'working', metadata: { jobs: 3, tags: ['a', 'ü', '処理'], deep: { x: null, y: 1.5 } } }, await before(1000));
    await updateHeartbeat(s, { name: 'busy-1', status: 'busy', progress: 42 }, await before(20_000));
    await registerAgent(s, { name: 'stale-1', intervalMs: 1000, group: 'batch' }, await before(9000));
    await updateHeartbeat(s, { name: 'stale-1' }, await before(5000));
    await registerAgent(s, { name: 'offline-clock', intervalMs: 1000, offlineAfterMs: 10_000 }, await before(70_000));
    await updateHeartbeat(s, { name: 'offline-clock' }, await before(60_000));
    await updateHeartbeat(s, { name: 'error-1', status: 'error', message: 'disk full' }, await before(2000));
    await updateHeartbeat(s, { name: 'maint-1' }, await before(3000));
    await updateAgentState(s, 'maint-1', 'maintenance', await before(1000), { forMs: 30 * 60_000, reason: 'kernel upgrade' });
    await updateHeartbeat(s, { name: 'maint-over' }, await before(20_000));
    await updateAgentState(s, 'maint-over', 'maintenance', await before(15_000), { forMs: 5000 });
    await registerAgent(s, { name: 'init-1' }, await before(500));
    await registerAgent(s, { name: 'stuck-init', intervalMs: 1000 }, await before(8000));
    await updateHeartbeat(s, { name: 'gone-1' }, await before(40_000));
    await updateAgentState(s, 'gone-1', 'offline', await before(30_000), { reason: 'pulled' });
    await updateHeartbeat(s, { name: 'failed-1' }, await before(40_000));
    await updateAgentState(s, 'failed-1', 'failed', await before(35_000));
    await registerAgent(s, { name: 'pid-1', pid: process.pid, group: 'batch', metadata: { role: 'writer' } }, await before(4000));
    await updateHeartbeat(s, { name: 'pid-1', message: '処理中 ジョブ 7' }, await before(100));
    await registerAgent(s, { name: 'launched', launch: { argv: ['sleep', '60'], cwd: '/' } }, await before(6000));
    await updateHeartbeat(s, { name: 'launched' }, await before(5000));
    await updateHeartbeat(s, { name: '123' }, await before(1500));
    await updateHeartbeat(s, { name: 'dereg-1' }, await before(9000));
    await deregisterAgent(s, 'dereg-1', await before(8000));
    await updateHeartbeat(s, { name: 'quoted', message: 'say "hi" \\ bye', metadata: { note: 'tab\there' } }, await before(700));
    await writeCooldown(s, { agentId: (await s.getAgent('gone-1'))!.id, lastAlertAt: await before(29_000), downState: 'offline', downSince: await before(30_000) });
  } finally {
    await s.close();
  }
}

const QUERIES: AgentQuery[] = [
  {},
  { includeDeregistered: true },
  { names: ['stale-1', 'active-1', 'dereg-1'] },
  { group: 'batch' },
  { names: ['pid-1', 'active-1'], group: 'batch' },
  { states: ['offline', 'stale', 'maintenance'] },
];

const ctxFor = (db: string, color = false) => ({ config: { dbPath: db }, color, now: () => NOW }) as unknown as CliContext;
/** The same JSON value, keys in the same order (what a reader of the document can tell apart). */
const same = (text: string) => JSON.stringify(JSON.parse(text));

// ---- the reference: the code before ----

async function oldStatusJson(store: Store, db: string, q: AgentQuery): Promise<string> {
  const agents = await getRegisteredAgents(store, NOW, q);
  return JSON.stringify({ generatedAt: new Date(NOW).toISOString(), database: db, agents: agents.map(agentJson), summary: { total: agents.length, ...countStates(agents) }, healthLoop: await healthLoopStatus(store, NOW) }, null, 2);
}

async function oldTable(store: Store, q: AgentQuery, color: boolean): Promise<string> {
  const c = painter(color);
  const agents = await getRegisteredAgents(store, NOW, q);
  const head = ['NAME', 'STATE', 'LAST HEARTBEAT', 'UPTIME', 'INTERVAL', 'PID', 'HOST', 'RESTARTS', 'MESSAGE'];
  const rows = agents.map((a: AgentView) => [
    a.name,
    paintState(c, a.state) + (a.state === 'maintenance' && a.maintenanceUntil ? c.dim(` ${formatDuration(a.maintenanceUntil - NOW)} left`) : ''),
    lastSeen(a),
    a.uptimeMs === null ? '-' : formatDuration(a.uptimeMs),
    formatDuration(a.intervalMs),
    a.pid === null ? '-' : String(a.pid),
    a.host ?? '-',
    String(a.restartCount),
    oneLine(a.message ?? (a.state !== a.persistedState || a.state === 'offline' ? (a.stateReason ?? '') : ''), 48),
  ]);
  const blank = { top: '', 'top-mid': '', 'top-left': '', 'top-right': '', bottom: '', 'bottom-mid': '', 'bottom-left': '', 'bottom-right': '', left: '', 'left-mid': '', mid: '', 'mid-mid': '', right: '', 'right-mid': '', middle: '  ' };
  const t = new Table({ head: head.map((h) => c.bold(h)), chars: blank, style: { head: [], border: [], 'padding-left': 0, 'padding-right': 0 } });
  t.push(...rows);
  const counts = countStates(agents);
  const parts = Object.entries(counts).filter(([, n]) => n > 0).map(([s, n]) => `${n} ${paintState(c, s as any)}`);
  const summary = `${agents.length} agent${agents.length === 1 ? '' : 's'}${parts.length ? `: ${parts.join(', ')}` : ''}`;
  return [t.toString().split('\n').map((l) => l.trimEnd()).join('\n'), summary].join('\n');
}

async function oldMap(store: Store) {
  const agents = await getRegisteredAgents(store, NOW);
  const summary = { total_agents: agents.length, online_agents: 0, offline_agents: 0, unknown_agents: 0, by_state: countStates(agents) };
  const map: Record<string, unknown> = {};
  const alerts: Record<string, unknown>[] = [];
  for (const a of agents) {
    const status = seedStatus(a.state);
    summary[`${status}_agents`]++;
    map[a.name] = {
      id: a.name, name: a.name, status, state: a.state, state_since: iso(a.stateSince), state_reason: a.stateReason, last_heartbeat: iso(a.lastHeartbeatAt),
      seconds_since_heartbeat: a.heartbeatAgeMs === null ? null : Math.max(0, Math.floor(a.heartbeatAgeMs / 1000)),
      heartbeat_interval_seconds: a.intervalMs / 1000, offline_threshold_seconds: a.offlineAfterMs / 1000, group: a.group, host: a.host, pid: a.pid, message: a.message, metadata: a.metadata,
    };
    if (status === 'offline') {
      const cd = await readCooldown(store, a.id);
      const secondsOffline = Math.max(0, Math.floor((NOW - a.stateSince) / 1000));
      alerts.push({ agent_id: a.name, agent_name: a.name, state: a.state, seconds_offline: secondsOffline, alert_time: iso(cd?.downState ? cd.lastAlertAt : a.stateSince), alerted: Boolean(cd?.downState), message: `Agent ${a.name} ${a.state} for ${secondsOffline}s${a.stateReason ? ` (${a.stateReason})` : ''}` });
    }
  }
  const loop = await healthLoopStatus(store, NOW);
  return JSON.stringify({ timestamp: iso(NOW)!, generator: 'agentctl', health_loop: { last_pass: iso(loop.lastPassAt), seconds_since_pass: loop.ageMs === null ? null : Math.floor(loop.ageMs / 1000), overdue: loop.overdue }, agents: map, alerts, summary }, null, 2);
}

async function oldMetrics(store: Store): Promise<string> {
  const agents = await getRegisteredAgents(store, NOW);
  const counters = await readCounters(store);
  const monitor = await readMonitor(store);
  const out: string[] = [];
  const labels = (l: Record<string, string | null>) => `{${Object.entries(l).map(([k, v]) => `${k}="${escapeLabel(v ?? '')}"`).join(',')}}`;
  const num = (n: number) => (Number.isFinite(n) ? String(Math.round(n * 1000) / 1000) : 'NaN');
  const family = (name: string, type: string, help: string, samples: [Record<string, string | null> | null, number][]) => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [l, v] of samples) out.push(`${name}${l ? labels(l) : ''} ${num(v)}`);
  };
  const perState = countStates(agents);
  family('agentctl_agents', 'gauge', 'Registered agents per state, derived at read time.', AGENT_STATES.map((s) => [{ state: s }, perState[s]]));
  family('agentctl_agent_up', 'gauge', 'Whether the agent is up (active or error: it heartbeats on time).', agents.map((a) => [{ agent: a.name, group: a.group, state: a.state }, seedStatus(a.state) === 'online' ? 1 : 0]));
  family('agentctl_agent_heartbeat_age_seconds', 'gauge', 'Seconds the agent has been silent by its contract: since its last heartbeat, or since its current incarnation started if it has not beaten since.', agents.map((a) => [{ agent: a.name, group: a.group }, Math.max(0, heartbeatAgeMs(a, NOW)) / 1000]));
  const c = (name: string) => counters[name] ?? 0;
  family('agentctl_transitions_total', 'counter', 'State transitions seen by the health loop, by the state entered.', AGENT_STATES.map((s) => [{ to: s }, c(`transitions_total:${s}`)]));
  family('agentctl_heartbeat_timeouts_total', 'counter', 'Agents found stale or offline by the clock (no heartbeat within their contract).', [[null, c('heartbeat_timeouts_total')]]);
  family('agentctl_crash_proofs_total', 'counter', 'Agents found offline by a proof of a local crash (pid gone or reused, host rebooted).', [[null, c('crash_proofs_total')]]);
  family('agentctl_alerts_queued_total', 'counter', 'Alerts decided, by kind.', ['alert', 'reminder', 'recovery', 'test'].map((k) => [{ kind: k }, c(`alerts_queued_total:${k}`)]));
  family('agentctl_alerts_sent_total', 'counter', 'Alert deliveries that reached their receiver.', [[null, c('alerts_sent_total')]]);
  family('agentctl_alerts_failed_total', 'counter', 'Alert delivery attempts that failed (retried on later passes).', [[null, c('alerts_failed_total')]]);
  family('agentctl_alerts_suppressed_total', 'counter', 'Down alerts not sent because of the per-agent cooldown.', [[null, c('alerts_suppressed_total')]]);
  family('agentctl_commands_expired_total', 'counter', 'Commands settled by the health loop because their deadline passed (queued: cancelled; executing: failed).', [[null, c('commands_expired_total')]]);
  family('agentctl_convictions_held_total', 'counter', 'Convictions held for one pass because most of the fleet would have been convicted at once.', [[null, c('convictions_held_total')]]);
  family('agentctl_monitor_suspect_passes_total', 'counter', 'Passes that convicted no one because the health loop suspected itself (paused, clock step).', [[null, c('suspect_passes_total')]]);
  family('agentctl_monitor_passes_total', 'counter', 'Health-loop passes.', [[null, c('passes_total')]]);
  family('agentctl_monitor_last_pass_timestamp_seconds', 'gauge', 'Unix time of the last health-loop pass (0: never).', [[null, (monitor?.lastPassAt ?? 0) / 1000]]);
  family('agentctl_monitor_last_pass_duration_seconds', 'gauge', 'How long the last health-loop pass took.', [[null, (monitor?.lastPassMs ?? 0) / 1000]]);
  return `${out.join('\n')}\n`;
}

/** The pieces of a document written as it is read, joined. */
const collect = joinPieces;

describe('reads in one pass give the documents the code before gave', () => {
  it('status --json: the same document for every kind of query', async () => {
    const db = tempDb();
    await variedFleet(db);
    const s = await openStore({ path: db, mode: 'existing' });
    try {
      for (const q of QUERIES) expect(same(await collect(statusJsonText(ctxFor(db), s, q, NOW))), JSON.stringify(q)).toBe(same(await oldStatusJson(s, db, q)));
      // Every state is in the fleet, so the comparison covered each way a state is derived.
      expect(new Set((await getRegisteredAgents(s, NOW)).map((a) => a.state))).toEqual(new Set(AGENT_STATES));
    } finally {
      await s.close();
    }
  });

  it('status: the same table, byte for byte, with and without colours (wide characters measured as cli-table3 did)', async () => {
    const db = tempDb();
    await variedFleet(db);
    const s = await openStore({ path: db, mode: 'existing' });
    try {
      for (const q of QUERIES) {
        for (const color of [false, true]) expect(await renderStatus(ctxFor(db, color), s, q, undefined, () => undefined), JSON.stringify({ q, color })).toBe(await oldTable(s, q, color));
      }
    } finally {
      await s.close();
    }
  });

  it('map: the same document, valid against the schema (checked in map-metrics.test.ts); metrics: the same text', async () => {
    const db = tempDb();
    await variedFleet(db);
    const s = await openStore({ path: db, mode: 'existing' });
    try {
      const map = await collect(heartbeatMapText(s, NOW));
      expect(same(map)).toBe(same(await oldMap(s)));
      expect(JSON.parse(map).alerts.map((a: any) => [a.agent_name, a.alerted])).toEqual([['failed-1', false], ['gone-1', true], ['offline-clock', false]]);
      // On PostgreSQL each heartbeat also carries its writer's own clock, months after the scenario's (test/clock.ts):
      // the metrics rightly report that skew, which the reference predates.
      const skew = /^(# (HELP|TYPE) )?agentctl_host_clock_offset_seconds\b.*\n/gm;
      const metrics = await collect(metricsText(s, NOW));
      expect(metrics.match(skew)?.length ?? 0).toBe(s.sql.dialect === 'postgres' ? 3 : 0);
      expect(metrics.replace(skew, '')).toBe(await oldMetrics(s));
    } finally {
      await s.close();
    }
  });

  it('history --json: the same array, evidence included', async () => {
    const db = tempDb();
    await variedFleet(db);
    const s = await openStore({ path: db, mode: 'existing' });
    const reference = JSON.stringify((await s.listEvents({ limit: 1000 })).map((e) => ({ ...e, atIso: new Date(e.at).toISOString() })), null, 2);
    await s.close();
    const r = cli(['history', '--limit', '1000', '--json'], { db });
    expect(r.code).toBe(0);
    expect(same(r.stdout)).toBe(same(reference));
    expect(JSON.parse(r.stdout).length).toBeGreaterThan(20);
    expect(cli(['history', '--json', 'init-1', '--since', '1s'], { db }).stdout).toBe('[]\n');
  });

  it('the CLI prints the same documents (spot values), and an empty fleet as before', async () => {
    const db = tempDb();
    await variedFleet(db);
    const status = cliJson(['status'], { db });
    expect(status.agents.map((a: any) => a.name)).toEqual(['123', 'active-1', 'busy-1', 'error-1', 'failed-1', 'gone-1', 'init-1', 'launched', 'maint-1', 'maint-over', 'offline-clock', 'pid-1', 'quoted', 'stale-1', 'stuck-init']);
    expect(status.agents[1].metadata).toEqual({ jobs: 3, tags: ['a', 'ü', '処理'], deep: { y: 1.5 } }); // a merge patch: null removes
    expect(status.agents.find((a: any) => a.name === 'launched').launch).toEqual({ argv: ['sleep', '60'], cwd: '/' });
    expect(status.summary.total).toBe(15);
    const empty = tempDb();
    cli(['heartbeat', 'x'], { db: empty });
    cli(['deregister', 'x'], { db: empty });
    const none = cli(['status', '--json'], { db: empty });
    expect(none.stdout).toMatch(/"agents": \[\],\n {2}"summary": \{\n {4}"total": 0,/);
    expect(JSON.parse(none.stdout).agents).toEqual([]);
    expect(JSON.parse(cli(['map'], { db: empty }).stdout)).toMatchObject({ agents: {}, alerts: [], summary: { total_agents: 0 } });
  });
});

describe('check: counts and worst agents from SQL', () => {
  it('names the five worst (offline and failed before stale and error, by name) and counts the rest', async () => {
    const db = tempDb();
    const s = await openStore({ path: db });
    await injectClock(s);
    const now = Date.now();
    for (const n of ['e1', 'e2', 'e3']) await updateHeartbeat(s, { name: n, status: 'error', message: `broke ${n}` }, await at(s, now));
    for (const n of ['o2', 'o1']) {
      await updateHeartbeat(s, { name: n }, await at(s, now));
      await updateAgentState(s, n, 'offline', await at(s, now));
    }
    await registerAgent(s, { name: 's1', intervalMs: 1000 }, await at(s, now - 3_600_000));
    await updateHeartbeat(s, { name: 's1' }, await at(s, now - 60_000));
    await updateHeartbeat(s, { name: 'ok1' }, await at(s, now));
    await releaseClock(s); // the CLI below judges by the server's real clock
    await s.close();
    const r = cli(['check'], { db });
    expect(r.code).toBe(2);
    expect(r.stdout).toMatch(/^CRITICAL: o1 offline \(last heartbeat \d+m?s? ?\d*s? ago\), o2 offline \(.*\), e1 error \(broke e1\), e2 error \(broke e2\), e3 error \(broke e3\), and 1 more; 7 agents: 1 active, 1 stale, 3 error, 2 offline \| total=7 active=1 initializing=0 stale=1 error=3 maintenance=0 offline=2 failed=0\n$/);
    const json = JSON.parse(cli(['check', '--json'], { db }).stdout);
    expect(json).toMatchObject({ status: 'CRITICAL', code: 2 });
    expect(json.agents.map((a: any) => [a.name, a.state, a.severity])).toEqual([
      ['e1', 'error', 'WARNING'], ['e2', 'error', 'WARNING'], ['e3', 'error', 'WARNING'], ['o1', 'offline', 'CRITICAL'], ['o2', 'offline', 'CRITICAL'], ['ok1', 'active', 'OK'], ['s1', 'stale', 'WARNING'],
    ]);
    expect(cli(['check', 'ok1', 'nope'], { db }).stdout).toBe("UNKNOWN: no agent named 'nope'\n");
    expect(cli(['check', 'ok1', 'e1'], { db }).stdout).toMatch(/^WARNING: e1 error \(broke e1\); 2 agents: 1 active, 1 error \|/);
  });
});
