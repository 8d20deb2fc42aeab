import { spawnSync } from 'node:child_process';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, exited, startCli, tempDb, tempDir, waitFor } from '../helpers.js';
import { createToken } from './serve-helpers.js';

/** A self-signed certificate for 127.0.0.1, made by openssl in a temp dir. */
function selfSigned(): { dir: string; cert: string; key: string } {
  const dir = tempDir();
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl req exited ${r.status}: ${r.stderr}`);
  return { dir, cert, key };
}

/** One HTTPS request that trusts only `ca`. */
function get(url: string, ca: Buffer, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('serve --tls-cert/--tls-key', () => {
  it('serves HTTPS with the given certificate; the login link is https and the cookies are Secure', async () => {
    const db = tempDb();
    const tls = selfSigned();
    const ca = readFileSync(tls.cert);
    const s = startCli(['serve', '--listen', '127.0.0.1:0', '--tls-cert', tls.cert, '--tls-key', tls.key], { db });
    let base = '';
    await waitFor(() => {
      if (s.exitCode !== null) throw new Error(`serve exited ${s.exitCode}: ${s.errors()}`);
      base = /serving (https:\/\/127\.0\.0\.1:\d+)/.exec(s.errors())?.[1] ?? '';
      return base !== '';
    }, 'serve to print its https address', 60_000);
    const login = /log in once at (https:\/\/127\.0\.0\.1:\d+)\/login\?token=(\S+)/.exec(s.errors());
    expect(login?.[1]).toBe(base);
    expect((await get(`${base}/healthz`, ca)).status).toBe(200);
    const r = await get(`${base}/login?token=${login![2]}`, ca);
    expect(r.status).toBe(303);
    const cookies = r.headers['set-cookie'] as string[];
    expect(cookies).toHaveLength(2);
    for (const c of cookies) expect(c).toMatch(/; Secure(;|$)/);
    expect(cookies.find((c) => c.startsWith('agentctl_session='))).toMatch(/; HttpOnly/);
    // A client that does not trust the certificate is refused by TLS itself; plain HTTP gets no answer of ours.
    await expect(get(`${base}/healthz`, Buffer.from(''))).rejects.toThrow();
    const plain = await fetch(base.replace('https:', 'http:') + '/healthz').then((x) => x.status, () => 'refused');
    expect(plain).not.toBe(200);
    const viewer = createToken(db, 'v', 'viewer');
    expect((await get(`${base}/api/v1/agents`, ca, { Authorization: `Bearer ${viewer}` })).status).toBe(200);
    s.kill('SIGTERM');
    expect(await exited(s)).toEqual({ code: 0, signal: null });
  });

  it('plain HTTP cookies carry no Secure (a browser would drop them over http)', async () => {
    const db = tempDb();
    const s = startCli(['serve', '--listen', '127.0.0.1:0'], { db });
    await waitFor(() => /serving http:/.test(s.errors()), 'serve to print its address', 60_000);
    const [, base, token] = /log in once at (http:\/\/127\.0\.0\.1:\d+)\/login\?token=(\S+)/.exec(s.errors())!;
    const r = await fetch(`${base}/login?token=${token}`, { redirect: 'manual' });
    for (const c of r.headers.getSetCookie()) expect(c).not.toMatch(/Secure/);
    s.kill('SIGTERM');
    expect((await exited(s)).code).toBe(0);
  });

  it('both or neither (exit 2); a file that cannot be read or is no certificate: one line, exit 1', () => {
    const db = tempDb();
    const tls = selfSigned();
    const other = selfSigned();
    const missing = join(tls.dir, 'missing.pem');
    const junk = join(tls.dir, 'junk.pem');
    writeFileSync(junk, 'not a certificate\n');
    const unreadable = join(tls.dir, 'unreadable.pem');
    writeFileSync(unreadable, readFileSync(tls.key));
    chmodSync(unreadable, 0o000);
    const asRoot = process.getuid?.() === 0;
    const cases: [string[], number, RegExp][] = [
      [['--tls-cert', tls.cert], 2, /^agentctl: --tls-cert and --tls-key go together: give both \(PEM files\) or neither$/],
      [['--tls-key', tls.key], 2, /^agentctl: --tls-cert and --tls-key go together/],
      [['--tls-cert', missing, '--tls-key', tls.key], 1, /^agentctl: cannot read --tls-cert .*missing\.pem: no such file$/],
      [['--tls-cert', tls.cert, '--tls-key', tls.dir], 1, /^agentctl: cannot read --tls-key .*: it is a directory$/],
      [['--tls-cert', junk, '--tls-key', tls.key], 1, /^agentctl: cannot serve HTTPS with --tls-cert .*junk\.pem and --tls-key .*key\.pem: /],
      [['--tls-cert', tls.cert, '--tls-key', junk], 1, /^agentctl: cannot serve HTTPS with --tls-cert/],
      [['--tls-cert', tls.cert, '--tls-key', other.key], 1, /^agentctl: cannot serve HTTPS with --tls-cert .*: .*key values mismatch/],
      // root reads any file: the permission case applies to other users only.
      ...(asRoot ? [] : ([[['--tls-cert', tls.cert, '--tls-key', unreadable], 1, /^agentctl: cannot read --tls-key .*: permission denied$/]] as [string[], number, RegExp][])),
    ];
    for (const [args, code, line] of cases) {
      const r = cli(['serve', '--listen', '127.0.0.1:0', ...args], { db });
      expect({ args, code: r.code }).toEqual({ args, code });
      const lines = r.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(line);
    }
  });
});
