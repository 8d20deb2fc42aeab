import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  CLAIM_SQL,
  START_SQL,
  HeartbeatHealthAgent,
  checkHealth,
  convict,
  deriveState,
  openStore,
  readCounters,
  recentAlerts,
  registerAgent,
  sendCommand,
  updateAgentState,
  updateHeartbeat,
  viewAgent,
  thisHost,
  type Store,
} from '../dist/index.js';
import { hostName, bootId, processStartTime } from '../src/core/host.js';
import { exited, start, tempDb, waitFor } from './helpers.js';

const T0 = 1_700_000_000_000;
/** This machine, as the health loop sees it (the agents of the clock tests record no pid, so only the clock judges them). */
const here = thisHost();

function fresh(): Store {
  return openStore({ path: tempDb() });
}

/** An agent with a 1 s interval, stale after 3 s, offline after 10 s, that beat at `at`. */
function beating(store: Store, name: string, at = T0) {
  registerAgent(store, { name, intervalMs: 1000, staleMultiplier: 3, offlineAfterMs: 10_000 }, at);
  updateHeartbeat(store, { name }, at);
}

const pass = (store: Store, now: number, policy: Parameters<typeof checkHealth>[2] = {}) => checkHealth(store, now, { local: here, ...policy });

describe('a health pass with an injected clock', () => {
  it('convicts at the exact thresholds: stale at interval × multiplier, offline at the offline threshold', () => {
    const s = fresh();
    beating(s, 'w');
    expect(pass(s, T0 + 2999).transitions).toEqual([]);
    const stale = pass(s, T0 + 3000).transitions;
    expect(stale).toHaveLength(1);
    expect(stale[0]).toMatchObject({ agent: 'w', from: 'active', to: 'stale', since: T0 + 3000, reason: 'heartbeat overdue' });
    expect(stale[0]!.evidence).toMatchObject({ rule: 'clock', detected_by: 'monitor', heartbeat_age_ms: 3000, stale_after_ms: 3000, offline_after_ms: 10_000 });
    expect(pass(s, T0 + 9999).transitions).toEqual([]); // stale stays stale: no second event
    const offline = pass(s, T0 + 10_000).transitions;
    expect(offline).toMatchObject([{ from: 'stale', to: 'offline', since: T0 + 10_000, reason: 'no heartbeat within the offline threshold' }]);
    expect(pass(s, T0 + 60_000).transitions).toEqual([]);
    const events = s.listEvents({ agent: 'w' }).map((e) => `${e.fromState}>${e.toState}@${e.at - T0}`);
    expect(events).toEqual(['null>initializing@0', 'initializing>active@0', 'active>stale@3000', 'stale>offline@10000']);
    // Back on the next beat.
    updateHeartbeat(s, { name: 'w' }, T0 + 61_000);
    expect(s.getAgent('w')!.state).toBe('active');
    s.close();
  });

  it('an agent stuck in initializing goes stale after its stale window', () => {
    const s = fresh();
    registerAgent(s, { name: 'stuck', intervalMs: 1000, staleMultiplier: 2 }, T0);
    expect(pass(s, T0 + 1999).transitions).toEqual([]);
    expect(pass(s, T0 + 2000).transitions).toMatchObject([{ from: 'initializing', to: 'stale', reason: 'stuck in initializing' }]);
    s.close();
  });

  // Random fleets: each agent has its own contract, beat (or not) `silent` ms ago, and was perhaps restarted since.
  const fleet = fc.array(
    fc.record({
      interval: fc.integer({ min: 1, max: 5000 }),
      mult: fc.integer({ min: 1, max: 5 }),
      offline: fc.integer({ min: 1, max: 40_000 }),
      silent: fc.integer({ min: 0, max: 50_000 }),
      beat: fc.boolean(),
      restartAgo: fc.option(fc.integer({ min: 0, max: 50_000 }), { nil: undefined }),
    }),
    { minLength: 1, maxLength: 8 },
  );
  type Case = { interval: number; mult: number; offline: number; silent: number; beat: boolean; restartAgo: number | undefined };

  /** Checks `check` on a fresh database holding the fleet, `now` being 100 s after T0. */
  function onFleet(check: (s: Store, cases: Case[], now: number) => void) {
    return fc.property(fleet, (cases) => {
      const s = fresh();
      try {
        const now = T0 + 100_000;
        cases.forEach((c, i) => {
          registerAgent(s, { name: `a${i}`, intervalMs: c.interval, staleMultiplier: c.mult, offlineAfterMs: c.offline }, now - c.silent);
          if (c.beat) updateHeartbeat(s, { name: `a${i}` }, now - c.silent);
          if (c.restartAgo !== undefined) {
            s.db.prepare(START_SQL).run({ name: `a${i}`, restarted: 1, pid: null, pid_start_time: null, host: null, boot_id: null, reason: 'restarted', evidence: null, now: now - Math.min(c.restartAgo, c.silent) });
          }
        });
        check(s, cases, now);
      } finally {
        s.close();
      }
    });
  }

  it('agrees with what readers derive, for any contract, silence and restart (property)', () => {
    fc.assert(
      onFleet((s, cases, now) => {
        const before = cases.map((_, i) => s.getAgent(`a${i}`)!);
        const expected = before.map((a) => deriveState(a, now));
        checkHealth(s, now, { local: here, hold: false });
        cases.forEach((_, i) => {
          const after = s.getAgent(`a${i}`)!;
          expect(after.state).toBe(expected[i]!.state);
          expect(viewAgent(after, now).state).toBe(expected[i]!.state);
          // A clock transition is dated when its threshold was crossed; no transition leaves the date as it was.
          expect(after.stateSince).toBe(expected[i]!.byClock ? expected[i]!.since : before[i]!.stateSince);
        });
      }),
      { numRuns: 25 },
    );
  });

  it('the heartbeat trigger records the same clock transition readers derive, for any contract, silence and restart (property)', () => {
    fc.assert(
      onFleet((s, cases, now) => {
        cases.forEach((_, i) => {
          const name = `a${i}`;
          const expected = deriveState(s.getAgent(name)!, now);
          const before = s.lastEventId();
          updateHeartbeat(s, { name }, now);
          const clock = s.listEvents({ agent: name, afterId: before }).filter((e) => (e.evidence as { rule?: string } | null)?.rule === 'clock');
          if (expected.byClock) {
            expect(clock.map((e) => ({ to: e.toState, at: e.at, reason: e.reason }))).toEqual([{ to: expected.state, at: expected.since, reason: expected.reason }]);
          } else {
            expect(clock).toEqual([]);
          }
        });
      }),
      { numRuns: 25 },
    );
  });

  it('an offline conviction cancels the agent’s executing commands with the reason', () => {
    const s = fresh();
    beating(s, 'busy-one');
    const id = s.getAgent('busy-one')!.id;
    s.db.prepare("INSERT INTO commands (agent_id, payload, state, created_at) VALUES (?, 'job', 'executing', ?), (?, 'later', 'queued', ?)").run(id, T0, id, T0);
    pass(s, T0 + 10_000);
    const cmds = s.db.prepare('SELECT payload, state, error FROM commands ORDER BY id').all() as any[];
    expect(cmds[0]).toMatchObject({ state: 'cancelled', error: 'agent offline: no heartbeat within the offline threshold' });
    expect(cmds[1]).toMatchObject({ state: 'queued' });
    s.close();
  });

  it('ends expired maintenance, and leaves an agent in maintenance alone however silent', () => {
    const s = fresh();
    beating(s, 'm1');
    beating(s, 'm2');
    updateAgentState(s, 'm1', 'maintenance', T0, { forMs: 5000 });
    updateAgentState(s, 'm2', 'maintenance', T0);
    updateHeartbeat(s, { name: 'm1' }, T0 + 4000);
    expect(pass(s, T0 + 4999).transitions).toEqual([]);
    expect(pass(s, T0 + 5000).transitions).toMatchObject([{ agent: 'm1', from: 'maintenance', to: 'active', reason: 'maintenance window ended' }]);
    expect(pass(s, T0 + 3_600_000, { alertOn: ['offline', 'stale'] }).transitions.map((t) => t.agent)).toEqual(['m1']);
    expect(s.getAgent('m2')!.state).toBe('maintenance');
    expect(recentAlerts(s).map((a) => a.agentName)).toEqual(['m1']);
    s.close();
  });

  it('proves local crashes from the pid, its start time and the boot id; other hosts and live processes are left to the clock', async () => {
    const s = fresh();
    // Real processes: one killed (its pid is gone), one alive (recorded with its own start time, and once more with
    // another, as if its pid had been recycled).
    const dead = start(process.execPath, ['-e', 'setInterval(() => {}, 1000)']);
    const live = start(process.execPath, ['-e', 'setInterval(() => {}, 1000)']);
    await waitFor(() => processStartTime(dead.pid!) !== null && processStartTime(live.pid!) !== null, 'the two processes');
    const deadStart = processStartTime(dead.pid!)!;
    const liveStart = processStartTime(live.pid!)!;
    dead.kill('SIGKILL');
    await exited(dead);
    const host = hostName();
    const boot = bootId();
    const recorded: Record<string, [number, number, string, string | null]> = {
      gone: [dead.pid!, deadStart, host, boot],
      reused: [live.pid!, liveStart - 1, host, boot],
      rebooted: [live.pid!, liveStart, host, `${boot}-before`],
      alive: [live.pid!, liveStart, host, boot],
      remote: [dead.pid!, deadStart, `${host}-elsewhere`, 'another-boot'],
    };
    for (const [name, [pid, startTime, h, b]] of Object.entries(recorded)) {
      beating(s, name);
      s.db.prepare('UPDATE agents SET pid = ?, pid_start_time = ?, host = ?, boot_id = ? WHERE name = ?').run(pid, startTime, h, b, name);
    }
    const r = checkHealth(s, T0 + 10, { local: here });
    const byName = Object.fromEntries(r.transitions.map((t) => [t.agent, t]));
    expect(Object.keys(byName).sort()).toEqual(['gone', 'rebooted', 'reused']);
    expect(byName.gone).toMatchObject({ to: 'offline', kind: 'crash', reason: 'process gone', evidence: { rule: 'pid', pid_check: 'gone', pid: dead.pid } });
    expect(byName.reused!.evidence).toMatchObject({ rule: 'pid', pid_check: 'reused', pid_start_time: liveStart - 1, observed_start_time: liveStart });
    expect(byName.rebooted).toMatchObject({ reason: 'host rebooted', evidence: { rule: 'boot-id', boot_id: `${boot}-before`, current_boot_id: boot } });
    expect(readCounters(s)['crash_proofs_total']).toBe(3);
    s.close();
  });

  it('holds a mass conviction for one pass, then convicts those still overdue', () => {
    const s = fresh();
    for (const n of ['a', 'b', 'c', 'd']) beating(s, n);
    beating(s, 'e', T0 + 9000);
    const first = pass(s, T0 + 3500);
    expect(first.transitions).toEqual([]);
    expect(first.held.sort()).toEqual(['a', 'b', 'c', 'd']);
    expect(first.holdReason).toMatch(/4 of 5 watched agents/);
    updateHeartbeat(s, { name: 'd' }, T0 + 3600); // one came back meanwhile
    const second = pass(s, T0 + 4000);
    expect(second.held).toEqual([]);
    expect(second.transitions.map((t) => `${t.agent}:${t.to}`).sort()).toEqual(['a:stale', 'b:stale', 'c:stale']);
    expect(second.transitions[0]!.evidence).toMatchObject({ held_one_pass: true });
    expect(readCounters(s)['convictions_held_total']).toBe(4);
    // Two overdue of many is not a mass: convicted at once.
    const t = fresh();
    for (const n of ['p', 'q']) beating(t, n);
    for (const n of ['r', 's', 'u']) beating(t, n, T0 + 3000);
    expect(pass(t, T0 + 3500).transitions).toHaveLength(2);
    s.close();
    t.close();
  });

  it('a suspected observer convicts no one, and a wall clock behind the last pass is suspect', () => {
    const s = fresh();
    beating(s, 'x');
    const r = pass(s, T0 + 20_000, { suspect: 'the health loop was paused' });
    expect(r).toMatchObject({ suspect: 'the health loop was paused', transitions: [] });
    expect(pass(s, T0 + 10_000).suspect).toMatch(/wall clock is 10s behind the last pass/);
    expect(s.getAgent('x')!.state).toBe('active');
    expect(pass(s, T0 + 20_001).transitions).toHaveLength(1);
    expect(readCounters(s)['suspect_passes_total']).toBe(2);
    s.close();
  });

  it('alerts: one per down spell, suppressed within the cooldown, a reminder per cooldown, a recovery notice with the time down', () => {
    const s = fresh();
    beating(s, 'flaky');
    const cooldown = 60_000;
    const policy = { alertCooldownMs: cooldown, targets: ['webhook:http://x'] };
    pass(s, T0 + 10_000, policy);
    pass(s, T0 + 20_000, policy);
    let alerts = recentAlerts(s).reverse();
    expect(alerts.map((a) => `${a.kind}:${a.state}`)).toEqual(['alert:offline']);
    expect(alerts[0]!.payload).toMatchObject({ kind: 'alert', state: 'offline', previous_state: 'active', agent: { name: 'flaky' }, alert_id: alerts[0]!.id });
    expect(alerts[0]!.deliveries).toEqual([{ target: 'webhook:http://x', status: 'pending', attempts: 0, lastError: null }]);
    pass(s, T0 + 10_000 + cooldown, policy); // still down a cooldown later: a reminder
    updateHeartbeat(s, { name: 'flaky' }, T0 + 80_000);
    pass(s, T0 + 80_001, policy);
    alerts = recentAlerts(s).reverse();
    expect(alerts.map((a) => a.kind)).toEqual(['alert', 'reminder', 'recovery']);
    expect(alerts[2]!.payload).toMatchObject({ state: 'active', down_for_ms: 70_000, down_for: '1m 10s' });
    // Down again within the cooldown: no alert; a reminder once the cooldown has passed.
    pass(s, T0 + 90_000, policy);
    expect(recentAlerts(s)).toHaveLength(3);
    expect(readCounters(s)['alerts_suppressed_total']).toBe(1);
    pass(s, T0 + 80_001 + cooldown, policy);
    expect(recentAlerts(s)[0]!.kind).toBe('reminder');
    s.close();
  });

  it('no alert for a down spell that was already over when the pass saw it', () => {
    const s = fresh();
    beating(s, 'back');
    pass(s, T0, { targets: ['webhook:http://x'] });
    updateHeartbeat(s, { name: 'back' }, T0 + 20_000); // silent past its offline threshold, then back, between passes
    expect(s.listEvents({ agent: 'back' }).map((e) => e.toState).slice(-2)).toEqual(['offline', 'active']);
    pass(s, T0 + 20_001, { targets: ['webhook:http://x'] });
    expect(recentAlerts(s)).toEqual([]);
    s.close();
  });

  it('alerts on more states with alertOn, escalating within the cooldown; goodbyes and operators never alert', () => {
    const s = fresh();
    beating(s, 'e');
    beating(s, 'bye');
    beating(s, 'op');
    const policy = { alertOn: ['offline', 'stale'] as const, alertCooldownMs: 3_600_000 };
    pass(s, T0, policy); // the first pass starts alerting from here
    s.goodbye('bye', 'done', T0 + 1);
    updateAgentState(s, 'op', 'offline', T0 + 1);
    pass(s, T0 + 3000, policy);
    pass(s, T0 + 10_000, policy);
    expect(recentAlerts(s).reverse().map((a) => `${a.agentName}:${a.state}`)).toEqual(['e:stale', 'e:offline']);
    s.close();
  });

  it('settles commands past their deadline though nobody reads them: queued → cancelled, executing → failed', () => {
    const s = fresh();
    registerAgent(s, { name: 'w', intervalMs: 60_000 }, T0);
    updateHeartbeat(s, { name: 'w' }, T0);
    const running = sendCommand(s, 'w', 'claimed', T0, { timeoutMs: 5000 });
    // The agent claims it (the documented claim statement), then says nothing more about it.
    expect(s.db.prepare(CLAIM_SQL).get({ name: 'w', incarnation: 1, token: 'tok', now: T0 + 1 })).toMatchObject({ id: running.id });
    const queued = sendCommand(s, 'w', 'never claimed', T0 + 2, { timeoutMs: 4998 });
    const open = sendCommand(s, 'w', 'no deadline', T0 + 2);
    const later = sendCommand(s, 'w', 'later deadline', T0 + 2, { timeoutMs: 60_000 });
    const states = () => s.db.prepare('SELECT id, state, error FROM commands ORDER BY id').all() as { id: number; state: string; error: string | null }[];

    expect(pass(s, T0 + 4999).commandsExpired).toBe(0);
    // A pass that suspects its own clock settles nothing either.
    expect(pass(s, T0 + 5000, { suspect: 'a test says so' }).commandsExpired).toBe(0);
    expect(states().map((c) => c.state)).toEqual(['executing', 'queued', 'queued', 'queued']);

    const r = pass(s, T0 + 5000);
    expect(r.commandsExpired).toBe(2);
    expect(states()).toEqual([
      { id: running.id, state: 'failed', error: 'deadline passed while executing' },
      { id: queued.id, state: 'cancelled', error: 'deadline passed before the agent claimed it' },
      { id: open.id, state: 'queued', error: null },
      { id: later.id, state: 'queued', error: null },
    ]);
    expect(readCounters(s)['commands_expired_total']).toBe(2);
    expect(pass(s, T0 + 6000).commandsExpired).toBe(0);
    s.close();
  });
});

