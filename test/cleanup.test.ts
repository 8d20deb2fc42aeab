import { describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { cli, cliJson, exited, fixture, jsonLines, start, tempDb, waitFor } from './helpers.js';

const HOUR = 3_600_000;

/** Moves an agent's timestamps (and its events) `ms` into the past, as if it had been silent that long. */
function age(db: string, name: string, ms: number): void {
  const raw = new Database(db);
  raw.prepare(
    'UPDATE agents SET last_heartbeat_at = last_heartbeat_at - :ms, started_at = started_at - :ms, created_at = created_at - :ms, updated_at = updated_at - :ms, state_since = state_since - :ms WHERE name = :name',
  ).run({ ms, name });
  raw.prepare('UPDATE events SET at = at - :ms WHERE agent_name = :name').run({ ms, name });
  raw.close();
}

describe('agentctl cleanup', () => {
  it('refuses to run without an action', () => {
    const db = tempDb();
    cli(['heartbeat', 'a'], { db });
    const r = cli(['cleanup'], { db });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/nothing to do/);
  });

  it('--purge-older-than deletes gone agents with their events and commands; --dry-run only says so', () => {
    const db = tempDb();
    for (const n of ['alive', 'gone', 'dereg', 'recent-offline']) cli(['heartbeat', n], { db });
    cli(['deregister', 'dereg'], { db });
    cli(['set-status', 'recent-offline', 'offline'], { db });
    const raw = new Database(db);
    raw.prepare("INSERT INTO commands (agent_id, payload, state, created_at) SELECT id, 'x', 'queued', 0 FROM agents WHERE name = 'gone'").run();
    raw.close();
    age(db, 'gone', 48 * HOUR); // silent for two days: offline by the clock
    age(db, 'dereg', 48 * HOUR);
    const dry = cliJson(['cleanup', '--purge-older-than', '1d', '--dry-run'], { db });
    expect(dry).toMatchObject({ dryRun: true, purged: { agents: ['dereg', 'gone'] } });
    expect(cliJson(['status', '--all'], { db }).agents).toHaveLength(4);
    const r = cli(['cleanup', '--purge-older-than', '1d'], { db });
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toMatch(/^purged 2 agents \(dereg, gone\) with \d+ events and 1 command$/);
    expect(cliJson(['status', '--all'], { db }).agents.map((a: any) => a.name)).toEqual(['alive', 'recent-offline']);
    const left = new Database(db, { readonly: true });
    expect(left.prepare("SELECT COUNT(*) FROM events WHERE agent_name IN ('gone', 'dereg')").pluck().get()).toBe(0);
    expect(left.prepare('SELECT COUNT(*) FROM commands').pluck().get()).toBe(0);
    left.close();
  });

  it('--events-older-than prunes history only', () => {
    const db = tempDb();
    cli(['heartbeat', 'old'], { db });
    cli(['heartbeat', 'new'], { db });
    age(db, 'old', 2 * HOUR);
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

  it('--events-older-than also prunes alerts every receiver has settled and finished commands, never open ones', () => {
    const db = tempDb();
    cli(['heartbeat', 'w'], { db });
    const old = Date.now() - 2 * HOUR;
    const recent = Date.now() - 60_000;
    const raw = new Database(db);
    const id = raw.prepare("SELECT id FROM agents WHERE name = 'w'").pluck().get();
    const command = raw.prepare('INSERT INTO commands (agent_id, payload, state, created_at, finished_at) VALUES (?, ?, ?, ?, ?)');
    command.run(id, 'done long ago', 'completed', old, old);
    command.run(id, 'cancelled long ago', 'cancelled', old, old + 1);
    command.run(id, 'queued long ago', 'queued', old, null);
    command.run(id, 'claimed long ago', 'executing', old, null);
    command.run(id, 'done lately', 'completed', old, recent);
    const alert = raw.prepare("INSERT INTO alerts (agent_id, agent_name, kind, state, created_at, payload) VALUES (?, 'w', 'alert', 'offline', ?, '{}')");
    const delivery = raw.prepare('INSERT INTO alert_deliveries (alert_id, target, status) VALUES (?, ?, ?)');
    const sent = alert.run(id, old).lastInsertRowid;
    delivery.run(sent, 'webhook:http://127.0.0.1:1/a', 'sent');
    delivery.run(sent, 'exec:true', 'failed');
    const unreached = alert.run(id, old).lastInsertRowid;
    delivery.run(unreached, 'webhook:http://127.0.0.1:1/a', 'sent');
    delivery.run(unreached, 'exec:true', 'pending');
    alert.run(id, old); // recorded with no receivers configured: settled
    const lately = alert.run(id, recent).lastInsertRowid;
    delivery.run(lately, 'exec:true', 'sent');
    raw.close();

    const dry = cliJson(['cleanup', '--events-older-than', '1h', '--dry-run'], { db });
    expect(dry).toMatchObject({ dryRun: true, prunedEvents: 0, prunedAlerts: 2, prunedCommands: 2 });
    const r = cli(['cleanup', '--events-older-than', '1h'], { db });
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe('deleted 0 old events, 2 settled alerts and 2 finished commands');
    const left = new Database(db, { readonly: true });
    expect(left.prepare('SELECT payload FROM commands ORDER BY id').pluck().all()).toEqual(['queued long ago', 'claimed long ago', 'done lately']);
    expect(left.prepare('SELECT id FROM alerts ORDER BY id').pluck().all()).toEqual([Number(unreached), Number(lately)]);
    expect(left.prepare('SELECT alert_id, status FROM alert_deliveries ORDER BY alert_id, target').all()).toEqual([
      { alert_id: Number(unreached), status: 'pending' },
      { alert_id: Number(unreached), status: 'sent' },
      { alert_id: Number(lately), status: 'sent' },
    ]);
    left.close();
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
    const left = new Database(db, { readonly: true });
    expect(left.prepare('SELECT state FROM commands').pluck().get()).toBe('cancelled');
    left.close();
    expect(cliJson(['cleanup', '--stale'], { db }).convicted).toEqual([]);
  });
});
