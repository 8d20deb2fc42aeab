import { describe, expect, it } from 'vitest';
import { deriveState, isOverdue, seedStatus } from '../src/core/state.js';
import type { AgentRecord } from '../src/store/rows.js';

const T0 = 1_700_000_000_000;

function agent(over: Partial<AgentRecord> = {}): AgentRecord {
  return {
    id: 1, name: 'a', group: null, intervalMs: 30_000, staleMultiplier: 3, offlineAfterMs: 300_000,
    pid: null, pidStartTime: null, host: null, bootId: null, incarnation: 1, heartbeatSeq: 1,
    lastHeartbeatAt: T0, reportedStatus: 'ok', message: null, availability: 'available', metadata: {},
    progress: null, state: 'active', stateSince: T0, stateReason: 'first heartbeat', stateEvidence: null,
    maintenanceUntil: null, launch: null, restartCount: 0, createdAt: T0, startedAt: T0, updatedAt: T0,
    supervisorPid: null, supervisorStartTime: null, restartPolicy: null, maxRestarts: null, restartAttempts: 0, lastRestartAt: null,
    deregisteredAt: null, ...over,
  };
}

describe('deriveState at the boundaries', () => {
  it.each([
    [0, 'active'],
    [89_999, 'active'],
    [90_000, 'stale'],
    [299_999, 'stale'],
    [300_000, 'offline'],
    [10 * 86_400_000, 'offline'],
  ])('an active agent silent for %d ms is %s', (age, state) => {
    expect(deriveState(agent(), T0 + age).state).toBe(state);
  });

  it('dates clock-made states from the threshold, not from the read', () => {
    const d = deriveState(agent(), T0 + 120_000);
    expect(d).toMatchObject({ state: 'stale', since: T0 + 90_000, byClock: true, reason: 'heartbeat overdue' });
    expect(deriveState(agent(), T0 + 400_000)).toMatchObject({ state: 'offline', since: T0 + 300_000 });
  });

  it('uses each agent\'s own contract', () => {
    const fast = agent({ intervalMs: 1000, staleMultiplier: 2.5, offlineAfterMs: 10_000 });
    expect(deriveState(fast, T0 + 2499).state).toBe('active');
    expect(deriveState(fast, T0 + 2500).state).toBe('stale');
    expect(deriveState(fast, T0 + 10_000).state).toBe('offline');
  });

  it('goes straight to offline when the offline threshold is shorter than the stale window', () => {
    const a = agent({ offlineAfterMs: 60_000 });
    expect(deriveState(a, T0 + 59_999).state).toBe('active');
    expect(deriveState(a, T0 + 60_000).state).toBe('offline');
  });

  it('calls an agent stuck in initializing stale after its window', () => {
    const a = agent({ state: 'initializing', lastHeartbeatAt: null, heartbeatSeq: 0 });
    expect(deriveState(a, T0 + 89_999).state).toBe('initializing');
    expect(deriveState(a, T0 + 90_000)).toMatchObject({ state: 'stale', reason: 'stuck in initializing' });
  });

  it('judges a new incarnation from its start, not from the last heartbeat of the one before', () => {
    // Restarted at T0 after an hour of silence: it has its own stale window to make its first beat.
    const restarted = agent({ state: 'initializing', incarnation: 2, lastHeartbeatAt: T0 - 3_600_000, startedAt: T0, stateSince: T0 });
    expect(deriveState(restarted, T0)).toMatchObject({ state: 'initializing', byClock: false });
    expect(deriveState(restarted, T0 + 89_999).state).toBe('initializing');
    expect(deriveState(restarted, T0 + 90_000)).toMatchObject({ state: 'stale', since: T0 + 90_000, reason: 'stuck in initializing' });
    expect(deriveState(restarted, T0 + 300_000)).toMatchObject({ state: 'offline', since: T0 + 300_000 });
    // A maintenance window that ends before the new incarnation beat leaves it initializing.
    const paused = { ...restarted, state: 'maintenance' as const, maintenanceUntil: T0 + 1000 };
    expect(deriveState(paused, T0 + 2000)).toMatchObject({ state: 'initializing', reason: 'maintenance window ended' });
    // Once it beats, its heartbeat is the reference again.
    const beating = { ...restarted, state: 'active' as const, lastHeartbeatAt: T0 + 5000 };
    expect(deriveState(beating, T0 + 5000 + 89_999).state).toBe('active');
    expect(deriveState(beating, T0 + 5000 + 90_000)).toMatchObject({ state: 'stale', reason: 'heartbeat overdue' });
  });

  it('keeps offline and failed until a heartbeat, whatever the clock', () => {
    expect(deriveState(agent({ state: 'offline' }), T0 + 1).state).toBe('offline');
    expect(deriveState(agent({ state: 'failed' }), T0 + 1).state).toBe('failed');
  });

  it('holds maintenance until it expires, then reads by the clock', () => {
    const m = agent({ state: 'maintenance', maintenanceUntil: T0 + 600_000 });
    expect(deriveState(m, T0 + 599_999).state).toBe('maintenance');
    expect(deriveState(m, T0 + 600_000).state).toBe('offline');
    const recent = agent({ state: 'maintenance', maintenanceUntil: T0 + 10_000 });
    expect(deriveState(recent, T0 + 10_000)).toMatchObject({ state: 'active', reason: 'maintenance window ended', since: T0 + 10_000 });
    const open = agent({ state: 'maintenance', maintenanceUntil: null });
    expect(deriveState(open, T0 + 10 * 86_400_000).state).toBe('maintenance');
  });

  it('isOverdue matches the stale boundary', () => {
    expect(isOverdue(agent(), T0 + 89_999)).toBe(false);
    expect(isOverdue(agent(), T0 + 90_000)).toBe(true);
  });

  it('maps rich states to seed 003 statuses', () => {
    expect(seedStatus('active')).toBe('online');
    expect(seedStatus('offline')).toBe('offline');
    expect(seedStatus('stale')).toBe('unknown');
    expect(seedStatus('initializing')).toBe('unknown');
  });
});
