import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cli, exited, killGroupAfter, startCli, tempDb, tempDir, waitFor } from '../helpers.js';
import { agentOf, createToken, historyJson, serve } from './serve-helpers.js';

/** `agentctl run --server URL` with its token in the environment, and a --db that must never be created. */
function runRemote(base: string, token: string, args: string[], child: string) {
  const localDb = join(tempDir(), 'never-created.db');
  const run = startCli(['run', '--server', base, ...args, '--', 'sh', '-c', child], { db: localDb, env: { AGENTCTL_TOKEN: token } });
  let exitedAt = 0;
  run.once('exit', () => (exitedAt = Date.now()));
  return { run, localDb, exitedAt: () => exitedAt };
}

/** The pid the child script prints first (`echo child=$$`), registered for cleanup at once. */
async function childPid(run: ReturnType<typeof startCli>): Promise<number> {
  let pid = 0;
  await waitFor(() => {
    const m = /child=(\d+)/.exec(run.output());
    if (m) pid = Number(m[1]);
    return pid > 0;
  }, 'the child to print its pid');
  killGroupAfter(pid);
  return pid;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('agentctl run --server', () => {
  it('beats over HTTP with no database opened; the child killed: offline on the server, recorded before run exits', async () => {
    const db = tempDb();
    const key = createToken(db, 'remote', 'agent', 'job-*');
    const viewer = createToken(db, 'v', 'viewer');
    const s = await serve(db);
    const r = runRemote(s.base, key, ['--name', 'job-1', '--interval', '100ms', '--offline-after', '10m'], 'echo child=$$ token=${AGENTCTL_TOKEN:-none}; exec sleep 600');
    const pid = await childPid(r.run);
    await waitFor(() => (agentOf(db, 'job-1')?.heartbeatSeq ?? 0) >= 3, 'three beats to reach the server');
    // The contract the wrapper was given is the server's now; where the child runs is in the metadata, not in pid.
    expect(agentOf(db, 'job-1')).toMatchObject({ state: 'active', intervalMs: 100, offlineAfterMs: 600_000, pid: null, metadata: { run_pid: pid } });

    process.kill(pid, 'SIGKILL');
    const api = async () => (await (await fetch(`${s.base}/api/v1/agents/job-1`, { headers: { Authorization: `Bearer ${viewer}` } })).json()) as any;
    let seen: any;
    await waitFor(async () => (seen = await api()).agent.state === 'offline', 'the API to show the agent offline');
    const { code } = await exited(r.run);
    expect(code).toBe(137);
    const event = historyJson(db, 'job-1').at(-1);
    expect(event).toMatchObject({ toState: 'offline', reason: 'killed by SIGKILL', evidence: { rule: 'exit', detected_by: 'agentctl run --server', token: 'remote', exit_status: 137, exit_code: null, signal: 'SIGKILL', pid } });
    // As `agentctl run` records it on the database: the child's pid and uptime, no forwarded signal.
    expect(event.evidence.uptime_ms).toBeGreaterThan(0);
    expect(event.evidence).not.toHaveProperty('forwarded_signal');
    expect(seen.events.at(-1)).toMatchObject({ id: event.id, toState: 'offline' });
    // The order: the server had recorded the exit before the wrapper exited.
    expect(r.exitedAt()).toBeGreaterThanOrEqual(event.at);
    // No database on the wrapper's side, and the token in none of its output.
    expect(existsSync(r.localDb)).toBe(false);
    expect(r.run.errors() + r.run.output()).not.toContain(key);
    // Nor does the child inherit it.
    expect(r.run.output()).toContain('token=none');
  });

  it('with the server down the child keeps running and every failed try is said; beats resume when it is back', async () => {
    const db = tempDb();
    const key = createToken(db, 'remote', 'agent');
    const first = await serve(db);
    const port = new URL(first.base).port;
    await first.stop();
    const r = runRemote(`http://127.0.0.1:${port}`, key, ['--name', 'w', '--interval', '100ms', '--report-timeout', '20s'], 'echo child=$$; exec sleep 600');
    const pid = await childPid(r.run);
    await waitFor(() => /heartbeat of w to http:\/\/127\.0\.0\.1:\d+ failed \(2 in a row\), retrying in \d+ ms: ECONNREFUSED/.test(r.run.errors()), 'two failed tries said on stderr');
    expect(alive(pid)).toBe(true);
    expect(r.run.exitCode).toBeNull();

    const s = await serve(db, ['--listen', `127.0.0.1:${port}`]);
    await waitFor(() => agentOf(db, 'w')?.state === 'active', 'the beats to reach the server once it is back', 30_000);
    await waitFor(() => /heartbeats to http:\/\/127\.0\.0\.1:\d+ recovered after \d+ failure/.test(r.run.errors()), 'the recovery said');
    r.run.kill('SIGTERM');
    expect((await exited(r.run)).code).toBe(143);
    expect(agentOf(db, 'w')).toMatchObject({ state: 'offline', stateReason: 'killed by SIGTERM', stateEvidence: { signal: 'SIGTERM', forwarded_signal: 'SIGTERM', pid } });
    expect(r.run.errors()).not.toContain(key);
    await s.stop();
  });

  it('an exit the server never hears of: bounded retries, each said, then one error line; run still passes the code on', async () => {
    const db = tempDb();
    const key = createToken(db, 'remote', 'agent');
    const s = await serve(db);
    const go = join(tempDir(), 'go');
    const r = runRemote(s.base, key, ['--name', 'w', '--interval', '100ms', '--report-timeout', '1s'], `echo child=$$; while [ ! -e '${go}' ]; do sleep 0.05; done; exit 4`);
    await childPid(r.run);
    await waitFor(() => agentOf(db, 'w')?.state === 'active', 'the agent active on the server');
    await s.stop();
    writeFileSync(go, '');
    const { code } = await exited(r.run);
    expect(code).toBe(4);
    expect(r.run.errors()).toMatch(/reporting the exit of w to http:\/\/127\.0\.0\.1:\d+ failed \(try 1\), retrying/);
    expect(r.run.errors()).toMatch(/could not report that w exited with code 4 to http:\/\/127\.0\.0\.1:\d+ \(\d+ tries\): ECONNREFUSED; the server will judge it by its heartbeat age alone/);
    expect(r.run.errors()).not.toContain(key);
  });

  it('a token the server refuses: one clear line, exit 1, the child stopped; usage errors exit 2', async () => {
    const db = tempDb();
    const viewer = createToken(db, 'v', 'viewer');
    const narrow = createToken(db, 'narrow', 'agent', 'backup-*');
    const s = await serve(db);
    for (const [token, why] of [['agentctl_wrong', '401 unknown or revoked token'], [viewer, '403 forbidden'], [narrow, "403 forbidden: token 'narrow' may act only for agents matching 'backup-*'"]] as const) {
      const r = runRemote(s.base, token, ['--name', 'w'], 'echo child=$$; exec sleep 600');
      const { code } = await exited(r.run);
      expect(code).toBe(1);
      const lines = r.run.errors().trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain(`${s.base} refused the token for w: ${why}`);
      expect(lines[0]).toContain('check --token or AGENTCTL_TOKEN');
      expect(lines[0]).not.toContain(token);
      const pid = Number(/child=(\d+)/.exec(r.run.output())?.[1] ?? 0);
      if (pid) await waitFor(() => !alive(pid), 'the child to be stopped');
    }
    expect(agentOf(db, 'w')).toBeUndefined();
    await s.stop();

    const dir = tempDir();
    const localDb = join(dir, 'never.db');
    const usage = [
      [['run', '--server', 'http://127.0.0.1:9', '--', 'true'], /--server needs an agent token: --token TOKEN or AGENTCTL_TOKEN/],
      [['run', '--token', 'x', '--', 'true'], /--token goes with --server URL/],
      [['run', '--server', 'ftp://h', '--token', 'x', '--', 'true'], /use an http:\/\/ or https:\/\/ URL/],
      [['run', '--server', 'http://secret@h', '--token', 'x', '--', 'true'], /not in the URL/],
    ] as const;
    for (const [args, message] of usage) {
      const r = cli([...args], { db: localDb, env: { AGENTCTL_TOKEN: undefined } });
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toContain('secret');
    }
    expect(existsSync(localDb)).toBe(false);
  });

  it('over HTTPS, trusting the certificate through NODE_EXTRA_CA_CERTS; and on a port that fetch() refuses to use', async () => {
    const db = tempDb();
    const key = createToken(db, 'remote', 'agent');
    const dir = tempDir();
    const cert = join(dir, 'cert.pem');
    const tlsKey = join(dir, 'key.pem');
    const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', tlsKey, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1']);
    expect(made.status).toBe(0);
    const tls = startCli(['serve', '--listen', '127.0.0.1:0', '--tls-cert', cert, '--tls-key', tlsKey], { db });
    let base = '';
    await waitFor(() => (base = /serving (https:\/\/127\.0\.0\.1:\d+)/.exec(tls.errors())?.[1] ?? '') !== '', 'serve to print its https address', 60_000);
    const localDb = join(tempDir(), 'never.db');
    const run = startCli(['run', '--server', base, '--name', 'secure', '--interval', '100ms', '--', 'sh', '-c', 'echo child=$$; sleep 0.5; exit 5'], { db: localDb, env: { AGENTCTL_TOKEN: key, NODE_EXTRA_CA_CERTS: cert } });
    await childPid(run);
    expect((await exited(run)).code).toBe(5);
    expect(agentOf(db, 'secure')).toMatchObject({ state: 'offline', stateReason: 'exited with code 5' });
    expect(run.errors()).toBe('');
    tls.kill('SIGTERM');
    expect((await exited(tls)).code).toBe(0);

    // fetch() refuses "bad ports" such as 10080 and 6665-6669 (the Fetch standard's list); run --server does not.
    // (serve-helpers' serve() asks /healthz with fetch, so this one waits for the printed address only.)
    let odd: ReturnType<typeof startCli> | undefined;
    let oddBase = '';
    for (const port of [10080, 6665, 6666, 6667, 6668, 6669, 6000]) {
      const c = startCli(['serve', '--listen', `127.0.0.1:${port}`], { db });
      await waitFor(() => c.exitCode !== null || /serving http:/.test(c.errors()), 'serve to listen or exit', 60_000);
      if (c.exitCode === null) {
        odd = c;
        oddBase = `http://127.0.0.1:${port}`;
        break;
      }
    }
    if (!odd) throw new Error('none of the ports fetch refuses is free here');
    await expect(fetch(`${oddBase}/healthz`)).rejects.toThrow();
    const r = runRemote(oddBase, key, ['--name', 'odd-port', '--interval', '100ms'], 'echo child=$$; exit 0');
    expect((await exited(r.run)).code).toBe(0);
    expect(agentOf(db, 'odd-port')).toMatchObject({ state: 'offline', stateReason: 'exited with code 0' });
    expect(r.run.errors()).toBe('');
    odd.kill('SIGTERM');
    expect((await exited(odd)).code).toBe(0);
  });
});
