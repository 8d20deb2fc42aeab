import type { AgentRecord } from '../src/store/rows.js';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  HeartbeatHealthAgent,
  checkHealth,
  convict,
  deriveState,
  openStore,
  readCounters,
  readMonitor,
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
import { protocol } from '../src/store/dialect.js';
import { exited, start, tempDb, tempDir, waitFor } from './helpers.js';
import { at, injectClock } from './clock.js';

const T0 = 1_700_000_000_000;
/** This machine, as the health loop sees it (the agents of the clock tests record no pid, so only the clock judges them). */
const here = thisHost();

/** A fresh database whose clock is the test's (test/clock.ts: on PostgreSQL the server stamps writes itself). */
async function fresh(): Promise<Store> {
  const s = await openStore({ path: tempDb() });
  await injectClock(s, T0);
  return s;
}

/** An agent with a 1 s interval, stale after 3 s, offline after 10 s, that beat at `when`. */
async function beating(store: Store, name: string, when = T0) {
  await registerAgent(store, { name, intervalMs: 1000, staleMultiplier: 3, offlineAfterMs: 10_000 }, await at(store, when));
  await updateHeartbeat(store, { name }, when);
}

/** A health pass at `now`, the database's clock at `now` too (what the server stamps during the pass). */
const pass = async (store: Store, now: number, policy: Parameters<typeof checkHealth>[2] = {}) => await checkHealth(store, await at(store, now), { local: here, ...policy });

