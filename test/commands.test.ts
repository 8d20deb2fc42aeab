import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { openStore } from '../src/store/store.js';
import { claimCommand, expireCommands, finishCommand, getCommand } from '../src/store/commands.js';
import { registerAgent, updateAgentState, updateHeartbeat } from '../src/core/agents.js';
import { cancelCommand, sendCommand } from '../src/core/commands.js';
import Database from 'better-sqlite3';
import { AgentUnavailableError, DatabaseBusyError } from '../src/errors.js';
import { cli, cliJson, exited, FIXTURES, jsonLines, start, tempDb, waitFor } from './helpers.js';
import { at, injectClock } from './clock.js';

const T0 = 1_800_000_000_000;

async function fresh() {
  const store = await openStore({ path: tempDb() });
  await injectClock(store, T0);
  await registerAgent(store, { name: 'w', pid: process.pid }, await at(store, T0));
  await updateHeartbeat(store, { name: 'w' }, await at(store, T0));
  return store;
}

describe('the command protocol', () => {
  it('claims with a fencing token and accepts only the completion that carries it', async () => {
    const store = await fresh();
    const sent = await sendCommand(store, 'w', 'ping', await at(store, T0));
    expect(sent).toMatchObject({ state: 'queued', agentName: 'w', payload: 'ping', deadlineAt: null });
    expect(await claimCommand(store, 'w', 99, 'tok-x', await at(store, T0))).toBeUndefined(); // not the current incarnation
    const claimed = await claimCommand(store, 'w', 1, 'tok-a', await at(store, T0 + 1))!;
    expect(claimed).toMatchObject({ id: sent.id, payload: 'ping' });
    expect(await claimCommand(store, 'w', 1, 'tok-b', await at(store, T0 + 2))).toBeUndefined(); // nothing else queued
    expect(await getCommand(store, sent.id)).toMatchObject({ state: 'executing', claimToken: 'tok-a', claimedByIncarnation: 1, claimedAt: T0 + 1 });
    expect(await finishCommand(store, { id: sent.id, token: 'tok-b', state: 'completed', result: 'forged' }, await at(store, T0 + 3))).toBe(false);
    expect(await finishCommand(store, { id: sent.id, token: 'tok-a', state: 'completed', result: 'pong' }, await at(store, T0 + 3))).toBe(true);
    expect(await finishCommand(store, { id: sent.id, token: 'tok-a', state: 'failed', error: 'again' }, await at(store, T0 + 4))).toBe(false);
    expect(await getCommand(store, sent.id)).toMatchObject({ state: 'completed', result: 'pong', finishedAt: T0 + 3 });
    await store.close();
  });

  it('cancels executing commands when the agent goes offline, and rejects the presumed-dead process\'s completion', async () => {
    const store = await fresh();
    const c = await sendCommand(store, 'w', 'long job', await at(store, T0));
    await claimCommand(store, 'w', 1, 'tok-old', await at(store, T0));
    // What the health loop does when it convicts the agent (a dead pid, or silence past the offline threshold).
    await updateAgentState(store, 'w', 'offline', await at(store, T0 + 10), { reason: 'pid 1234 is dead' });
    expect(await getCommand(store, c.id)).toMatchObject({ state: 'cancelled', error: 'agent offline: pid 1234 is dead', finishedAt: T0 + 10 });
    expect(await finishCommand(store, { id: c.id, token: 'tok-old', state: 'completed', result: 'late' }, await at(store, T0 + 20))).toBe(false);
    expect((await getCommand(store, c.id))!.result).toBeNull();
    await expect((async () => await sendCommand(store, 'w', 'more', await at(store, T0 + 30)))()).rejects.toThrow(AgentUnavailableError);
    expect((await sendCommand(store, 'w', 'more', await at(store, T0 + 30), { queue: true })).state).toBe('queued');
    await store.close();
  });

  it('a new incarnation cancels what an earlier one was executing; the old token is refused', async () => {
    const store = await fresh();
    const c = await sendCommand(store, 'w', 'job', await at(store, T0));
    await claimCommand(store, 'w', 1, 'tok-1', await at(store, T0));
    // A new process registers under the name (the old one was presumed dead and replaced).
    await store.sql.run("UPDATE agents SET pid_start_time = pid_start_time + 1 WHERE name = 'w'");
    await registerAgent(store, { name: 'w', pid: process.pid }, await at(store, T0 + 5));
    expect((await store.getAgent('w'))!.incarnation).toBe(2);
    expect(await getCommand(store, c.id)).toMatchObject({ state: 'cancelled', error: 'agent restarted: claimed by incarnation 1, now 2' });
    const again = await sendCommand(store, 'w', 'job', await at(store, T0 + 6));
    expect(await claimCommand(store, 'w', 1, 'tok-1b', await at(store, T0 + 6))).toBeUndefined();
    await claimCommand(store, 'w', 2, 'tok-2', await at(store, T0 + 7));
    expect(await finishCommand(store, { id: again.id, token: 'tok-1', state: 'completed' }, await at(store, T0 + 8))).toBe(false);
    expect(await finishCommand(store, { id: again.id, token: 'tok-2', state: 'completed' }, await at(store, T0 + 8))).toBe(true);
    await store.close();
  });

  it('settles commands past their deadline: queued ones cancelled, executing ones failed', async () => {
    const store = await fresh();
    const q = await sendCommand(store, 'w', 'a', await at(store, T0), { timeoutMs: 100 });
    const e = await sendCommand(store, 'w', 'b', await at(store, T0), { timeoutMs: 1000 });
    await claimCommand(store, 'w', 1, 'tok', await at(store, T0)); // claims the oldest: q
    expect(await claimCommand(store, 'w', 1, 'tok2', await at(store, T0 + 1))).toMatchObject({ id: e.id });
    expect(await expireCommands(store, 'w', await at(store, T0 + 100))).toBe(1);
    expect(await getCommand(store, q.id)).toMatchObject({ state: 'failed', error: 'deadline passed while executing' });
    const late = await sendCommand(store, 'w', 'c', await at(store, T0 + 200), { timeoutMs: 50 });
    expect(await expireCommands(store, null, await at(store, T0 + 250))).toBe(1);
    expect(await getCommand(store, late.id)).toMatchObject({ state: 'cancelled', error: 'deadline passed before the agent claimed it' });
    expect(await claimCommand(store, 'w', 1, 'tok3', await at(store, T0 + 300))).toBeUndefined();
    expect(await cancelCommand(store, e.id, await at(store, T0 + 300))).toMatchObject({ cancelled: true, command: { state: 'cancelled', error: 'cancelled by operator' } });
    expect((await cancelCommand(store, e.id, await at(store, T0 + 301))).cancelled).toBe(false);
    await store.close();
  });

  it('a poll with nothing to do takes no write lock, so it never waits behind a writer', async () => {
    const path = tempDb();
    const setup = await openStore({ path });
    await registerAgent(setup, { name: 'w' }, T0);
    await setup.close();
    const poller = await openStore({ path, busyTimeoutMs: 20, retryAttempts: 1 });
    const writer = new Database(path);
    writer.exec('BEGIN IMMEDIATE'); // another process holds the write lock
    try {
      expect(await expireCommands(poller, 'w', T0)).toBe(0);
      expect(await expireCommands(poller, null, T0)).toBe(0);
      expect(await claimCommand(poller, 'w', 1, 'tok', T0)).toBeUndefined();
      // With work to do it does write, and so meets the lock.
      writer.exec('ROLLBACK');
      await sendCommand(poller, 'w', 'job', T0, { timeoutMs: 10 });
      writer.exec('BEGIN IMMEDIATE');
      await expect((async () => await claimCommand(poller, 'w', 1, 'tok', T0))()).rejects.toThrow(DatabaseBusyError);
      await expect((async () => await expireCommands(poller, 'w', T0 + 10))()).rejects.toThrow(DatabaseBusyError);
    } finally {
      writer.exec('ROLLBACK');
      writer.close();
    }
    expect(await claimCommand(poller, 'w', 1, 'tok', T0)).toMatchObject({ payload: 'job' });
    await poller.close();
  });
});

