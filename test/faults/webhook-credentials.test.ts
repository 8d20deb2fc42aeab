import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { cli, sleep, tempDb } from '../helpers.js';
import { beatOnce, cliAsync, freePort, receiver } from '../receiver.js';

const SECRETS = /s3cret|t0ken/;

/** Everything the monitor wrote to its daily log files beside the database. */
function logFiles(db: string): string {
  const dir = join(dirname(db), 'logs');
  return existsSync(dir) ? readdirSync(dir).map((f) => readFileSync(join(dir, f), 'utf8')).join('') : '';
}

describe('fault: credentials in a webhook URL', () => {
  it('never appear in log lines, errors, --json or --debug output, whether the receiver is down or up', async () => {
    const db = tempDb();
    const port = await freePort();
    const url = (p: number) => `http://alice:s3cret@127.0.0.1:${p}/hook?token=t0ken&team=ops`;
    const env = { AGENTCTL_LOG_LEVEL: 'debug' };
    cli(['monitor', '--once'], { db });
    await beatOnce(db, 'w', { intervalMs: 50, staleMultiplier: 1, offlineAfterMs: 100 });
    await sleep(150);
    const down = await cliAsync(['--debug', 'monitor', '--once', '--json', '--alert-webhook', url(port), '--alert-retries', '0', '--alert-timeout', '1s'], { db, env });
    expect(down.code).toBe(0);
    expect(down.stderr).toMatch(/not delivered to webhook:http:\/\/alice:\*\*\*@127\.0\.0\.1:\d+\/hook\?token=\*\*\*&team=ops: .*will retry on the next pass/);
    expect(`${down.stdout}${down.stderr}`).not.toMatch(SECRETS);
    // Up: delivered with the credentials, reported without them.
    const hook = await receiver(port);
    const up = await cliAsync(['--debug', 'monitor', '--once', '--json', '--alert-webhook', url(port)], { db, env });
    expect(up.code).toBe(0);
    expect(hook.bodies.map((b) => b.agent.name)).toEqual(['w']);
    expect(up.stderr).toMatch(/delivered to webhook:http:\/\/alice:\*\*\*@127\.0\.0\.1/);
    expect(`${up.stdout}${up.stderr}`).not.toMatch(SECRETS);
    const test = await cliAsync(['--debug', 'monitor', '--test-alert', '--alert-webhook', url(port)], { db, env });
    expect(test.code).toBe(0);
    expect(test.stderr).toMatch(/test alert delivered to webhook:http:\/\/alice:\*\*\*@/);
    expect(`${test.stdout}${test.stderr}`).not.toMatch(SECRETS);
    expect(logFiles(db)).toMatch(/alice:\*\*\*@/);
    expect(logFiles(db)).not.toMatch(SECRETS);
  }, 60_000);

  it('a URL refused as a bad flag is quoted without its credentials, with --debug too', () => {
    const db = tempDb();
    for (const bad of ['ftp://alice:s3cret@127.0.0.1/hook?token=t0ken', 'http://alice:s3cret@[127.0.0.1/hook']) {
      const r = cli(['--debug', 'monitor', '--once', '--alert-webhook', bad], { db });
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/invalid --alert-webhook 'ftp:\/\/alice:\*\*\*@|invalid --alert-webhook 'http:\/\/alice:\*\*\*@/);
      expect(`${r.stdout}${r.stderr}`).not.toMatch(SECRETS);
    }
  });
});
