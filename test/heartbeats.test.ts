/**
 * Heartbeats, registrations and the transitions the database's triggers record, for every writer: the same
 * scenarios on both engines (the PostgreSQL project runs this file again against the run's cluster). The
 * database's clock is the test's (test/clock.ts), since on PostgreSQL the server stamps writes itself.
 */
import { describe, expect, it } from 'vitest';
import { openStore } from '../src/store/open-store.js';
import type { Store } from '../src/store/store.js';
import { protocol } from '../src/store/dialect.js';
import { getRegisteredAgents, registerAgent, updateAgentState, updateHeartbeat, deregisterAgent, viewAgent } from '../src/core/agents.js';
import { processStartTime } from '../src/core/host.js';
import { AgentNotFoundError, UsageError } from '../src/errors.js';
import { start, tempDb, waitFor } from './helpers.js';
import { at, injectClock } from './clock.js';

const T0 = 1_800_000_000_000;

async function open(path: string): Promise<Store> {
  const s = await openStore({ path });
  await injectClock(s, T0);
  return s;
}

async function events(path: string) {
  const s = await openStore({ path });
  try {
    return (await s.listEvents()).map((e) => `${e.agentName}:${e.fromState ?? '-'}>${e.toState}:${e.reason}`);
  } finally {
    await s.close();
  }
}

