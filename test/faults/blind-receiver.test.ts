import { describe, expect, it } from 'vitest';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cli, exited, fixture, historyOf, start, startCli, tempDb, waitFor, withStore } from '../helpers.js';
import { beatOnce, blindReceiver, cliAsync, receiver } from '../receiver.js';
import { sleep } from '../helpers.js';

/** Two agents that are offline by their clock 150 ms from now: the next pass queues two alerts. */
async function twoDying(db: string): Promise<void> {
  await beatOnce(db, 'gone-1', { intervalMs: 50, staleMultiplier: 1, offlineAfterMs: 100 });
  await beatOnce(db, 'gone-2', { intervalMs: 50, staleMultiplier: 1, offlineAfterMs: 100 });
  // Healthy agents beside them, so that two convictions are not "most agents at once" (which would be held).
  for (const name of ['fine-1', 'fine-2', 'fine-3']) cli(['heartbeat', name, '--interval', '1h'], { db });
  await sleep(150);
}

const deliveries = async (db: string) =>
  await withStore(db, (s) => s.db.prepare('SELECT alert_id, target, status, attempts FROM alert_deliveries ORDER BY alert_id').all() as { alert_id: number; target: string; status: string; attempts: number }[]);

describe('fault: a webhook receiver that accepts and never answers', () => {
  it('the daemon still marks a SIGKILLed agent offline on the next pass, never suspects itself, and stops on SIGTERM within the alert timeout', async () => {
    const db = tempDb();
    const hook = await blindReceiver();
    cli(['monitor', '--once'], { db }); // alerts start from here
    const victim = start(process.execPath, [fixture('agent.mjs'), db, 'victim', '100']);
    await waitFor(() => victim.output().includes('beating'), 'the agent to beat');
    await twoDying(db);
    const timeoutMs = 8000;
    const monitor = startCli(['monitor', '--every', '200ms', '--alert-webhook', hook.url, '--alert-timeout', `${timeoutMs / 1000}s`], { db });
    // The two alerts are on their way to a receiver that will never answer them.
    await waitFor(() => hook.opened.length >= 1, 'a delivery to reach the receiver');
    victim.kill('SIGKILL');
    await exited(victim);
    await waitFor(() => historyOf(db, 'victim').some((e) => e.toState === 'offline'), 'the crashed agent to be marked offline', 30_000);
    const offline = historyOf(db, 'victim').find((e) => e.toState === 'offline')!;
    expect(offline.evidence).toMatchObject({ rule: 'pid', pid_check: 'gone' });
    // Convicted while the receiver still held the request unanswered: detection did not wait for it.
    expect(hook.closed.length === 0 || offline.at < hook.closed[0]!).toBe(true);
    await waitFor(() => /victim active → offline/.test(monitor.errors()), 'the conviction in the log');
    expect(monitor.errors()).not.toMatch(/paused|convicting no one/);
    // SIGTERM with deliveries still in flight: they are cut short and stay pending.
    const askedAt = performance.now();
    monitor.kill('SIGTERM');
    const { code } = await exited(monitor);
    const tookMs = performance.now() - askedAt;
    expect(code).toBe(0);
    expect(tookMs).toBeLessThan(timeoutMs + 2000 + 5000); // the contract is timeout + 2 s; 5 s of margin for a busy machine
    const open = await deliveries(db);
    expect(open.length).toBeGreaterThanOrEqual(2);
    for (const d of open) expect(d.status).toBe('pending');
  }, 90_000);

  it('monitor --once with two pending alerts convicts first, waits for the receiver no longer than its round allows, and leaves both for a later pass', async () => {
    const db = tempDb();
    const hook = await blindReceiver();
    cli(['monitor', '--once'], { db });
    await twoDying(db);
    const timeoutMs = 4000;
    const t0 = performance.now();
    const run = await cliAsync(['monitor', '--once', '--alert-webhook', hook.url, '--alert-timeout', `${timeoutMs / 1000}s`, '--alert-retries', '2'], { db });
    const tookMs = performance.now() - t0;
    expect(run.code).toBe(0);
    // The convictions are logged before any delivery is given up on.
    const lines = run.stderr.split('\n');
    const convicted = lines.findIndex((l) => /gone-2 active → offline/.test(l));
    const gaveUp = lines.findIndex((l) => /not delivered to webhook:/.test(l));
    expect(convicted).toBeGreaterThanOrEqual(0);
    expect(gaveUp).toBeGreaterThan(convicted);
    // Both deliveries were tried side by side, each once: not one after the other, three tries each (6 × timeout).
    expect(tookMs).toBeLessThan(3 * timeoutMs);
    expect((await deliveries(db)).map((d) => `${d.status}:${d.attempts}`)).toEqual(['pending:1', 'pending:1']);
    // Once the receiver answers, each alert is delivered exactly once.
    await hook.close();
    const good = await receiver(hook.port);
    expect((await cliAsync(['monitor', '--once', '--alert-webhook', good.url], { db })).code).toBe(0);
    expect(good.bodies.map((b) => b.agent.name).sort()).toEqual(['gone-1', 'gone-2']);
    expect((await cliAsync(['monitor', '--once', '--alert-webhook', good.url], { db })).code).toBe(0);
    expect(good.bodies).toHaveLength(2);
    expect((await deliveries(db)).map((d) => d.status)).toEqual(['sent', 'sent']);
  }, 90_000);

  it('a slow receiver gets each alert once, though many passes run while its answer is on the way', async () => {
    const db = tempDb();
    const bodies: any[] = [];
    // Answers each request 1.5 s late: a dozen passes run meanwhile, each asking for a delivery round.
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => setTimeout(() => (bodies.push(JSON.parse(body)), res.writeHead(200, { connection: 'close' }).end('ok')), 1500));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
      cli(['monitor', '--once'], { db });
      await twoDying(db);
      const monitor = startCli(['monitor', '--every', '100ms', '--json', '--alert-webhook', url, '--alert-timeout', '10s'], { db });
      await waitFor(async () => (await deliveries(db)).filter((d) => d.status === 'sent').length === 2, 'both alerts delivered', 30_000);
      // Well after: passes went on, and nothing was sent again.
      const passes = () => monitor.output().split('\n').filter((l) => l.startsWith('{')).length;
      const seen = passes();
      await waitFor(() => passes() >= seen + 10, 'ten more passes');
      monitor.kill('SIGINT');
      expect((await exited(monitor)).code).toBe(0);
      expect(bodies.map((b) => b.agent.name).sort()).toEqual(['gone-1', 'gone-2']);
      expect((await deliveries(db)).map((d) => `${d.status}:${d.attempts}`)).toEqual(['sent:1', 'sent:1']);
      expect(monitor.errors()).not.toMatch(/paused|convicting no one/);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  }, 90_000);
});
