import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkHealth, deregisterAgent, openStore, recentAlerts, registerAgent, updateHeartbeat } from '../dist/index.js';
import { cli, fixture, sleep, tempDb, tempDir } from './helpers.js';
import { beatOnce, cliAsync, receiver } from './receiver.js';
import { at, injectClock } from './clock.js';

const node = process.execPath;
const metric = (db: string, name: string) => Number(cli(['metrics'], { db }).stdout.match(new RegExp(`^${name} (\\d+)$`, 'm'))?.[1]);

/** Registers an agent that is offline (by its clock) 150 ms from now. */
async function dying(db: string, name: string) {
  await beatOnce(db, name, { intervalMs: 50, staleMultiplier: 1, offlineAfterMs: 100 });
  await sleep(150);
}

/** A lines file written by the exec receivers: the payloads they took. */
const taken = (path: string) => (existsSync(path) ? readFileSync(path, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) : []);

describe('alert delivery', () => {
  it('a webhook that answers non-2xx has not got the alert: it stays pending and a later pass delivers it', async () => {
    const db = tempDb();
    let up = false;
    const hook = await receiver(0, { status: () => (up ? 200 : 503) });
    const once = () => cliAsync(['monitor', '--once', '--alert-webhook', hook.url, '--alert-retries', '0'], { db });
    await once();
    await dying(db, 'w');
    const refused = await once();
    expect(refused.code).toBe(0);
    expect(refused.stderr).toMatch(/not delivered to webhook:.*HTTP 503.*will retry on the next pass/);
    expect(hook.requests).toHaveLength(1);
    expect(hook.bodies).toEqual([]);
    up = true;
    await once();
    expect(hook.bodies.map((b) => `${b.kind}:${b.agent.name}`)).toEqual(['alert:w']);
    await once();
    expect(hook.requests).toHaveLength(2); // delivered once, then never again
  });

  it('--alert-retries tries again within the pass; with 0 a pass tries once', async () => {
    const db = tempDb();
    // Refuses the first two requests it gets, then takes everything.
    const hook = await receiver(0, { status: (n) => (n <= 2 ? 500 : 200) });
    await cliAsync(['monitor', '--once', '--alert-webhook', hook.url], { db });
    await dying(db, 'w');
    const r = await cliAsync(['monitor', '--once', '--alert-webhook', hook.url, '--alert-retries', '2'], { db });
    expect(r.code).toBe(0);
    expect(hook.requests).toHaveLength(3); // one pass: the try and two retries
    expect(hook.bodies.map((b) => b.agent.name)).toEqual(['w']);

    const db2 = tempDb();
    const strict = await receiver(0, { status: (n) => (n <= 2 ? 500 : 200) });
    await cliAsync(['monitor', '--once', '--alert-webhook', strict.url], { db: db2 });
    await dying(db2, 'v');
    await cliAsync(['monitor', '--once', '--alert-webhook', strict.url, '--alert-retries', '0'], { db: db2 });
    expect(strict.requests).toHaveLength(1);
    expect(strict.bodies).toEqual([]);
  });

  it('an exec receiver that exits non-zero, or outlives --alert-timeout, has not got the alert', async () => {
    const db = tempDb();
    const dir = tempDir();
    const failing = `'${node}' '${fixture('alert-sink.mjs')}' '${join(dir, 'failing.ndjson')}' 3`;
    const hanging = `'${node}' -e 'setTimeout(() => {}, 120000)'`;
    const once = () => cliAsync(['monitor', '--once', '--alert-exec', failing, '--alert-exec', hanging, '--alert-retries', '0', '--alert-timeout', '1s'], { db });
    await once();
    await dying(db, 'w');
    const r = await once();
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/not delivered to exec:.*alert-sink\.mjs.*exit 3.*will retry on the next pass/);
    expect(r.stderr).toMatch(/not delivered to exec:.*setTimeout.*killed: timeout 1000ms.*will retry on the next pass/);
    expect(metric(db, 'agentctl_alerts_failed_total')).toBe(2);
    expect(metric(db, 'agentctl_alerts_sent_total')).toBe(0);
  });

  it('two receivers: the one that took the alert is not sent it again while the other is retried until it takes it', async () => {
    const db = tempDb();
    const dir = tempDir();
    const out = join(dir, 'exec.ndjson');
    const flag = join(dir, 'up');
    const hook = await receiver();
    const exec = `'${node}' '${fixture('alert-flaky.mjs')}' '${out}' '${flag}'`;
    const once = () => cliAsync(['monitor', '--once', '--alert-webhook', hook.url, '--alert-exec', exec, '--alert-retries', '0'], { db });
    await once();
    await dying(db, 'w');
    const first = await once();
    expect(first.stderr).toMatch(/not delivered to exec:.*receiver is down.*will retry on the next pass/);
    expect(hook.requests.map((b) => b.agent.name)).toEqual(['w']);
    await once(); // the exec receiver is still down: tried again, the webhook is left alone
    expect(hook.requests).toHaveLength(1);
    expect(taken(out)).toEqual([]);
    writeFileSync(flag, '');
    await once();
    expect(taken(out).map((p) => `${p.kind}:${p.agent.name}`)).toEqual(['alert:w']);
    expect(taken(out)[0].alert_id).toBe(hook.requests[0].alert_id);
    await once();
    expect(hook.requests).toHaveLength(1);
    expect(taken(out)).toHaveLength(1);
  });

  it('deregistering an agent that is down ends its down spell: no recovery notice when the name comes back', async () => {
    const T0 = 1_700_000_000_000;
    const s = await openStore({ path: tempDb() });
    try {
      await injectClock(s, T0);
      const policy = { targets: ['webhook:http://127.0.0.1:1/x'], alertCooldownMs: 3_600_000 };
      await registerAgent(s, { name: 'gone', intervalMs: 1000, staleMultiplier: 3, offlineAfterMs: 10_000 }, await at(s, T0));
      await updateHeartbeat(s, { name: 'gone' }, await at(s, T0));
      await checkHealth(s, await at(s, T0), policy);
      await checkHealth(s, await at(s, T0 + 10_000), policy);
      expect((await recentAlerts(s)).map((a) => `${a.kind}:${a.state}`)).toEqual(['alert:offline']);
      await deregisterAgent(s, 'gone', await at(s, T0 + 11_000));
      await checkHealth(s, await at(s, T0 + 12_000), policy);
      // The same name beats again (a new agent under an old name): it was never down, so nothing recovers.
      await updateHeartbeat(s, { name: 'gone' }, await at(s, T0 + 13_000));
      await checkHealth(s, await at(s, T0 + 14_000), policy);
      expect((await recentAlerts(s)).map((a) => `${a.kind}:${a.state}`)).toEqual(['alert:offline']);
    } finally {
      await s.close();
    }
  });
});
