import { describe, expect, it } from 'vitest';
import { cli, exited, startCli, tempDb, waitFor } from './helpers.js';

describe('live views', () => {
  it('status --watch redraws until SIGINT and exits 0', async () => {
    const db = tempDb();
    cli(['heartbeat', 'w1'], { db });
    const watch = startCli(['status', '--watch', '--refresh', '100ms'], { db });
    await waitFor(() => (watch.output().match(/1 agent: 1 active/g) ?? []).length >= 1, 'the first frame');
    cli(['heartbeat', 'w2'], { db });
    await waitFor(() => watch.output().includes('2 agents: 2 active'), 'a frame with the new agent');
    watch.kill('SIGINT');
    const { code } = await exited(watch);
    expect(code).toBe(0);
    expect(watch.errors()).toBe('');
  });

  it('status --watch waits for a database that does not exist yet', async () => {
    const db = tempDb();
    const watch = startCli(['status', '--watch', '--refresh', '100ms'], { db });
    await waitFor(() => watch.output().includes('does not exist'), 'the empty frame');
    cli(['heartbeat', 'late'], { db });
    await waitFor(() => watch.output().includes('1 agent: 1 active'), 'the agent to appear');
    watch.kill('SIGTERM');
    expect((await exited(watch)).code).toBe(0);
  });

  it('history --follow --json streams new events as NDJSON', async () => {
    const db = tempDb();
    cli(['heartbeat', 'a'], { db });
    const follow = startCli(['history', '--follow', '--json', '--refresh', '50ms'], { db });
    await waitFor(() => follow.output().split('\n').filter(Boolean).length >= 2, 'the existing events');
    cli(['set-status', 'a', 'offline', '--reason', 'test'], { db });
    cli(['heartbeat', 'b'], { db });
    await waitFor(() => follow.output().split('\n').filter(Boolean).length >= 5, 'the new events');
    follow.kill('SIGINT');
    expect((await exited(follow)).code).toBe(0);
    const events = follow.output().trim().split('\n').map((l) => JSON.parse(l));
    expect(events.map((e) => `${e.agentName}:${e.toState}`)).toEqual(['a:initializing', 'a:active', 'a:offline', 'b:initializing', 'b:active']);
    expect(events[2]).toMatchObject({ fromState: 'active', reason: 'test', evidence: { rule: 'manual' } });
    const ids = events.map((e) => e.id);
    expect([...ids].sort((x, y) => x - y)).toEqual(ids);
  });
});