describe('agentctl send and commands', () => {
  it('a round trip through a library agent: send --wait prints the result; a failing command exits 1', async () => {
    const db = tempDb();
    const p = start(process.execPath, [join(FIXTURES, 'agent-beat.mjs'), db, 'echoer', '50']);
    await waitFor(() => jsonLines(p).some((l) => l.event === 'started'), 'the agent to start');
    const r = cli(['send', 'echoer', '--wait', '--timeout', '20s', '--', 'echo', 'hello', 'world'], { db });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('hello world\n');
    const f = cli(['send', 'echoer', '--wait', '--timeout', '20s', '--', 'fail'], { db });
    expect(f.code).toBe(1);
    expect(f.stderr).toMatch(/^agentctl: command \d+ failed: asked to fail$/m);
    const id = cli(['send', 'echoer', '--', 'echo', 'later'], { db }).stdout.trim();
    expect(id).toMatch(/^\d+$/);
    await waitFor(() => cliJson(['commands', 'echoer'], { db }).find((c: any) => String(c.id) === id)?.state === 'completed', 'the third command');
    const list = cliJson(['commands', 'echoer'], { db }) as any[];
    expect(list.map((c) => [c.payload, c.state, c.result ?? c.error])).toEqual([
      ['echo later', 'completed', 'later'],
      ['fail', 'failed', 'asked to fail'],
      ['echo hello world', 'completed', 'hello world'],
    ]);
    expect(list[0].claimToken).toBeUndefined();
    const table = cli(['commands', '--state', 'failed'], { db });
    expect(table.stdout).toMatch(/ID\s+AGENT\s+STATE\s+SENT\s+PAYLOAD\s+RESULT \/ ERROR\n\d+\s+echoer\s+failed\s+.* ago\s+fail\s+asked to fail/);
  });

  it('an executing command is cancelled when its agent goes offline; a new one is refused unless --queue', async () => {
    const db = tempDb();
    const p = start(process.execPath, [join(FIXTURES, 'agent-beat.mjs'), db, 'sleeper', '50']);
    await waitFor(() => jsonLines(p).some((l) => l.event === 'started'), 'the agent to start');
    const id = Number(cli(['send', 'sleeper', '--', 'sleep', '60000'], { db }).stdout);
    await waitFor(() => cliJson(['commands', 'sleeper'], { db })[0].state === 'executing', 'the command to be claimed');
    p.kill('SIGKILL');
    await exited(p);
    // The health loop proves the crash by the agent's pid and convicts it: its executing command is cancelled.
    expect(cli(['monitor', '--once'], { db }).code).toBe(0);
    const [c] = cliJson(['commands', 'sleeper'], { db });
    expect(c).toMatchObject({ id, state: 'cancelled', error: 'agent offline: process gone' });
    const refused = cli(['send', 'sleeper', '--', 'echo', 'hi'], { db });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/agent 'sleeper' is offline: nobody would run the command \(send it with --queue/);
    expect(cli(['send', 'sleeper', '--queue', '--', 'echo', 'hi'], { db }).code).toBe(0);
  });

  it('an operator cancels a running command: the handler sees its signal abort and its result is refused', async () => {
    const db = tempDb();
    const p = start(process.execPath, [join(FIXTURES, 'agent-beat.mjs'), db, 'busy', '50']);
    await waitFor(() => jsonLines(p).some((l) => l.event === 'started'), 'the agent to start');
    const id = Number(cli(['send', 'busy', '--', 'sleep', '60000'], { db }).stdout);
    await waitFor(() => jsonLines(p).some((l) => l.event === 'command' && l.id === id), 'the command to run');
    expect(cli(['commands', 'cancel', String(id), '--reason', 'changed my mind'], { db }).code).toBe(0);
    await waitFor(() => jsonLines(p).some((l) => l.event === 'commandRejected' && l.id === id), 'the refused completion');
    expect(cliJson(['commands', 'busy'], { db })[0]).toMatchObject({ id, state: 'cancelled', error: 'changed my mind', result: null });
    // The agent goes on: the next command runs.
    expect(cli(['send', 'busy', '--wait', '--', 'echo', 'next'], { db }).stdout).toBe('next\n');
  });

  it('cancels by id, and says why when it cannot', () => {
    const db = tempDb();
    cli(['heartbeat', 'w'], { db });
    const id = cli(['send', 'w', '--', 'x'], { db }).stdout.trim();
    const r = cli(['commands', 'cancel', id], { db });
    expect(r.stdout).toBe(`cancelled command ${id}\n`);
    const again = cli(['commands', 'cancel', id], { db });
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/already cancelled/);
    expect(cli(['commands', 'cancel', '999'], { db }).code).toBe(3);
    expect(cli(['send', 'nobody', '--', 'x'], { db }).code).toBe(3);
    expect(cli(['send', 'w', 'x'], { db }).code).toBe(2);
    expect(cli(['commands', '--state', 'weird'], { db }).code).toBe(2);
  });
});