describe('a health pass with an injected clock', () => {
  it('convicts at the exact thresholds: stale at interval × multiplier, offline at the offline threshold', async () => {
    const s = await fresh();
    await beating(s, 'w');
    expect((await pass(s, T0 + 2999)).transitions).toEqual([]);
    const stale = (await pass(s, T0 + 3000)).transitions;
    expect(stale).toHaveLength(1);
    expect(stale[0]).toMatchObject({ agent: 'w', from: 'active', to: 'stale', since: T0 + 3000, reason: 'heartbeat overdue' });
    expect(stale[0]!.evidence).toMatchObject({ rule: 'clock', detected_by: 'monitor', heartbeat_age_ms: 3000, stale_after_ms: 3000, offline_after_ms: 10_000 });
    expect((await pass(s, T0 + 9999)).transitions).toEqual([]); // stale stays stale: no second event
    const offline = (await pass(s, T0 + 10_000)).transitions;
    expect(offline).toMatchObject([{ from: 'stale', to: 'offline', since: T0 + 10_000, reason: 'no heartbeat within the offline threshold' }]);
    expect((await pass(s, T0 + 60_000)).transitions).toEqual([]);
    const events = (await s.listEvents({ agent: 'w' })).map((e) => `${e.fromState}>${e.toState}@${e.at - T0}`);
    expect(events).toEqual(['null>initializing@0', 'initializing>active@0', 'active>stale@3000', 'stale>offline@10000']);
    // Back on the next beat.
    await updateHeartbeat(s, { name: 'w' }, await at(s, T0 + 61_000));
    expect((await s.getAgent('w'))!.state).toBe('active');
    await s.close();
  });

  it('an agent stuck in initializing goes stale after its stale window', async () => {
    const s = await fresh();
    await registerAgent(s, { name: 'stuck', intervalMs: 1000, staleMultiplier: 2 }, await at(s, T0));
    expect((await pass(s, T0 + 1999)).transitions).toEqual([]);
    expect((await pass(s, T0 + 2000)).transitions).toMatchObject([{ from: 'initializing', to: 'stale', reason: 'stuck in initializing' }]);
    await s.close();
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
  function onFleet(check: (s: Store, cases: Case[], now: number) => Promise<void>) {
    return fc.asyncProperty(fleet, async (cases) => {
      const s = await fresh();
      try {
        const now = T0 + 100_000;
        for (const [i, c] of cases.entries()) {
          await registerAgent(s, { name: `a${i}`, intervalMs: c.interval, staleMultiplier: c.mult, offlineAfterMs: c.offline }, await at(s, now - c.silent));
          if (c.beat) await updateHeartbeat(s, { name: `a${i}` }, await at(s, now - c.silent));
          if (c.restartAgo !== undefined) {
            const restartAt = await at(s, now - Math.min(c.restartAgo, c.silent));
            await s.sql.run(protocol(s.sql.dialect).start, { name: `a${i}`, restarted: 1, pid: null, pid_start_time: null, host: null, boot_id: null, reason: 'restarted', evidence: null, now: restartAt });
          }
        }
        await check(s, cases, now);
      } finally {
        await s.close();
      }
    });
  }

  it('agrees with what readers derive, for any contract, silence and restart (property)', async () => {
    await fc.assert(
      onFleet(async (s, cases, now) => {
        const before: AgentRecord[] = [];
        for (const i of cases.keys()) before.push((await s.getAgent(`a${i}`))!);
        const expected = before.map((a) => deriveState(a, now));
        await checkHealth(s, now, { local: here, hold: false });
        for (const i of cases.keys()) {
          const after = (await s.getAgent(`a${i}`))!;
          expect(after.state).toBe(expected[i]!.state);
          expect(viewAgent(after, now).state).toBe(expected[i]!.state);
          // A clock transition is dated when its threshold was crossed; no transition leaves the date as it was.
          expect(after.stateSince).toBe(expected[i]!.byClock ? expected[i]!.since : before[i]!.stateSince);
        }
      }),
      { numRuns: 25 },
    );
  });

  it('the heartbeat trigger records the same clock transition readers derive, for any contract, silence and restart (property)', async () => {
    await fc.assert(
      onFleet(async (s, cases, now) => {
        for (const i of cases.keys()) {
          const name = `a${i}`;
          const expected = deriveState((await s.getAgent(name))!, now);
          const before = await s.lastEventId();
          await updateHeartbeat(s, { name }, await at(s, now));
          const clock = (await s.listEvents({ agent: name, afterId: before })).filter((e) => (e.evidence as { rule?: string } | null)?.rule === 'clock');
          if (expected.byClock) {
            expect(clock.map((e) => ({ to: e.toState, at: e.at, reason: e.reason }))).toEqual([{ to: expected.state, at: expected.since, reason: expected.reason }]);
          } else {
            expect(clock).toEqual([]);
          }
        }
      }),
      { numRuns: 25 },
    );
  });

  it('an offline conviction cancels the agent’s executing commands with the reason', async () => {
    const s = await fresh();
    await beating(s, 'busy-one');
    const id = (await s.getAgent('busy-one'))!.id;
    await s.sql.run("INSERT INTO commands (agent_id, payload, state, created_at) VALUES (?, 'job', 'executing', ?), (?, 'later', 'queued', ?)", [id, T0, id, T0]);
    await pass(s, T0 + 10_000);
    const cmds = await s.sql.all<{ payload: string; state: string; error: string | null }>('SELECT payload, state, error FROM commands ORDER BY id');
    expect(cmds[0]).toMatchObject({ state: 'cancelled', error: 'agent offline: no heartbeat within the offline threshold' });
    expect(cmds[1]).toMatchObject({ state: 'queued' });
    await s.close();
  });

  it('ends expired maintenance, and leaves an agent in maintenance alone however silent', async () => {
    const s = await fresh();
    await beating(s, 'm1');
    await beating(s, 'm2');
    await updateAgentState(s, 'm1', 'maintenance', await at(s, T0), { forMs: 5000 });
    await updateAgentState(s, 'm2', 'maintenance', await at(s, T0));
    await updateHeartbeat(s, { name: 'm1' }, await at(s, T0 + 4000));
    expect((await pass(s, T0 + 4999)).transitions).toEqual([]);
    expect((await pass(s, T0 + 5000)).transitions).toMatchObject([{ agent: 'm1', from: 'maintenance', to: 'active', reason: 'maintenance window ended' }]);
    expect((await pass(s, T0 + 3_600_000, { alertOn: ['offline', 'stale'] })).transitions.map((t) => t.agent)).toEqual(['m1']);
    expect((await s.getAgent('m2'))!.state).toBe('maintenance');
    expect((await recentAlerts(s)).map((a) => a.agentName)).toEqual(['m1']);
    await s.close();
  });

  it('proves local crashes from the pid, its start time and the boot id; other hosts and live processes are left to the clock', async () => {
    const s = await fresh();
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
      await beating(s, name);
      await s.sql.run('UPDATE agents SET pid = ?, pid_start_time = ?, host = ?, boot_id = ? WHERE name = ?', [pid, startTime, h, b, name]);
    }
    const r = await checkHealth(s, T0 + 10, { local: here });
    const byName = Object.fromEntries(r.transitions.map((t) => [t.agent, t]));
    expect(Object.keys(byName).sort()).toEqual(['gone', 'rebooted', 'reused']);
    expect(byName.gone).toMatchObject({ to: 'offline', kind: 'crash', reason: 'process gone', evidence: { rule: 'pid', detected_by: 'monitor', monitor_host: host, pid_check: 'gone', pid: dead.pid } });
    expect(byName.reused!.evidence).toMatchObject({ rule: 'pid', pid_check: 'reused', pid_start_time: liveStart - 1, observed_start_time: liveStart });
    expect(byName.rebooted).toMatchObject({ reason: 'host rebooted', evidence: { rule: 'boot-id', boot_id: `${boot}-before`, current_boot_id: boot } });
    expect((await readCounters(s))['crash_proofs_total']).toBe(3);
    await s.close();
  });

  it('holds a mass conviction for one pass, then convicts those still overdue', async () => {
    const s = await fresh();
    for (const n of ['a', 'b', 'c', 'd']) await beating(s, n);
    await beating(s, 'e', T0 + 9000);
    const first = await pass(s, T0 + 3500);
    expect(first.transitions).toEqual([]);
    expect(first.held.sort()).toEqual(['a', 'b', 'c', 'd']);
    expect(first.holdReason).toMatch(/4 of 5 watched agents/);
    await updateHeartbeat(s, { name: 'd' }, await at(s, T0 + 3600)); // one came back meanwhile
    const second = await pass(s, T0 + 4000);
    expect(second.held).toEqual([]);
    expect(second.transitions.map((t) => `${t.agent}:${t.to}`).sort()).toEqual(['a:stale', 'b:stale', 'c:stale']);
    expect(second.transitions[0]!.evidence).toMatchObject({ held_one_pass: true });
    expect((await readCounters(s))['convictions_held_total']).toBe(4);
    // Two overdue of many is not a mass: convicted at once.
    const t = await fresh();
    for (const n of ['p', 'q']) await beating(t, n);
    for (const n of ['r', 's', 'u']) await beating(t, n, T0 + 3000);
    expect((await pass(t, T0 + 3500)).transitions).toHaveLength(2);
    await s.close();
    await t.close();
  });

  it('a suspected observer convicts no one, and a wall clock behind the last pass is suspect', async () => {
    const s = await fresh();
    await beating(s, 'x');
    const r = await pass(s, T0 + 20_000, { suspect: 'the health loop was paused' });
    expect(r).toMatchObject({ suspect: 'the health loop was paused', transitions: [] });
    expect((await pass(s, T0 + 10_000)).suspect).toMatch(/wall clock is 10s behind the last pass/);
    expect((await s.getAgent('x'))!.state).toBe('active');
    expect((await pass(s, T0 + 20_001)).transitions).toHaveLength(1);
    expect((await readCounters(s))['suspect_passes_total']).toBe(2);
    await s.close();
  });

  it('alerts: one per down spell, suppressed within the cooldown, a reminder per cooldown, a recovery notice with the time down', async () => {
    const s = await fresh();
    await beating(s, 'flaky');
    const cooldown = 60_000;
    const policy = { alertCooldownMs: cooldown, targets: ['webhook:http://x'] };
    await pass(s, T0 + 10_000, policy);
    await pass(s, T0 + 20_000, policy);
    let alerts = (await recentAlerts(s)).reverse();
    expect(alerts.map((a) => `${a.kind}:${a.state}`)).toEqual(['alert:offline']);
    expect(alerts[0]!.payload).toMatchObject({ kind: 'alert', state: 'offline', previous_state: 'active', agent: { name: 'flaky' }, alert_id: alerts[0]!.id });
    expect(alerts[0]!.deliveries).toEqual([{ target: 'webhook:http://x', status: 'pending', attempts: 0, lastError: null }]);
    await pass(s, T0 + 10_000 + cooldown, policy); // still down a cooldown later: a reminder
    await updateHeartbeat(s, { name: 'flaky' }, await at(s, T0 + 80_000));
    await pass(s, T0 + 80_001, policy);
    alerts = (await recentAlerts(s)).reverse();
    expect(alerts.map((a) => a.kind)).toEqual(['alert', 'reminder', 'recovery']);
    expect(alerts[2]!.payload).toMatchObject({ state: 'active', down_for_ms: 70_000, down_for: '1m 10s' });
    // Down again within the cooldown: no alert; a reminder once the cooldown has passed.
    await pass(s, T0 + 90_000, policy);
    expect(await recentAlerts(s)).toHaveLength(3);
    expect((await readCounters(s))['alerts_suppressed_total']).toBe(1);
    await pass(s, T0 + 80_001 + cooldown, policy);
    expect((await recentAlerts(s))[0]!.kind).toBe('reminder');
    await s.close();
  });

  it('no alert for a down spell that was already over when the pass saw it', async () => {
    const s = await fresh();
    await beating(s, 'back');
    await pass(s, T0, { targets: ['webhook:http://x'] });
    await updateHeartbeat(s, { name: 'back' }, await at(s, T0 + 20_000)); // silent past its offline threshold, then back, between passes
    expect((await s.listEvents({ agent: 'back' })).map((e) => e.toState).slice(-2)).toEqual(['offline', 'active']);
    await pass(s, T0 + 20_001, { targets: ['webhook:http://x'] });
    expect(await recentAlerts(s)).toEqual([]);
    await s.close();
  });

  it('alerts on more states with alertOn, escalating within the cooldown; goodbyes and operators never alert', async () => {
    const s = await fresh();
    await beating(s, 'e');
    await beating(s, 'bye');
    await beating(s, 'op');
    const policy = { alertOn: ['offline', 'stale'] as const, alertCooldownMs: 3_600_000 };
    await pass(s, T0, policy); // the first pass starts alerting from here
    await s.goodbye('bye', 'done', await at(s, T0 + 1));
    await updateAgentState(s, 'op', 'offline', await at(s, T0 + 1));
    await pass(s, T0 + 3000, policy);
    await pass(s, T0 + 10_000, policy);
    expect((await recentAlerts(s)).reverse().map((a) => `${a.agentName}:${a.state}`)).toEqual(['e:stale', 'e:offline']);
    await s.close();
  });

  it('settles commands past their deadline though nobody reads them: queued → cancelled, executing → failed', async () => {
    const s = await fresh();
    await registerAgent(s, { name: 'w', intervalMs: 60_000 }, await at(s, T0));
    await updateHeartbeat(s, { name: 'w' }, await at(s, T0));
    const running = await sendCommand(s, 'w', 'claimed', await at(s, T0), { timeoutMs: 5000 });
    // The agent claims it (the documented claim statement), then says nothing more about it.
    expect(await s.sql.get(protocol(s.sql.dialect).claim, { name: 'w', incarnation: 1, token: 'tok', now: await at(s, T0 + 1) })).toMatchObject({ id: running.id });
    const queued = await sendCommand(s, 'w', 'never claimed', await at(s, T0 + 2), { timeoutMs: 4998 });
    const open = await sendCommand(s, 'w', 'no deadline', await at(s, T0 + 2));
    const later = await sendCommand(s, 'w', 'later deadline', await at(s, T0 + 2), { timeoutMs: 60_000 });
    const states = async () => await s.sql.all<{ id: number; state: string; error: string | null }>('SELECT id, state, error FROM commands ORDER BY id');

    expect((await pass(s, T0 + 4999)).commandsExpired).toBe(0);
    // A pass that suspects its own clock settles nothing either.
    expect((await pass(s, T0 + 5000, { suspect: 'a test says so' })).commandsExpired).toBe(0);
    expect((await states()).map((c) => c.state)).toEqual(['executing', 'queued', 'queued', 'queued']);

    const r = await pass(s, T0 + 5000);
    expect(r.commandsExpired).toBe(2);
    expect(await states()).toEqual([
      { id: running.id, state: 'failed', error: 'deadline passed while executing' },
      { id: queued.id, state: 'cancelled', error: 'deadline passed before the agent claimed it' },
      { id: open.id, state: 'queued', error: null },
      { id: later.id, state: 'queued', error: null },
    ]);
    expect((await readCounters(s))['commands_expired_total']).toBe(2);
    expect((await pass(s, T0 + 6000)).commandsExpired).toBe(0);
    await s.close();
  });
});

describe('HeartbeatHealthAgent', () => {
  it('offers seed 002’s calls with an injected clock, and emits transitions', async () => {
    const s = await fresh();
    await beating(s, 'w');
    let now = T0 + 3000;
    const agent = new HeartbeatHealthAgent({ store: s, clock: { now: () => now, monotonic: () => now }, policy: { local: here } });
    expect(await agent.isAgentStale('w')).toBe(true);
    expect(await agent.isAgentStale(T0 + 1000)).toBe(false); // default contract: 30 s × 3
    expect(await agent.isAgentStale(new Date(T0 - 90_000))).toBe(true);
    const seen: string[] = [];
    agent.on('transition', (t) => seen.push(`${t.agent}:${t.to}`));
    const r = await agent.checkAgentHealth();
    expect(r.transitions).toHaveLength(1);
    expect(seen).toEqual(['w:stale']);
    now = T0 + 10_000;
    expect((await agent.updateAgentStates()).applied.map((t) => t.to)).toEqual(['offline']);
    await s.close();
  });

  it("judges and stamps a pass by the database's clock unless a clock is given, which then decides", async () => {
    const s = await fresh();
    await beating(s, 'w'); // beat at T0; stale after 3 s
    // The database's clock (this host's on SQLite) stands for a server's, a minute ahead of this host's.
    const dbNow = Date.now() + 60_000;
    s.now = async () => dbNow;
    const byDatabase = new HeartbeatHealthAgent({ store: s, policy: { local: here } });
    const r = await byDatabase.checkAgentHealth();
    expect(r.at).toBe(dbNow);
    expect((await readMonitor(s))?.lastPassAt).toBe(dbNow);
    const given = T0 + 1000;
    const byClock = new HeartbeatHealthAgent({ store: s, clock: { now: () => given, monotonic: () => performance.now() }, policy: { local: here } });
    expect((await byClock.checkAgentHealth()).at).toBe(given);
    await s.close();
  });

  // The loop's own pause (a real SIGSTOP of a running monitor) is tested in monitor.test.ts.
});

describe('the shared conviction rule', () => {
  it('await convict() without the hold convicts a whole overdue fleet at once (for cleanup --stale)', async () => {
    const s = await fresh();
    for (const n of ['a', 'b', 'c']) await beating(s, n);
    const r = await convict(s, T0 + 10_000, { local: here, hold: false });
    expect(r.applied.map((t) => t.to)).toEqual(['offline', 'offline', 'offline']);
    expect(r.held).toEqual([]);
    await s.close();
  });
});

describe('the daily log', () => {
  it('appends to health-YYYY-MM-DD.log, honours the level, and removes files past the retention', async () => {
    const { dailyFileLogger } = await import('../dist/index.js');
    const { mkdirSync, readdirSync, readFileSync, writeFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const dir = join(tempDir(), 'logs');
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
