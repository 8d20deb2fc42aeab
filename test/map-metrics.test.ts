import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { readFileSync, readdirSync } from 'node:fs';
import AjvModule from 'ajv';
import { ROOT, cli, exited, startCli, tempDb, tempDir, waitFor } from './helpers.js';

const schema = JSON.parse(readFileSync(join(ROOT, 'src', 'schemas', 'heartbeat-map.schema.json'), 'utf8'));

function validator() {
  // ajv is CommonJS: under NodeNext its default export is the module object.
  const Ajv = (AjvModule as unknown as { default: typeof AjvModule }).default ?? AjvModule;
  const ajv = new (Ajv as any)({ allErrors: true, strict: true });
  ajv.addFormat('date-time', (s: string) => /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/.test(s) && !Number.isNaN(Date.parse(s)));
  return ajv.compile(schema);
}

/** Parses Prometheus text exposition strictly enough to catch a malformed file: families, types, samples, labels. */
function parsePrometheus(text: string) {
  expect(text.endsWith('\n')).toBe(true);
  const types = new Map<string, string>();
  const samples: { name: string; labels: Record<string, string>; value: number }[] = [];
  for (const line of text.slice(0, -1).split('\n')) {
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line);
    if (meta) {
      if (meta[1] === 'TYPE') {
        expect(['counter', 'gauge']).toContain(meta[3]);
        expect(types.has(meta[2]!)).toBe(false);
        types.set(meta[2]!, meta[3]!);
      }
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*)\})? (-?[0-9.e+]+|NaN)$/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${line}`);
    expect(types.has(m[1]!), `TYPE before ${m[1]}`).toBe(true);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
    const value = Number(m[3]);
    expect(Number.isNaN(value) && m[3] !== 'NaN').toBe(false);
    if (types.get(m[1]!) === 'counter') expect(m[1]!.endsWith('_total')).toBe(true);
    samples.push({ name: m[1]!, labels, value });
  }
  return { types, samples, get: (name: string, labels: Record<string, string> = {}) => samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value };
}

describe('agentctl map', () => {
  it('prints the seed-003 heartbeat map, valid against the schema shipped in the repository', () => {
    const db = tempDb();
    cli(['heartbeat', 'mary', '--meta', '{"signals_sent":42}'], { db });
    cli(['heartbeat', 'paula', '--status', 'error', '--message', 'no route'], { db });
    cli(['register', 'lisa'], { db });
    cli(['heartbeat', 'hybrid'], { db });
    cli(['set-status', 'hybrid', 'offline', '--reason', 'pulled'], { db });
    const r = cli(['map'], { db });
    expect(r.code).toBe(0);
    const map = JSON.parse(r.stdout);
    const validate = validator();
    expect(validate(map), JSON.stringify(validate.errors)).toBe(true);
    expect(map.agents.mary).toMatchObject({ id: 'mary', name: 'mary', status: 'online', state: 'active', seconds_since_heartbeat: expect.any(Number), metadata: { signals_sent: 42 } });
    expect(map.agents.lisa).toMatchObject({ status: 'unknown', state: 'initializing', last_heartbeat: null, seconds_since_heartbeat: null });
    expect(map.agents.paula).toMatchObject({ status: 'online', state: 'error', message: 'no route' });
    expect(map.summary).toMatchObject({ total_agents: 4, online_agents: 2, offline_agents: 1, unknown_agents: 1, by_state: { active: 1, error: 1, initializing: 1, offline: 1, stale: 0 } });
    expect(map.alerts).toMatchObject([{ agent_id: 'hybrid', agent_name: 'hybrid', state: 'offline', alerted: false, message: expect.stringMatching(/^Agent hybrid offline for \d+s \(pulled\)$/) }]);
    // The schema catches a broken map.
    expect(validate({ ...map, summary: { ...map.summary, total_agents: -1 } })).toBe(false);
    expect(validate({ ...map, agents: { x: { ...map.agents.mary, status: 'sleeping' } } })).toBe(false);
  });

  it('map --out and monitor --map / --metrics rewrite their files atomically after every pass', async () => {
    const db = tempDb();
    const dir = tempDir();
    const mapFile = join(dir, 'agent_heartbeat.json');
    const promFile = join(dir, 'agentctl.prom');
    cli(['heartbeat', 'a'], { db });
    expect(cli(['map', '--out', mapFile], { db }).code).toBe(0);
    expect(validator()(JSON.parse(readFileSync(mapFile, 'utf8')))).toBe(true);
    const monitor = startCli(['monitor', '--every', '50ms', '--map', mapFile, '--metrics', promFile], { db });
    const passes = () => parsePrometheus(readFileSync(promFile, 'utf8')).get('agentctl_monitor_passes_total') ?? 0;
    await waitFor(() => readdirSync(dir).includes('agentctl.prom') && passes() >= 3, 'three passes written');
    cli(['heartbeat', 'b'], { db });
    await waitFor(() => Boolean(JSON.parse(readFileSync(mapFile, 'utf8')).agents.b), 'the map to show the new agent');
    monitor.kill('SIGTERM');
    expect((await exited(monitor)).code).toBe(0);
    const map = JSON.parse(readFileSync(mapFile, 'utf8'));
    expect(validator()(map)).toBe(true);
    expect(map.health_loop).toMatchObject({ overdue: false, last_pass: expect.any(String) });
    expect(readdirSync(dir).sort()).toEqual(['agent_heartbeat.json', 'agentctl.prom']); // no temp files left
  });
  it('map --out into a missing directory exits 1 with one line naming the file asked for', () => {
    const db = tempDb();
    cli(['heartbeat', 'w'], { db });
    const out = join(tempDir(), 'missing', 'map.json');
    const r = cli(['map', '--out', out], { db });
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([`agentctl: cannot write ${out}: its directory ${join(out, '..')} does not exist`]);
  });
});

describe('agentctl metrics', () => {
  it('prints Prometheus text that parses: agents per state, per-agent up and age, the loop’s counters and last pass', async () => {
    const db = tempDb();
    cli(['heartbeat', 'up-one', '--meta', '{"x":1}'], { db });
    cli(['heartbeat', 'second'], { db });
    cli(['register', 'quiet', '--interval', '100ms', '--stale-after', '1', '--offline-after', '100ms'], { db });
    await new Promise((r) => setTimeout(r, 150));
    cli(['monitor', '--once'], { db });
    const r = cli(['metrics'], { db });
    expect(r.code).toBe(0);
    const m = parsePrometheus(r.stdout);
    expect(m.get('agentctl_agents', { state: 'active' })).toBe(2);
    expect(m.get('agentctl_agents', { state: 'offline' })).toBe(1);
    expect(m.get('agentctl_agent_up', { agent: 'up-one' })).toBe(1);
    expect(m.get('agentctl_agent_up', { agent: 'quiet' })).toBe(0);
    expect(m.get('agentctl_agent_heartbeat_age_seconds', { agent: 'quiet' })).toBeGreaterThanOrEqual(0.1);
    expect(m.get('agentctl_transitions_total', { to: 'offline' })).toBe(1);
    expect(m.get('agentctl_heartbeat_timeouts_total')).toBe(1);
    expect(m.get('agentctl_monitor_passes_total')).toBe(1);
    expect(m.get('agentctl_alerts_sent_total')).toBe(0);
    expect(m.get('agentctl_alerts_failed_total')).toBe(0);
    expect(m.get('agentctl_convictions_held_total')).toBe(0);
    expect(m.get('agentctl_monitor_last_pass_timestamp_seconds')).toBeGreaterThan(Date.now() / 1000 - 60);
    expect(m.get('agentctl_monitor_last_pass_duration_seconds')).toBeGreaterThan(0);
    expect(m.types.get('agentctl_transitions_total')).toBe('counter');
    expect(m.types.get('agentctl_agents')).toBe('gauge');
  });

  it('escapes label values', async () => {
    const { escapeLabel } = await import('../dist/core/health/metrics.js');
    expect(escapeLabel('a"b\\c\nd')).toBe('a\\"b\\\\c\\nd');
  });
});
