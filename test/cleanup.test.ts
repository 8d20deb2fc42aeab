import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { cli, cliJson, exited, fixture, jsonLines, sleep, start, tempDb, tempDir, waitFor, sqlAll, sqlPluck, sqlRun } from './helpers.js';
import { beatOnce, cliAsync, receiver } from './receiver.js';

const HOUR = 3_600_000;

/** Moves an agent's timestamps (and its events) `ms` into the past, as if it had been silent that long. */
async function age(db: string, name: string, ms: number): Promise<void> {
  await sqlRun(
    db,
    'UPDATE agents SET last_heartbeat_at = last_heartbeat_at - :ms, started_at = started_at - :ms, created_at = created_at - :ms, updated_at = updated_at - :ms, state_since = state_since - :ms WHERE name = :name',
    { ms, name },
  );
  await sqlRun(db, 'UPDATE events SET at = at - :ms WHERE agent_name = :name', { ms, name });
}

/** Registers an agent that is offline (by its clock) 150 ms from now. */
async function dying(db: string, name: string) {
  await beatOnce(db, name, { intervalMs: 50, staleMultiplier: 1, offlineAfterMs: 100 });
  await sleep(150);
}

describe('agentctl cleanup', () => {
  it('refuses to run without an action', () => {
    const db = tempDb();
    cli(['heartbeat', 'a'], { db });
    const r = cli(['cleanup'], { db });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/nothing to do/);
  });

  it('--purge-older-than deletes gone agents with their events and commands; --dry-run only says so', async () => {
    const db = tempDb();
    for (const n of ['alive', 'gone', 'dereg', 'recent-offline']) cli(['heartbeat', n], { db });
    cli(['deregister', 'dereg'], { db });
    cli(['set-status', 'recent-offline', 'offline'], { db });
    await sqlRun(db, "INSERT INTO commands (agent_id, payload, state, created_at) SELECT id, 'x', 'queued', ? FROM agents WHERE name = 'gone'", [Date.now()]);
    await age(db, 'gone', 48 * HOUR); // silent for two days: offline by the clock
    await age(db, 'dereg', 48 * HOUR);
    const dry = cliJson(['cleanup', '--purge-older-than', '1d', '--dry-run'], { db });
    expect(dry).toMatchObject({ dryRun: true, purged: { agents: ['dereg', 'gone'] } });
    expect(cliJson(['status', '--all'], { db }).agents).toHaveLength(4);
    const r = cli(['cleanup', '--purge-older-than', '1d'], { db });
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toMatch(/^purged 2 agents \(dereg, gone\) with \d+ events and 1 command$/);
    expect(cliJson(['status', '--all'], { db }).agents.map((a: any) => a.name)).toEqual(['alive', 'recent-offline']);
    expect(await sqlPluck(db, "SELECT COUNT(*) AS n FROM events WHERE agent_name IN ('gone', 'dereg')")).toEqual([0]);
    expect(await sqlPluck(db, 'SELECT COUNT(*) AS n FROM commands')).toEqual([0]);
  });

  it('--events-older-than prunes history only', async () => {
    const db = tempDb();
    cli(['heartbeat', 'old'], { db });
    cli(['heartbeat', 'new'], { db });
    await age(db, 'old', 2 * HOUR);
    cli(['heartbeat', 'old'], { db }); // back: writes stale/offline + reactivation events now
    const before = cliJson(['history', '--limit', '1000'], { db }).length;
    // Old: its registration, first heartbeat, and going offline 300 s after that (dated when it happened).
    const dry = cliJson(['cleanup', '--events-older-than', '1h', '--dry-run'], { db });
    expect(dry.prunedEvents).toBe(3);
    const r = cliJson(['cleanup', '--events-older-than', '1h'], { db });
    expect(r.prunedEvents).toBe(3);
    const after = cliJson(['history', '--limit', '1000'], { db }) as any[];
    expect(after.length).toBe(before - 3);
    expect(after.map((e) => `${e.agentName}:${e.toState}`)).toEqual(['new:initializing', 'new:active', 'old:active']);
    expect(cliJson(['status'], { db }).agents.map((a: any) => a.state)).toEqual(['active', 'active']);
  });

  it('--events-older-than also prunes alerts every receiver has settled and finished commands, never open ones', async () => {
    const db = tempDb();
    cli(['heartbeat', 'w'], { db });
    const old = Date.now() - 2 * HOUR;
    const recent = Date.now() - 60_000;
    const [id] = await sqlPluck(db, "SELECT id FROM agents WHERE name = 'w'");
    const command = (...args: unknown[]) => sqlRun(db, 'INSERT INTO commands (agent_id, payload, state, created_at, finished_at) VALUES (?, ?, ?, ?, ?)', [id, ...args]);
    await command('done long ago', 'completed', old, old);
    await command('cancelled long ago', 'cancelled', old, old + 1);
    await command('queued long ago', 'queued', old, null);
    await command('claimed long ago', 'executing', old, null);
    await command('done lately', 'completed', old, recent);

    // Real alerts from real passes: a webhook that takes them, an exec receiver that never does (exit 3).
    const hook = await receiver();
    const sink = `'${process.execPath}' '${fixture('alert-sink.mjs')}' '${join(tempDir(), 'sink.ndjson')}' 3`;
    const pass = (...targets: string[]) => cliAsync(['monitor', '--once', '--alert-retries', '0', ...targets], { db });
    const both = ['--alert-webhook', hook.url, '--alert-exec', sink];
    const alertOf = async (name: string) => (await sqlPluck<number>(db, 'SELECT id FROM alerts WHERE agent_name = ?', [name]))[0]!;
    /** Dates an agent's alert `ms` into the past, as if it had been raised that long ago. */
    const ageAlert = async (name: string, ms: number) => await sqlRun(db, 'UPDATE alerts SET created_at = created_at - ? WHERE agent_name = ?', [ms, name]);
    await pass();
    await dying(db, 'gave-up');
    await dying(db, 'unreached');
    await pass(...both); // the webhook takes both alerts; the exec receiver takes neither
    // A day and more later, the exec receiver is given up on for the first; the second is still worth retrying.
    await ageAlert('gave-up', 25 * HOUR);
    await ageAlert('unreached', 2 * HOUR);
    await pass(...both);
    await dying(db, 'no-receivers');
    await pass(); // recorded with no receivers configured: settled
    await ageAlert('no-receivers', 2 * HOUR);
    await dying(db, 'lately');
    await pass('--alert-webhook', hook.url);
    expect(hook.bodies.map((b) => b.agent.name).sort()).toEqual(['gave-up', 'lately', 'unreached']);
    const deliveries = async () => await sqlAll(db, 'SELECT agent_name AS agent, target, status FROM alert_deliveries d JOIN alerts a ON a.id = d.alert_id ORDER BY agent_name, target');
    expect(await deliveries()).toEqual([
      { agent: 'gave-up', target: `exec:${sink}`, status: 'failed' },
      { agent: 'gave-up', target: `webhook:${hook.url}`, status: 'sent' },
      { agent: 'lately', target: `webhook:${hook.url}`, status: 'sent' },
      { agent: 'unreached', target: `exec:${sink}`, status: 'pending' },
      { agent: 'unreached', target: `webhook:${hook.url}`, status: 'sent' },
    ]);
    const [unreached, lately] = [await alertOf('unreached'), await alertOf('lately')];

    const dry = cliJson(['cleanup', '--events-older-than', '1h', '--dry-run'], { db });
    expect(dry).toMatchObject({ dryRun: true, prunedEvents: 0, prunedAlerts: 2, prunedCommands: 2 });
    const r = cli(['cleanup', '--events-older-than', '1h'], { db });
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe('deleted 0 old events, 2 settled alerts and 2 finished commands');
    expect(await sqlPluck(db, 'SELECT payload FROM commands ORDER BY id')).toEqual(['queued long ago', 'claimed long ago', 'done lately']);
    expect(await sqlPluck(db, 'SELECT id FROM alerts ORDER BY id')).toEqual([unreached, lately]);
    expect(await deliveries()).toEqual([
      { agent: 'lately', target: `webhook:${hook.url}`, status: 'sent' },
      { agent: 'unreached', target: `exec:${sink}`, status: 'pending' },
      { agent: 'unreached', target: `webhook:${hook.url}`, status: 'sent' },
    ]);
    expect(cliJson(['cleanup', '--events-older-than', '1h'], { db })).toMatchObject({ prunedEvents: 0, prunedAlerts: 0, prunedCommands: 0 });
  });

  it('bad durations exit 2 and change nothing', () => {
    const db = tempDb();
    cli(['heartbeat', 'a'], { db });
    expect(cli(['cleanup', '--purge-older-than', 'forever'], { db }).code).toBe(2);
    expect(cli(['cleanup', '--events-older-than', '-1d'], { db }).code).toBe(2);
    expect(cliJson(['history'], { db })).toHaveLength(2);
  });
});