describe('HeartbeatHealthAgent', () => {
  it('offers seed 002’s calls with an injected clock, and emits transitions', async () => {
    const s = fresh();
    beating(s, 'w');
    let now = T0 + 3000;
    const agent = new HeartbeatHealthAgent({ store: s, clock: { now: () => now, monotonic: () => now }, policy: { local: here } });
    expect(agent.isAgentStale('w')).toBe(true);
    expect(agent.isAgentStale(T0 + 1000)).toBe(false); // default contract: 30 s × 3
    expect(agent.isAgentStale(new Date(T0 - 90_000))).toBe(true);
    const seen: string[] = [];
    agent.on('transition', (t) => seen.push(`${t.agent}:${t.to}`));
    const r = await agent.checkAgentHealth();
    expect(r.transitions).toHaveLength(1);
    expect(seen).toEqual(['w:stale']);
    now = T0 + 10_000;
    expect(agent.updateAgentStates().applied.map((t) => t.to)).toEqual(['offline']);
    s.close();
  });
  // The loop's own pause (a real SIGSTOP of a running monitor) is tested in monitor.test.ts.
});

describe('the shared conviction rule', () => {
  it('convict() without the hold convicts a whole overdue fleet at once (for cleanup --stale)', () => {
    const s = fresh();
    for (const n of ['a', 'b', 'c']) beating(s, n);
    const r = convict(s, T0 + 10_000, { local: here, hold: false });
    expect(r.applied.map((t) => t.to)).toEqual(['offline', 'offline', 'offline']);
    expect(r.held).toEqual([]);
    s.close();
  });
});