describe('heartbeats and transitions', () => {
  it('registers on first use: registered, then initializing → active', async () => {
    const path = tempDb();
    const s = await open(path);
    expect((await updateHeartbeat(s, { name: 'w1' }, await at(s, T0))).registered).toBe(true);
    expect((await updateHeartbeat(s, { name: 'w1' }, await at(s, T0 + 1000))).registered).toBe(false);
    const [a] = await getRegisteredAgents(s, T0 + 1000);
    expect(a).toMatchObject({ name: 'w1', state: 'active', heartbeatSeq: 2, lastHeartbeatAt: T0 + 1000 });
    await s.close();
    expect(await events(path)).toEqual(['w1:->initializing:registered', 'w1:initializing>active:first heartbeat']);
  });

  it('a heartbeat after silence records the stale period and the reactivation, for every writer', async () => {
    const path = tempDb();
    const s = await open(path);
    await registerAgent(s, { name: 'w', intervalMs: 1000 }, await at(s, T0));
    await updateHeartbeat(s, { name: 'w' }, await at(s, T0 + 500));
    await updateHeartbeat(s, { name: 'w' }, await at(s, T0 + 1500)); // on time: no event
    await updateHeartbeat(s, { name: 'w' }, await at(s, T0 + 4500)); // silent 3000 = 1000 × 3: stale, then back
    const evs = await s.listEvents({ agent: 'w' });
    await s.close();
    expect(evs.map((e) => `${e.fromState}>${e.toState}`)).toEqual(['null>initializing', 'initializing>active', 'active>stale', 'stale>active']);
    const stale = evs[2]!;
    expect(stale.at).toBe(T0 + 1500 + 3000);
    expect(stale.evidence).toMatchObject({ rule: 'clock', detected_by: 'heartbeat', heartbeat_age_ms: 3000, stale_after_ms: 3000 });
    expect(evs[3]!.evidence).toMatchObject({ rule: 'heartbeat', silent_ms: 3000 });
  });

  it('a restarted agent is judged from its restart: its first heartbeat records no silence from before it, for every writer', async () => {
    const path = tempDb();
    const s = await open(path);
    const restart = async (now: number) =>
      await s.sql.run(protocol(s.sql.dialect).start, { name: 'w', restarted: 1, pid: null, pid_start_time: null, host: null, boot_id: null, reason: 'restarted', evidence: null, now: await at(s, now) });
    await registerAgent(s, { name: 'w', intervalMs: 1000 }, await at(s, T0)); // stale after 3 s, offline after 300 s
    await updateHeartbeat(s, { name: 'w' }, await at(s, T0));
    await restart(T0 + 3_600_000); // an hour later
    expect(viewAgent((await s.getAgent('w'))!, T0 + 3_600_000 + 2999).state).toBe('initializing');
    await updateHeartbeat(s, { name: 'w' }, await at(s, T0 + 3_600_000 + 2999));
    // Restarted again; this time the first beat comes after the stale window, before the offline threshold.
    await restart(T0 + 7_200_000);
    await updateHeartbeat(s, { name: 'w' }, await at(s, T0 + 7_200_000 + 10_000));
    const evs = await s.listEvents({ agent: 'w' });
    await s.close();
    expect(evs.map((e) => `${e.fromState}>${e.toState}:${e.reason}@${e.at - T0}`)).toEqual([
      'null>initializing:registered@0',
      'initializing>active:first heartbeat@0',
      'active>initializing:restarted@3600000',
      'initializing>active:first heartbeat@3602999',
      'active>initializing:restarted@7200000',
      'initializing>stale:stuck in initializing@7203000',
      'stale>active:heartbeat@7210000',
    ]);
    expect(evs[3]!.evidence).toMatchObject({ silent_ms: 2999 });
    expect(evs[5]!.evidence).toMatchObject({ rule: 'clock', detected_by: 'heartbeat', heartbeat_age_ms: 10_000 });
  });

  it('reactivates an agent persisted as stale or offline with an event', async () => {
    const path = tempDb();
    const s = await open(path);
    await updateHeartbeat(s, { name: 'w' }, await at(s, T0));
    await s.sql.run("UPDATE agents SET state='stale', state_since=?, state_reason='heartbeat overdue' WHERE name='w'", [T0 + 90_000]);
    await updateHeartbeat(s, { name: 'w' }, await at(s, T0 + 95_000));
    await updateAgentState(s, 'w', 'offline', await at(s, T0 + 96_000), { reason: 'taken down' });
    await updateHeartbeat(s, { name: 'w' }, await at(s, T0 + 97_000));
    expect((await getRegisteredAgents(s, T0 + 97_000))[0]).toMatchObject({ state: 'active', startedAt: T0 + 97_000 });
    await s.close();
    expect((await events(path)).slice(2)).toEqual(['w:active>stale:heartbeat overdue', 'w:stale>active:heartbeat', 'w:active>offline:taken down', 'w:offline>active:heartbeat']);
  });

  it('error status makes the agent error, and ok clears it', async () => {
    const path = tempDb();
    const s = await open(path);
    await updateHeartbeat(s, { name: 'w' }, await at(s, T0));
    await updateHeartbeat(s, { name: 'w', status: 'error', message: 'disk full' }, await at(s, T0 + 1000));
    expect((await getRegisteredAgents(s, T0 + 1000))[0]).toMatchObject({ state: 'error', message: 'disk full' });
    await updateHeartbeat(s, { name: 'w', status: 'busy' }, await at(s, T0 + 2000));
    expect((await getRegisteredAgents(s, T0 + 2000))[0]).toMatchObject({ state: 'active', message: null, availability: 'busy', reportedStatus: 'busy' });
    await updateHeartbeat(s, { name: 'w' }, await at(s, T0 + 3000));
    expect((await getRegisteredAgents(s, T0 + 3000))[0]).toMatchObject({ availability: 'busy' });
    await s.close();
    expect((await events(path)).slice(2)).toEqual(['w:active>error:reported error', 'w:error>active:error cleared']);
  });

  it('merges metadata (null removes a key) and keeps progress', async () => {
    const s = await open(tempDb());
    await registerAgent(s, { name: 'm', metadata: { region: 'eu', tier: 1 } }, await at(s, T0));
    await updateHeartbeat(s, { name: 'm', metadata: { tier: null, jobs: 3 }, progress: 7 }, await at(s, T0 + 1));
    await updateHeartbeat(s, { name: 'm' }, await at(s, T0 + 2));
    const a = (await s.getAgent('m'))!;
    expect(a.metadata).toEqual({ region: 'eu', jobs: 3 });
    expect(a.progress).toBe(7);
    await s.close();
  });

  it('a later register updates the contract and keeps the rest', async () => {
    const s = await open(tempDb());
    await registerAgent(s, { name: 'c', intervalMs: 5000, group: 'g1' }, await at(s, T0));
    await registerAgent(s, { name: 'c', offlineAfterMs: 60_000 }, await at(s, T0 + 1));
    const a = (await s.getAgent('c'))!;
    expect(a).toMatchObject({ intervalMs: 5000, offlineAfterMs: 60_000, staleMultiplier: 3, group: 'g1', state: 'initializing', incarnation: 1 });
    await s.close();
  });

  it('a register with a new pid starts a new incarnation; the same process registering again does not', async () => {
    const path = tempDb();
    const s = await open(path);
    const other = start(process.execPath, ['-e', 'setInterval(() => {}, 1000)']);
    try {
      await waitFor(() => processStartTime(other.pid!) !== null, 'the second process');
      await registerAgent(s, { name: 'p', pid: process.pid }, await at(s, T0));
      await updateHeartbeat(s, { name: 'p' }, await at(s, T0 + 1));
      await registerAgent(s, { name: 'p', pid: process.pid }, await at(s, T0 + 2)); // same process: nothing changes
      expect(await s.getAgent('p')).toMatchObject({ incarnation: 1, state: 'active', pid: process.pid });
      expect((await s.getAgent('p'))!.pidStartTime).toBeGreaterThan(0);
      await registerAgent(s, { name: 'p', pid: other.pid! }, await at(s, T0 + 3)); // another process under the name
      expect(await s.getAgent('p')).toMatchObject({ incarnation: 2, state: 'initializing', pid: other.pid, pidStartTime: processStartTime(other.pid!) });
      expect((await s.listEvents({ agent: 'p' })).at(-1)).toMatchObject({ fromState: 'active', toState: 'initializing' });
    } finally {
      await s.close();
    }
  });

  it('goodbye and offline cancel executing commands; deregister hides the agent', async () => {
    const path = tempDb();
    const s = await open(path);
    await updateHeartbeat(s, { name: 'x' }, await at(s, T0));
    const id = (await s.getAgent('x'))!.id;
    await s.sql.run("INSERT INTO commands (agent_id, payload, state, claim_token, created_at) VALUES (?, 'job', 'executing', 't1', ?)", [id, T0]);
    await s.sql.run("INSERT INTO commands (agent_id, payload, state, created_at) VALUES (?, 'later', 'queued', ?)", [id, T0]);
    expect(await s.goodbye('x', 'bye', await at(s, T0 + 10))).toBe(true);
    const cmds = await s.sql.all('SELECT payload, state, error FROM commands ORDER BY id');
    expect(cmds).toEqual([
      { payload: 'job', state: 'cancelled', error: 'agent offline: goodbye' },
      { payload: 'later', state: 'queued', error: null },
    ]);
    await deregisterAgent(s, 'x', await at(s, T0 + 20));
    expect(await getRegisteredAgents(s, T0 + 20)).toEqual([]);
    expect(await getRegisteredAgents(s, T0 + 20, { includeDeregistered: true })).toHaveLength(1);
    await updateHeartbeat(s, { name: 'x' }, await at(s, T0 + 30));
    expect((await getRegisteredAgents(s, T0 + 30))[0]).toMatchObject({ name: 'x', state: 'active', deregisteredAt: null });
    await s.close();
    expect((await events(path)).slice(2)).toEqual(['x:active>offline:goodbye', 'x:offline>offline:deregistered', 'x:offline>active:heartbeat']);
  });

  it('maintenance holds, expires by the clock, and ends on set available', async () => {
    const s = await open(tempDb());
    await updateHeartbeat(s, { name: 'm' }, await at(s, T0));
    await updateAgentState(s, 'm', 'maintenance', await at(s, T0 + 1), { forMs: 10_000, reason: 'upgrade' });
    expect((await getRegisteredAgents(s, T0 + 5000))[0]!.state).toBe('maintenance');
    await updateHeartbeat(s, { name: 'm' }, await at(s, T0 + 6000)); // a heartbeat during maintenance keeps it
    expect((await s.getAgent('m'))!.state).toBe('maintenance');
    expect((await getRegisteredAgents(s, T0 + 10_001))[0]!.state).toBe('active');
    await updateHeartbeat(s, { name: 'm' }, await at(s, T0 + 12_000)); // after expiry: maintenance ends durably
    expect(await s.getAgent('m')).toMatchObject({ state: 'active', maintenanceUntil: null });
    await updateAgentState(s, 'm', 'maintenance', await at(s, T0 + 13_000));
    await updateAgentState(s, 'm', 'available', await at(s, T0 + 14_000));
    expect((await s.getAgent('m'))!.state).toBe('active');
    const reasons = (await s.listEvents({ agent: 'm' })).map((e) => `${e.fromState}>${e.toState}:${e.reason}`);
    await s.close();
    expect(reasons.slice(2)).toEqual([
      'active>maintenance:upgrade',
      'maintenance>active:maintenance window ended',
      'active>maintenance:maintenance',
      'maintenance>active:maintenance ended by operator',
    ]);
  });

  it('validates before writing and names what is wrong', async () => {
    const path = tempDb();
    const s = await open(path);
    await expect((async () => await updateHeartbeat(s, { name: 'bad name' }, await at(s, T0)))()).rejects.toThrow(UsageError);
    await expect((async () => await updateHeartbeat(s, { name: 'ok', message: 'x'.repeat(1025) }, await at(s, T0)))()).rejects.toThrow(/1024/);
    await expect((async () => await updateHeartbeat(s, { name: 'ok', metadata: { big: 'x'.repeat(20_000) } }, await at(s, T0)))()).rejects.toThrow(/too large/);
    await expect((async () => await registerAgent(s, { name: 'ok', pid: 4_000_000 }, await at(s, T0)))()).rejects.toThrow(/no process with pid/);
    await expect((async () => await updateAgentState(s, 'nobody', 'offline', await at(s, T0)))()).rejects.toThrow(AgentNotFoundError);
    expect(await s.listAgents()).toEqual([]);
    expect(await s.listEvents()).toEqual([]);
    await s.close();
  });

  it('the schema itself refuses what the documentation forbids, for foreign writers', async () => {
    const s = await open(tempDb());
    const ins = async (name: string) => await s.sql.run('INSERT INTO agents (name, state_since, created_at, started_at, updated_at) VALUES (:name, :t, :t, :t, :t)', { name, t: T0 });
    // SQLite: "CHECK constraint failed"; PostgreSQL: "violates check constraint".
    await expect(ins('has space')).rejects.toThrow(/check constraint/i);
    await expect(ins('-leading')).rejects.toThrow(/check constraint/i);
    await expect(ins('x'.repeat(129))).rejects.toThrow(/check constraint/i);
    await ins('fine.name_1:eu@host');
    await expect(s.sql.run("UPDATE agents SET metadata = '[1]'")).rejects.toThrow(/check constraint/i);
    await expect(s.sql.run("UPDATE agents SET state = 'sleeping'")).rejects.toThrow(/check constraint/i);
    await s.close();
  });
});
