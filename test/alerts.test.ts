import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { ROOT, cli, cliJson, dbExists, exited, sleep, startCli, tempDb, tempDir, waitFor, withStore } from './helpers.js';
import { claimDeliveries, finishDelivery, insertAlert } from '../src/store/alerts.js';
import { TLS_CERT, beatOnce, cliAsync, freePort, receiver } from './receiver.js';

const SINK = join(ROOT, 'test', 'fixtures', 'alert-sink.mjs');

/** Registers an agent that is offline (by its clock) 150 ms from now: contract and first beat in one write. */
async function dying(db: string, name: string) {
  await beatOnce(db, name, { intervalMs: 50, staleMultiplier: 1, offlineAfterMs: 100 });
  await sleep(150);
}

describe('alerts', () => {
  it('a webhook gets exactly one alert per transition, a recovery notice, and nothing during the cooldown across --once runs', async () => {
    const db = tempDb();
    const hook = await receiver();
    const once = () => cliAsync(['monitor', '--once', '--alert-webhook', hook.url], { db });
    await once(); // the first pass: alerts start from here
    await dying(db, 'w1');
    expect((await once()).code).toBe(0);
    expect(hook.bodies).toHaveLength(1);
    expect(hook.bodies[0]).toMatchObject({ source: 'agentctl', kind: 'alert', state: 'offline', previous_state: 'active', agent: { name: 'w1' }, alert_id: expect.any(Number) });
    expect(hook.bodies[0].message).toMatch(/^w1 is offline: no heartbeat within the offline threshold/);
    await once();
    await once();
    expect(hook.bodies).toHaveLength(1);
    cli(['heartbeat', 'w1'], { db });
    await once();
    expect(hook.bodies.map((b) => b.kind)).toEqual(['alert', 'recovery']);
    expect(hook.bodies[1]).toMatchObject({ state: 'active', previous_state: 'offline' });
    expect(hook.bodies[1].down_for_ms).toBeGreaterThan(0);
    expect(hook.bodies[1].message).toMatch(/^w1 is back \(active\) after \d+/);
    // Down again within the 30-minute cooldown: nothing, however many runs.
    await sleep(150);
    await once();
    await once();
    expect(hook.bodies).toHaveLength(2);
    const metrics = cli(['metrics'], { db }).stdout;
    expect(metrics).toMatch(/^agentctl_alerts_sent_total 2$/m);
    expect(metrics).toMatch(/^agentctl_alerts_suppressed_total 1$/m);
  });

  it('reminds once per cooldown while an agent stays down, and never alerts about an agent in maintenance', async () => {
    const db = tempDb();
    const hook = await receiver();
    // A 5 s cooldown: the two passes that must fall inside it each start a CLI, which takes a while on a busy machine.
    const once = () => cliAsync(['monitor', '--once', '--alert-webhook', hook.url, '--alert-cooldown', '5s'], { db });
    await once();
    await beatOnce(db, 'paused', { intervalMs: 50, offlineAfterMs: 100 });
    cli(['set-status', 'paused', 'maintenance'], { db });
    await dying(db, 'down');
    await once();
    expect(hook.bodies.map((b) => `${b.kind}:${b.agent.name}`)).toEqual(['alert:down']);
    await once();
    expect(hook.bodies).toHaveLength(1);
    await sleep(5100);
    await once();
    expect(hook.bodies.map((b) => b.kind)).toEqual(['alert', 'reminder']);
    expect(hook.bodies[1].message).toMatch(/^down is still offline \(down for \d+s/);
    await once();
    expect(hook.bodies).toHaveLength(2);
  });

  it('an https webhook gets the alert only over a verified connection: an untrusted certificate is a failed delivery, retried', async () => {
    const db = tempDb();
    const hook = await receiver(0, { tls: true });
    expect(hook.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/hook$/);
    const once = (env: Record<string, string | undefined> = {}) =>
      cliAsync(['monitor', '--once', '--alert-webhook', hook.url, '--alert-retries', '0', '--alert-timeout', '2s'], { db, env });
    await once();
    await dying(db, 'w');
    // The receiver's certificate is self-signed: without trusting it, nothing is sent and the alert stays pending.
    const untrusted = await once();
    expect(untrusted.code).toBe(0);
    expect(untrusted.stderr).toMatch(/not delivered to webhook:https:.*(self[- ]signed|certificate).*will retry on the next pass/i);
    expect(hook.bodies).toEqual([]);
    // Trusted (as an operator would add an internal CA): delivered once, and not again.
    expect((await once({ NODE_EXTRA_CA_CERTS: TLS_CERT })).code).toBe(0);
    expect(hook.bodies.map((b) => `${b.kind}:${b.state}:${b.agent.name}`)).toEqual(['alert:offline:w']);
    await once({ NODE_EXTRA_CA_CERTS: TLS_CERT });
    expect(hook.bodies).toHaveLength(1);
  });

  it('an alert the receiver could not take is delivered once it is up', async () => {
    const db = tempDb();
    const port = await freePort();
    const url = `http://127.0.0.1:${port}/hook`;
    const once = () => cliAsync(['monitor', '--once', '--alert-webhook', url, '--alert-retries', '0', '--alert-timeout', '1s'], { db });
    await once();
    await dying(db, 'w');
    const down = await once();
    expect(down.code).toBe(0);
    expect(down.stderr).toMatch(/not delivered to webhook:.*will retry on the next pass/);
    const hook = await receiver(port);
    expect((await once()).code).toBe(0);
    expect(hook.bodies.map((b) => `${b.kind}:${b.agent.name}`)).toEqual(['alert:w']);
    await once();
    expect(hook.bodies).toHaveLength(1);
    const metrics = cli(['metrics'], { db }).stdout;
    expect(metrics).toMatch(/^agentctl_alerts_failed_total 1$/m);
    expect(metrics).toMatch(/^agentctl_alerts_sent_total 1$/m);
  });

  it('five monitor --once started together: each passes alone or says another is running; each agent is convicted and alerted once', async () => {
    const db = tempDb();
    const hook = await receiver();
    cli(['monitor', '--once'], { db });
    cli(['heartbeat', 'fine-1', '--interval', '1h'], { db });
    cli(['heartbeat', 'fine-2', '--interval', '1h'], { db });
    await dying(db, 'x');
    await dying(db, 'y');
    const runs = Array.from({ length: 5 }, () => startCli(['monitor', '--once', '--json', '--alert-webhook', hook.url], { db }));
    const codes = await Promise.all(runs.map((r) => exited(r)));
    expect(codes.map((c) => c.code)).toEqual([0, 0, 0, 0, 0]);
    const passes = runs.filter((r) => r.output().trim());
    expect(passes.length).toBeGreaterThanOrEqual(1);
    for (const r of runs.filter((x) => !x.output().trim())) expect(r.errors()).toMatch(/^agentctl: another agentctl monitor is running .*; nothing to do\n$/);
    // However many got the lock in turn, the convictions were made once, by one of them: the reports add up to two.
    const reported = passes.flatMap((r) => JSON.parse(r.output().trim()).transitions.map((t: any) => `${t.agent}>${t.to}`));
    expect(reported.sort()).toEqual(['x>offline', 'y>offline']);
    const all = cliJson(['history', '--limit', '1000'], { db }) as any[];
    for (const name of ['x', 'y']) expect(all.filter((e) => e.agentName === name && e.toState === 'offline')).toHaveLength(1);
    await waitFor(() => hook.bodies.length >= 2, 'the two alerts');
    expect(hook.bodies.map((b) => b.agent.name).sort()).toEqual(['x', 'y']);
  });

  it('--alert-exec runs a command without a shell, with the JSON on stdin and AGENTCTL_* variables; --alert-on adds states', async () => {
    const db = tempDb();
    const out = join(tempDir(), 'alerts dir with spaces.ndjson');
    const cmd = `'${process.execPath}' '${SINK}' '${out}'`;
    const once = () => cliAsync(['monitor', '--once', '--alert-exec', cmd, '--alert-on', 'stale'], { db });
    await once();
    // Stale after 100 ms, offline after 6 s: the pass in between has 6 s to start, even on a busy machine.
    await beatOnce(db, 'slow', { intervalMs: 100, staleMultiplier: 1, offlineAfterMs: 6000 });
    await sleep(150);
    await once();
    await sleep(6000);
    await once();
    const got = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(got.map((g) => `${g.payload.kind}:${g.payload.state}`)).toEqual(['alert:stale', 'alert:offline']);
    expect(got[0].env).toMatchObject({ AGENTCTL_AGENT: 'slow', AGENTCTL_ALERT_KIND: 'alert', AGENTCTL_AGENT_STATE: 'stale', AGENTCTL_AGENT_PREVIOUS_STATE: 'active' });
    expect(got[1].env.AGENTCTL_ALERT_ID).toBe(String(got[1].payload.alert_id));
    expect(got[0].argv).toEqual([out]);
  });

  it('--test-alert sends one synthetic alert and exits 0, or 1 when a receiver does not get it', async () => {
    const db = tempDb();
    const hook = await receiver();
    const ok = await cliAsync(['monitor', '--test-alert', '--alert-webhook', hook.url], { db });
    expect(ok.code).toBe(0);
    expect(ok.stderr).toMatch(/test alert delivered to webhook:/);
    expect(hook.bodies).toMatchObject([{ kind: 'test', agent: { name: 'agentctl-test' } }]);
    const port = await freePort();
    const bad = await cliAsync(['monitor', '--test-alert', '--alert-webhook', `http://127.0.0.1:${port}/`, '--alert-retries', '0'], { db });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/NOT delivered/);
    expect(dbExists(db)).toBe(true);
  });

  it('claims one agent’s alerts to a receiver in order, each once a round, and only the claim’s holder records its outcome', async () => {
    const db = tempDb();
    await withStore(db, async (s) => {
      const add = (name: string) => s.tx(async (s) => await insertAlert(s, { agentId: null, agentName: name, kind: 'alert', state: 'offline', eventId: null, createdAt: 1000, payload: {} }, ['t']));
      const [a1, b1, a2] = [await add('a'), await add('b'), await add('a')];
      // a's second alert waits while its first is open: a receiver never gets a recovery before its alert.
      const first = await claimDeliveries(s, ['t'], 2000, 9000);
      expect(first.map((d) => d.alertId)).toEqual([a1, b1]);
      expect(await claimDeliveries(s, ['t'], 2000, 9000)).toEqual([]);
      // a1 failed: pending again, but skipped by the round that tried it; a2 still waits behind it.
      await finishDelivery(s, first[0]!, 'pending', 2100, 'HTTP 500');
      expect(await claimDeliveries(s, ['t'], 2200, 9000, 10, [a1])).toEqual([]);
      // An abandoned claim (its sender died) is taken over; the old holder can no longer record anything.
      const again = await claimDeliveries(s, ['t'], 9500, 20_000);
      expect(again.map((d) => d.alertId)).toEqual([a1, b1]);
      await finishDelivery(s, first[1]!, 'sent', 9600, null);
      const status = async (id: number) => (await s.sql.get<{ status: string }>('SELECT status FROM alert_deliveries WHERE alert_id = ?', [id]))!.status;
      expect(await status(b1)).toBe('sending');
      await finishDelivery(s, again[0]!, 'sent', 9700, null);
      expect((await claimDeliveries(s, ['t'], 9800, 20_000)).map((d) => d.alertId)).toEqual([a2]);
    });
  });
});