describe('the daily log', () => {
  it('appends to health-YYYY-MM-DD.log, honours the level, and removes files past the retention', async () => {
    const { dailyFileLogger } = await import('../dist/index.js');
    const { mkdirSync, readdirSync, readFileSync, writeFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const dir = join(tempDb(), '..', 'logs');
    mkdirSync(dir);
    writeFileSync(join(dir, 'health-2023-10-01.log'), 'old\n');
    writeFileSync(join(dir, 'health-2023-11-10.log'), 'recent\n');
    writeFileSync(join(dir, 'notes.txt'), 'kept\n');
    const echoed: string[] = [];
    const log = dailyFileLogger({ dir, level: 'warn', keepDays: 14, now: () => T0, echo: (l) => echoed.push(l) });
    log.info('not at this level');
    log.warn('pass 1: convicting no one');
    expect(readdirSync(dir).sort()).toEqual(['health-2023-11-10.log', 'health-2023-11-14.log', 'notes.txt']);
    expect(readFileSync(join(dir, 'health-2023-11-14.log'), 'utf8')).toBe('2023-11-14T22:13:20.000Z WARN  pass 1: convicting no one\n');
    expect(echoed).toEqual(['2023-11-14T22:13:20.000Z WARN  pass 1: convicting no one\n']);
  });
});