describe('agentctl cleanup --stale', () => {
  it('convicts exactly as a health pass would: overdue → stale, a dead pid → offline with its work cancelled', async () => {
    const db = tempDb();
    // Stale after 3 s of silence: far more than a CLI call takes on a busy machine, so its own beat is never late.
    cli(['register', 'slow', '--interval', '1s'], { db });
    cli(['heartbeat', 'slow'], { db });
    cli(['heartbeat', 'fine'], { db });
    // A real agent that claims a long command, then dies with it in hand.
    const victim = start(process.execPath, [fixture('agent-beat.mjs'), db, 'crashed', '10000']);
    await waitFor(() => jsonLines(victim).some((e) => e.event === 'started'), 'the agent to start');
    expect(cli(['send', 'crashed', '--', 'sleep 60000'], { db }).code).toBe(0);
    await waitFor(() => jsonLines(victim).some((e) => e.event === 'command'), 'the agent to claim the command');
    victim.kill('SIGKILL');
    await exited(victim);
    // Wait for the clock, not for a fixed time: until a reader derives 'slow' as stale.
    await waitFor(() => cliJson(['status', 'slow'], { db }).agents[0].state === 'stale', 'slow to be overdue');
    const dry = cliJson(['cleanup', '--stale', '--dry-run'], { db });
    expect(dry.convicted.map((c: any) => `${c.agent}>${c.to}`).sort()).toEqual(['crashed>offline', 'slow>stale']);
    expect(cliJson(['history', '--limit', '1000'], { db }).filter((e: any) => e.toState === 'stale' || e.toState === 'offline')).toEqual([]);
    const r = cli(['cleanup', '--stale'], { db });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^convicted 2 agents \(/);
    const h = cliJson(['history', '--limit', '1000'], { db }) as any[];
    expect(h.find((e) => e.agentName === 'crashed' && e.toState === 'offline').evidence).toMatchObject({ rule: 'pid' });
    expect(h.find((e) => e.agentName === 'slow' && e.toState === 'stale').evidence).toMatchObject({ rule: 'clock' });
    expect(await sqlPluck(db, 'SELECT state FROM commands')).toEqual(['cancelled']);
    expect(cliJson(['cleanup', '--stale'], { db }).convicted).toEqual([]);
  });
});
