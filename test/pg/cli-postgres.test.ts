// The CLI on a PostgreSQL URL: the same commands, connection failures in one line, the URL's password never
// printed, the file-only tools refusing in one line, db-check's report, the host clock warning, the lease.
import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config.js';
import { withAdvisoryLease, advisoryKey, ADVISORY_CLASS } from '../../src/store/postgres/lease.js';
import { agentRecord, cli, cliJson, fixture, jsonLines, start, startCli, tempDir, trackAgent, waitFor } from '../helpers.js';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { clusterUrl, freshDatabase, query, withDatabase } from './pg-helpers.js';
import { PASSWORD_ROLE } from './cluster.js';
import { existsSync, readdirSync } from 'node:fs';
import { freePort } from '../receiver.js';

/** `url` as the password role, with `password`. */
function asPasswordRole(url: string, password: string): string {
  const u = new URL(url);
  u.username = PASSWORD_ROLE;
  u.password = password;
  return u.toString();
}

describe('agentctl --db postgres://…', () => {
  it('heartbeat, status, check, history, set-status, send, commands, cleanup and monitor --once work on a database server', async () => {
    const db = await freshDatabase();
    expect(cli(['heartbeat', 'w1', '--message', 'hello'], { db }).code).toBe(0);
    expect(cliJson(['status'], { db }).agents.map((a: any) => [a.name, a.state])).toEqual([['w1', 'active']]);
    expect(cli(['check'], { db })).toMatchObject({ code: 0 });
    expect(cliJson(['history', 'w1'], { db }).map((e: any) => e.toState)).toEqual(['initializing', 'active']);
    expect(cliJson(['history', 'w1', '--limit', '1'], { db }).map((e: any) => e.toState)).toEqual(['active']);
    expect(cli(['set-status', 'w1', 'maintenance', '--for', '5m'], { db }).code).toBe(0);
    expect(cli(['set-status', 'w1', 'available'], { db }).code).toBe(0);
    expect(cli(['send', 'w1', '--queue', '--', 'hi'], { db }).code).toBe(0);
    expect(cliJson(['commands'], { db }).map((c: any) => c.state)).toEqual(['queued']);
    const m = cli(['monitor', '--once'], { db });
    expect(m.code, m.stderr).toBe(0);
    const c = cli(['cleanup', '--events-older-than', '1d'], { db });
    expect(c.code, c.stderr).toBe(0);
    expect(cli(['init'], { db }).stdout).toMatch(/schema version 7 \(current\)/);
  });

  it('an unreachable server, refused credentials and a missing database: one line, exit 1, no password printed', async () => {
    const password = process.env.AGENTCTL_TEST_PG_PASSWORD!;
    const db = await freshDatabase();
    const port = await freePort();
    const cases = [
      { db: `postgres://someone:hunter2-secret@127.0.0.1:${port}/x`, says: /cannot reach|unreachable|connect/i },
      { db: asPasswordRole(db, 'hunter2-secret'), says: /password|authentication|credentials/i },
      { db: withDatabase(asPasswordRole(clusterUrl(), password), 'no_such_db'), says: /does not exist|missing/i },
    ];
    for (const k of cases) {
      const r = cli(['status'], { db: k.db, env: { PGCONNECT_TIMEOUT: '5' } });
      expect({ db: k.db, code: r.code }).toEqual({ db: k.db, code: 1 });
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(k.says);
      expect(r.stderr + r.stdout).not.toMatch(/hunter2-secret/);
      expect(r.stderr + r.stdout).not.toContain(password);
    }
    // The password of a URL that works is redacted in what the CLI prints about it.
    const good = asPasswordRole(db, password);
    expect(cli(['init'], { db }).code).toBe(0);
    await query(db, `GRANT ALL ON ALL TABLES IN SCHEMA public TO ${PASSWORD_ROLE}; GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO ${PASSWORD_ROLE}`);
    const hb = cli(['heartbeat', 'w'], { db: good });
    expect(hb.code, hb.stderr).toBe(0);
    const status = cli(['status', '--json'], { db: good });
    expect(JSON.parse(status.stdout).database).toBe(asPasswordRole(db, '***'));
    const check = cli(['db-check'], { db: good });
    expect(check.stdout + check.stderr).not.toContain(password);
  });

  it('another application\'s database is refused with exit 4 and left as it was', async () => {
    const db = await freshDatabase();
    await query(db, 'CREATE TABLE invoices (id int)');
    const r = cli(['heartbeat', 'w'], { db });
    expect(r.code).toBe(4);
    expect(await query(db, "SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'public'")).toEqual([{ n: 1 }]);
  });

  it('a URL is not a path: nothing is created beside it, no lock file, no ~ expansion', async () => {
    const cwd = tempDir();
    const db = await freshDatabase();
    expect(resolveConfig({ db }, {}, cwd).dbPath).toBe(db);
    expect(resolveConfig({}, { AGENTCTL_DB: `  ${db} ` }, cwd)).toMatchObject({ dbPath: db, dbIsUrl: true });
    expect(cli(['heartbeat', 'w'], { db, cwd }).code).toBe(0);
    expect(cli(['monitor', '--once'], { db, cwd }).code).toBe(0);
    expect(cli(['cleanup', '--stale'], { db, cwd }).code).toBe(0);
    expect(readdirSync(cwd)).toEqual([]);
    expect(existsSync(`${db}.monitor.lock`)).toBe(false);
  });

  it('the file-only tools say so in one line: db-check --fix exits 2', async () => {
    const db = await freshDatabase();
    cli(['heartbeat', 'w'], { db });
    const r = cli(['db-check', '--fix'], { db });
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/SQLite database files; on PostgreSQL/);
  });

  it('db-check reports the schema version, tables, connections, clock skew, the health loop and the locks; status and metrics report a skewed host', async () => {
    const db = await freshDatabase();
    cli(['heartbeat', 'w1'], { db });
    cli(['heartbeat', 'w2'], { db });
    cli(['monitor', '--once'], { db });
    const ok = cli(['db-check', '--json'], { db });
    expect(ok.code, ok.stdout).toBe(0);
    const d = JSON.parse(ok.stdout);
    expect(d.postgres).toMatchObject({ schemaVersion: 7, buildSchemaVersion: 7, clockSkew: [] });
    expect(d.postgres.tables.map((t: any) => t.table)).toContain('agents');
    expect(d.postgres.connections.length).toBeGreaterThan(0);
    expect(d.postgres.healthLoops).toHaveLength(1);
    expect(cli(['status'], { db }).stderr).not.toMatch(/clock of host/);
    // A heartbeat from a host whose clock is 3 s ahead of the server's.
    await query(db, "UPDATE agents SET host = 'far-host', clock_offset_ms = 3000 WHERE name = 'w2'");
    const skewed = cli(['db-check'], { db });
    expect(skewed.code).toBe(1);
    expect(skewed.stdout).toMatch(/FAIL {2}clock skew: host far-host is off by 3s/);
    expect(cli(['status'], { db }).stderr).toMatch(/warning: the clock of host far-host is off by 3s \(1 agent\)/);
    expect(cli(['metrics'], { db }).stdout).toMatch(/^agentctl_host_clock_offset_seconds\{host="far-host"\} 3$/m);
  });

  it('agentctl heartbeat on a database server takes the short path (the full CLI and commander are not loaded) once its tables exist', async () => {
    const db = await freshDatabase();
    const dir = tempDir();
    const preload = join(dir, 'loaded.cjs');
    const out = join(dir, 'loaded.json');
    // At exit: the CommonJS modules loaded.
    writeFileSync(preload, `process.on('exit', () => require('fs').writeFileSync(${JSON.stringify(out)}, JSON.stringify(Object.keys(require.cache))));\n`);
    const env = { NODE_OPTIONS: `--require ${preload}` };
    const commander = () => (JSON.parse(readFileSync(out, 'utf8')) as string[]).filter((f) => /[\\/]commander[\\/]/.test(f));
    // A new database: the full CLI creates the tables, as it does for a new SQLite file.
    expect(cli(['heartbeat', 'new-one'], { db, env }).code).toBe(0);
    expect(commander()).not.toEqual([]);
    // Then the short path: it registers a new agent and beats a known one.
    for (const name of ['other', 'new-one']) {
      const r = cli(['heartbeat', name, '--message', 'hi'], { db, env });
      expect(r.code).toBe(0);
      expect(commander()).toEqual([]);
    }
    expect(agentRecord(db, 'new-one')).toMatchObject({ heartbeatSeq: 2, message: 'hi' });
    expect(agentRecord(db, 'other')).toMatchObject({ heartbeatSeq: 1, message: 'hi' });
  });

  it('agentctl heartbeat sends the writer\'s clock: the offset from the server\'s is recorded', async () => {
    const db = await freshDatabase();
    cli(['heartbeat', 'w'], { db });
    const [row] = await query<{ writer_clock_at: number | null; clock_offset_ms: number | null }>(db, "SELECT writer_clock_at, clock_offset_ms FROM agents WHERE name = 'w'");
    expect(row!.writer_clock_at).toBeGreaterThan(0);
    expect(Math.abs(row!.clock_offset_ms!)).toBeLessThan(1000);
  });

  it('the lease is an advisory lock on a dedicated connection: a second holder is refused, and losing the connection drops it', async () => {
    const db = await freshDatabase();
    let next: unknown;
    const first = await withAdvisoryLease(db, { name: 'monitor' }, async (handle) => {
      const locks = await query(db, "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 AND objid = $2", [ADVISORY_CLASS, advisoryKey('monitor')]);
      expect(locks).toHaveLength(1);
      const refused = await withAdvisoryLease(db, { name: 'monitor' }, async () => 'ran').catch((e: unknown) => e);
      expect(refused).toMatchObject({ code: 'E_LOCKED' });
      await query(db, 'SELECT pg_terminate_backend($1)', [(locks[0] as { pid: number }).pid]);
      await new Promise<void>((resolve) => (handle.signal.aborted ? resolve() : handle.signal.addEventListener('abort', () => resolve())));
      next = await withAdvisoryLease(db, { name: 'monitor' }, async () => 'taken over');
      return 'done';
    }).catch((e: unknown) => e);
    // The first holder's result is refused (its lease was lost with its connection); another one took the lease.
    expect(first).toMatchObject({ code: 'E_LOCK_COMPROMISED' });
    expect(next).toBe('taken over');
  });

  it('restart starts the new agentctl run with the URL in its environment: its command line shows no password', async () => {
    const password = process.env.AGENTCTL_TEST_PG_PASSWORD!;
    const base = await freshDatabase();
    expect(cli(['init'], { db: base }).code).toBe(0);
    await query(base, `GRANT ALL ON ALL TABLES IN SCHEMA public TO ${PASSWORD_ROLE}; GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO ${PASSWORD_ROLE}`);
    const db = asPasswordRole(base, password);
    const logs = tempDir();
    const env = { AGENTCTL_LOG_DIR: logs };
    const run = startCli(['run', '--name', 'w', '--interval', '100ms', '--', process.execPath, '-e', 'setInterval(() => {}, 1000)'], { db, env });
    await waitFor(() => agentRecord(base, 'w')?.state === 'active', 'the agent to beat');
    const before = trackAgent(base, 'w')!;
    if (process.getuid?.() === 0) {
      // As root, a database anyone with its credentials writes is shared: refused in one line, without the password.
      const refused = cli(['restart', 'w', '--grace', '300ms'], { db, env });
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/refusing to .* as root for database postgres:\/\/agentctl_pw:\*\*\*@.*run it as the agents' own user instead of root/);
      expect(refused.stderr).not.toContain(password);
    }
    const r = cli(['restart', 'w', '--grace', '300ms'], { db, env: { ...env, AGENTCTL_ALLOW_SHARED_DB: '1' } });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout + r.stderr).not.toContain(password);
    await waitFor(() => (agentRecord(base, 'w')?.incarnation ?? 0) > before.incarnation && agentRecord(base, 'w')?.state === 'active', 'the new incarnation to beat');
    const after = trackAgent(base, 'w')!;
    const cmdline = readFileSync(`/proc/${after.supervisorPid}/cmdline`, 'utf8').split('\0');
    expect(cmdline).toContain('run');
    expect(cmdline.join(' ')).not.toContain(password);
    expect(cmdline).not.toContain('--db');
    run.kill('SIGTERM');
  });

  it('a host whose clock is off judges by the server\'s: its status shows the same states, and its heartbeats are reported skewed', async () => {
    const db = await freshDatabase();
    // NODE_OPTIONS reaches the child; AGENTCTL_* would be stripped from it by cleanEnv.
    const skewed = (ms: number) => ({ NODE_OPTIONS: `--require ${fixture('skewed-clock.cjs')}`, AGENTCTL_TEST_CLOCK_SKEW_MS: String(ms) });
    expect(cli(['heartbeat', 'w'], { db }).code).toBe(0);
    // Ten minutes ahead: by its own clock the agent would be long offline (its threshold is 5 minutes).
    const ahead = cliJson(['status', 'w'], { db, env: skewed(600_000) }).agents[0];
    expect(ahead.state).toBe('active');
    expect(cli(['check'], { db, env: skewed(600_000) }).code).toBe(0);
    // A heartbeat written from a host 2 minutes behind: stamped by the server, its writer's clock recorded.
    expect(cli(['heartbeat', 'w2'], { db, env: skewed(-120_000) }).code).toBe(0);
    expect(cliJson(['status', 'w2'], { db }).agents[0].state).toBe('active');
    const [row] = await query<{ clock_offset_ms: number }>(db, "SELECT clock_offset_ms FROM agents WHERE name = 'w2'");
    expect(row!.clock_offset_ms).toBeLessThan(-110_000);
  });

  it('a library agent whose connections the server drops keeps beating: the pool reconnects, the process lives on', async () => {
    const db = await freshDatabase();
    const agent = start(process.execPath, [fixture('agent-beat.mjs'), db, 'w', '100']);
    await waitFor(() => jsonLines(agent).some((e) => e.event === 'started'), 'the agent to start');
    const seq = () => agentRecord(db, 'w')?.heartbeatSeq ?? 0;
    await waitFor(() => seq() >= 3, 'a few beats');
    // The database server ends every session of this agent (as a server restart or a network cut would).
    const ended = await query(db, "SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = 'agentctl'");
    expect(ended.length).toBeGreaterThan(0);
    const after = seq();
    await waitFor(() => seq() >= after + 3, 'beats after the connections were dropped');
    expect(agent.exitCode).toBeNull();
    expect(agentRecord(db, 'w')!.state).toBe('active');
  });
});
