import { describe, expect, it } from 'vitest';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HeartbeatAgent } from '../src/core/heartbeat-agent.js';
import { DatabaseUnusableError, UsageError } from '../src/errors.js';
import { agentRecord, cli, cliJson, fileHash, tempDb, tempDir, waitFor } from './helpers.js';

/** An in-process agent that is stopped after the test whatever happens (its timers would outlive a failed test). */
async function withAgent<T>(agent: HeartbeatAgent, fn: (a: HeartbeatAgent) => Promise<T>): Promise<T> {
  try {
    return await fn(agent);
  } finally {
    await agent.stop();
  }
}

const commandsOf = (db: string, name: string) => cliJson(['commands', name, '--limit', '100'], { db }) as any[];

describe('HeartbeatAgent lifecycle', () => {
  it('stop() with a command in flight lets it finish within the grace before saying goodbye', async () => {
    const db = tempDb();
    const agent = new HeartbeatAgent({ name: 'drain', db, interval: '1s', commandPoll: 20, shutdownGrace: '30s', handleSignals: false });
    let release!: () => void;
    const started = new Promise<void>((r) => {
      agent.onCommand(async () => {
        r();
        await new Promise<void>((done) => (release = done));
        return 'finished';
      });
    });
    await withAgent(agent, async () => {
      await agent.start();
      expect(cli(['send', 'drain', '--', 'job'], { db }).code).toBe(0);
      await started;
      const stopping = agent.stop('shutting down');
      // Still running the command: no goodbye yet.
      await new Promise((r) => setTimeout(r, 100));
      expect(agentRecord(db, 'drain')!.state).toBe('active');
      release();
      await stopping;
    });
    expect(commandsOf(db, 'drain')).toMatchObject([{ state: 'completed', result: 'finished' }]);
    expect(agentRecord(db, 'drain')).toMatchObject({ state: 'offline', stateReason: 'goodbye', message: 'shutting down' });
  });

  it('stop() aborts a command that outlasts the grace, and nothing is left executing', async () => {
    const db = tempDb();
    const agent = new HeartbeatAgent({ name: 'abort', db, interval: '1s', commandPoll: 20, shutdownGrace: 200, handleSignals: false });
    let aborted = false;
    const started = new Promise<void>((r) => {
      agent.onCommand(async (cmd) => {
        r();
        await new Promise<void>((done) => cmd.signal.addEventListener('abort', () => done()));
        aborted = true;
        throw new Error('aborted');
      });
    });
    await withAgent(agent, async () => {
      await agent.start();
      expect(cli(['send', 'abort', '--', 'forever'], { db }).code).toBe(0);
      await started;
      await agent.stop();
    });
    expect(aborted).toBe(true);
    expect(commandsOf(db, 'abort')[0].state).not.toMatch(/queued|executing/);
  });

  it('run() beats until stop() and resolves then', async () => {
    const db = tempDb();
    const agent = new HeartbeatAgent({ name: 'runner', db, interval: 20, handleSignals: false });
    let resolved = false;
    const running = agent.run().then(() => (resolved = true));
    await withAgent(agent, async () => {
      await waitFor(() => (agentRecord(db, 'runner')?.heartbeatSeq ?? 0) >= 3, 'three heartbeats');
      expect(resolved).toBe(false);
      await agent.stop();
      await running;
    });
    expect(resolved).toBe(true);
    expect(agentRecord(db, 'runner')!.state).toBe('offline');
  });

  it('a second start() while running is refused; the running incarnation is untouched', async () => {
    const db = tempDb();
    const agent = new HeartbeatAgent({ name: 'twice', db, interval: '1h', handleSignals: false });
    await withAgent(agent, async () => {
      await agent.start();
      await expect(agent.start()).rejects.toThrow(UsageError);
      await expect(agent.start()).rejects.toThrow(/already started/);
      expect(agentRecord(db, 'twice')).toMatchObject({ state: 'active', incarnation: 1 });
    });
  });

  it('start() on a file that is not a database rejects, writes nothing, and leaves nothing running', async () => {
    const db = join(tempDir(), 'not-a.db');
    writeFileSync(db, 'just some text, not SQLite\n'.repeat(100));
    const before = fileHash(db);
    const agent = new HeartbeatAgent({ name: 'u', db, interval: 20, handleSignals: false });
    const failures: unknown[] = [];
    agent.on('writeFailed', (e) => failures.push(e));
    await expect(agent.start()).rejects.toThrow(DatabaseUnusableError);
    await new Promise((r) => setTimeout(r, 200)); // ten intervals: a timer left running would have tried again
    expect(failures).toEqual([]);
    expect(fileHash(db)).toBe(before);
    // Not running: a start() is not refused as a second one.
    await expect(agent.start()).rejects.toThrow(DatabaseUnusableError);
  });

  it('the reconnect backoff doubles from the interval up to maxBackoff, with jitter, and recovers', async () => {
    const dir = join(tempDir(), 'not-yet');
    const db = join(dir, 'agents.db'); // its directory does not exist: every try fails
    const agent = new HeartbeatAgent({ name: 'back', db, interval: 100, maxBackoff: 500, handleSignals: false });
    const seen: { consecutiveFailures: number; retryInMs: number }[] = [];
    agent.on('writeFailed', (_e, info) => seen.push(info));
    let reconnected = false;
    agent.on('reconnected', () => (reconnected = true));
    await withAgent(agent, async () => {
      await agent.start();
      await waitFor(() => seen.length >= 6, 'six failed tries', 30_000);
      seen.slice(0, 6).forEach((s, i) => {
        expect(s.consecutiveFailures).toBe(i + 1);
        const ceiling = Math.min(500, 100 * 2 ** i); // 100, 200, 400, 500, 500, 500
        expect(s.retryInMs).toBeLessThanOrEqual(ceiling);
        expect(s.retryInMs).toBeGreaterThanOrEqual(ceiling / 2);
      });
      mkdirSync(dir);
      await waitFor(() => reconnected, 'the agent to reconnect', 30_000);
      expect(agentRecord(db, 'back')!.state).toBe('active');
      expect(agent.connectionHealth().consecutiveFailures).toBe(0);
      // Healthy means acknowledged within three 100 ms intervals: wait for a beat, as a stalled event loop on a busy
      // machine may have let the last one age past that.
      await waitFor(() => agent.connectionHealth().healthy, 'the agent to report itself healthy', 30_000);
    });
  });
});
