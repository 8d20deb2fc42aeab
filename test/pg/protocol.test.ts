// state_database.md's PostgreSQL section is the SQL agentctl's PostgreSQL protocol runs, and its examples work as
// they stand: through psycopg 3 and psql, against the run's real server.
import { describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import {
  PG_CLAIM_SQL,
  PG_CLOCK_SKEW_SQL,
  PG_COMPLETE_SQL,
  PG_EXPIRE_SQL,
  PG_GOODBYE_SQL,
  PG_HEARTBEAT_SQL,
  PG_SEND_SQL,
  PG_START_SQL,
  pgRegisterSql,
} from '../../src/store/postgres/protocol.js';
import { PG_SCHEMA_VERSION } from '../../src/store/postgres/migrate.js';
import { ROOT, cleanEnv, exited, start, tempDir, waitFor } from '../helpers.js';
import { paramsOf, postgresEngine } from './engines.js';
import { clusterUrl, freshDatabase, pythonWithPsycopg, query } from './pg-helpers.js';

const doc = readFileSync(join(ROOT, 'state_database.md'), 'utf8');
const pgSection = doc.slice(doc.indexOf('\n## PostgreSQL\n'));

/** The fenced block that follows `<!-- marker -->` in state_database.md. */
function block(marker: string): string {
  const at = doc.indexOf(`<!-- ${marker} -->`);
  if (at < 0) throw new Error(`state_database.md has no <!-- ${marker} --> block`);
  return /```[a-z]*\n([\s\S]*?)\n```/.exec(doc.slice(at))![1]!;
}

const DOC_REGISTER = pgRegisterSql({ intervalMs: 30_000, staleMultiplier: 3, offlineAfterMs: 300_000 });

function writeExample(marker: string, file: string): string {
  const path = join(tempDir(), file);
  writeFileSync(path, block(marker));
  return path;
}

type Agent = Record<string, unknown>;
const agentRow = async (url: string, name: string): Promise<Agent> =>
  (await query<Agent>(url, 'SELECT * FROM agents WHERE name = $1', [name]))[0]!;
const historyOf = async (url: string, name: string) =>
  (await query<Agent>(url, 'SELECT from_state, to_state, reason FROM events WHERE agent_name = $1 ORDER BY id', [name])).map((e) => `${e.from_state ?? 'null'}>${e.to_state}:${e.reason}`);

describe("state_database.md's PostgreSQL section is the SQL agentctl runs", () => {
  it('quotes every protocol statement verbatim', () => {
    expect(block('pg-protocol:register')).toBe(DOC_REGISTER);
    expect(block('pg-protocol:heartbeat')).toBe(PG_HEARTBEAT_SQL);
    expect(block('pg-protocol:goodbye')).toBe(PG_GOODBYE_SQL);
    expect(block('pg-protocol:start')).toBe(PG_START_SQL);
    expect(block('pg-protocol:send')).toBe(PG_SEND_SQL);
    expect(block('pg-protocol:expire')).toBe(PG_EXPIRE_SQL);
    expect(block('pg-protocol:claim')).toBe(PG_CLAIM_SQL);
    expect(block('pg-protocol:complete')).toBe(PG_COMPLETE_SQL);
    expect(block('pg-protocol:clock-skew')).toBe(PG_CLOCK_SKEW_SQL);
  });

  it('the psycopg and psql examples carry the same statements, and the version this build writes', () => {
    for (const sql of [DOC_REGISTER, PG_HEARTBEAT_SQL, PG_GOODBYE_SQL]) {
      expect(block('pg-example:python')).toContain(sql);
      expect(block('pg-example:psql')).toContain(sql);
    }
    expect(block('pg-example:python')).toContain(`SCHEMA = ${PG_SCHEMA_VERSION} `);
    expect(block('pg-example:psql')).toContain(`-le ${PG_SCHEMA_VERSION} ]`);
    expect(pgSection).toContain(`this build writes **${PG_SCHEMA_VERSION}** on PostgreSQL too`);
  });

  it('the statements hold nothing that would stop the :name → %(name)s conversion (no ::, %, or other colon)', () => {
    for (const sql of [DOC_REGISTER, PG_HEARTBEAT_SQL, PG_GOODBYE_SQL, PG_START_SQL, PG_SEND_SQL, PG_EXPIRE_SQL, PG_CLAIM_SQL, PG_COMPLETE_SQL, PG_CLOCK_SKEW_SQL]) {
      expect(sql).not.toMatch(/::|%/);
      expect(sql.replace(/(?<![:\w]):[a-z_]+/g, '')).not.toContain(':');
      // Every parameter is typed: a NULL alone tells PostgreSQL none.
      for (const p of paramsOf(sql)) expect({ p, cast: new RegExp(`CAST\\(:${p} AS `).test(sql) }).toEqual({ p, cast: true });
    }
  });
});

describe('foreign writers on PostgreSQL', () => {
  it('the Python agent (psycopg 3) as documented registers, beats and says goodbye, with events, by the server clock', async () => {
    const url = await freshDatabase();
    await (await postgresEngine(url)).close();
    const script = writeExample('pg-example:python', 'agent.py');
    const py = pythonWithPsycopg();
    const r = spawnSync(py, [script, 'py-worker', '3'], { encoding: 'utf8', env: cleanEnv({ AGENTCTL_DB: url, INTERVAL_SECONDS: '0.3' }) });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const a = await agentRow(url, 'py-worker');
    expect(a).toMatchObject({ state: 'offline', heartbeat_seq: 3, progress: 3, message: 'stopped', reported_status: 'ok', interval_ms: 300, host: expect.any(String), incarnation: 1 });
    expect(JSON.parse(String(a.metadata))).toEqual({ lang: 'python', beats: 3 });
    expect(a.pid_start_time).toBeGreaterThan(0);
    // Its own clock is this host's: no skew.
    expect(Math.abs(Number(a.clock_offset_ms))).toBeLessThan(1000);
    expect(await historyOf(url, 'py-worker')).toEqual(['null>initializing:registered', 'initializing>active:first heartbeat', 'active>offline:goodbye']);
    // Back again: a new process, a new incarnation, reactivated by its heartbeat.
    const again = spawnSync(py, [script, 'py-worker', '1'], { encoding: 'utf8', env: cleanEnv({ AGENTCTL_DB: url, INTERVAL_SECONDS: '0.3' }) });
    expect(again.stderr).toBe('');
    expect(await agentRow(url, 'py-worker')).toMatchObject({ incarnation: 2, heartbeat_seq: 4 });
  });

  it('the psql agent as documented registers, beats and says goodbye, with events', async () => {
    const url = await freshDatabase();
    await (await postgresEngine(url)).close();
    const script = writeExample('pg-example:psql', 'agent.sh');
    // Each statement is a psql process of its own: an interval of 1 s (stale after 3 s) leaves them time on a busy machine.
    const r = spawnSync('sh', [script], { encoding: 'utf8', env: cleanEnv({ DB: url, NAME: 'sh-backup', BEATS: '3', INTERVAL: '1' }) });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const a = await agentRow(url, 'sh-backup');
    expect(a).toMatchObject({ state: 'offline', group_name: 'shell', interval_ms: 1000, heartbeat_seq: 3, message: 'stopped', progress: 3, pid: null });
    expect(JSON.parse(String(a.metadata))).toEqual({ lang: 'sh' });
    expect(Math.abs(Number(a.clock_offset_ms))).toBeLessThan(1000);
    expect(await historyOf(url, 'sh-backup')).toEqual(['null>initializing:registered', 'initializing>active:first heartbeat', 'active>offline:goodbye']);
  });

  it('SIGTERM gives a goodbye at once from both examples, although the interval is 30 s', async () => {
    const url = await freshDatabase();
    await (await postgresEngine(url)).close();
    const py = start(pythonWithPsycopg(), [writeExample('pg-example:python', 'agent.py'), 'py-term'], { env: { AGENTCTL_DB: url, INTERVAL_SECONDS: '30' } });
    const sh = start('sh', [writeExample('pg-example:psql', 'agent.sh')], { env: { DB: url, NAME: 'sh-term', INTERVAL: '30' } });
    await waitFor(async () => (await query(url, `SELECT 1 FROM agents WHERE heartbeat_seq >= 1`)).length === 2, 'both agents to beat once', 30_000);
    py.kill('SIGTERM');
    sh.kill('SIGTERM');
    for (const c of [py, sh]) {
      const r = await exited(c);
      expect({ code: r.code, stderr: c.errors() }).toEqual({ code: 0, stderr: '' });
    }
    for (const name of ['py-term', 'sh-term']) expect((await historyOf(url, name)).at(-1)).toBe('active>offline:goodbye');
  });

  it('both examples refuse, in one line and writing nothing, a database that is not agentctl\'s, and never print a password', async () => {
    const url = await freshDatabase();
    const py = pythonWithPsycopg();
    const pyScript = writeExample('pg-example:python', 'agent.py');
    const shScript = writeExample('pg-example:psql', 'agent.sh');
    const p = spawnSync(py, [pyScript, 'nodb', '1'], { encoding: 'utf8', env: cleanEnv({ AGENTCTL_DB: url }) });
    expect(p.status).toBe(1);
    expect(p.stderr.trim().split('\n')).toHaveLength(1);
    expect(p.stderr).toMatch(/not an agentctl database \(run 'agentctl init --db URL' first\)/);
    const s = spawnSync('sh', [shScript], { encoding: 'utf8', env: cleanEnv({ DB: url, NAME: 'nodb', BEATS: '1' }) });
    expect(s.status).toBe(1);
    expect(s.stderr.trim().split('\n')).toHaveLength(1);
    expect(s.stderr).toMatch(/not an agentctl database/);
    expect(await query(url, `SELECT count(*)::int AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'`)).toEqual([{ n: 0 }]);

    const port = new URL(clusterUrl()).port;
    const password = process.env.AGENTCTL_TEST_PG_PASSWORD!;
    const wrong = `postgres://agentctl_pw:not-${password}@127.0.0.1:${port}/postgres`;
    const pw = spawnSync(py, [pyScript, 'x', '1'], { encoding: 'utf8', env: cleanEnv({ AGENTCTL_DB: wrong }) });
    expect(pw.status).toBe(1);
    expect(pw.stderr.trim().split('\n')).toHaveLength(1);
    expect(pw.stderr).toContain('password authentication failed');
    expect(pw.stderr).toContain('agentctl_pw:***@');
    expect(pw.stderr).not.toContain(password);
    const sw = spawnSync('sh', [shScript], { encoding: 'utf8', env: cleanEnv({ DB: wrong, NAME: 'x', BEATS: '1' }) });
    expect(sw.status).toBe(1);
    expect(sw.stderr.trim().split('\n')).toHaveLength(1);
    expect(sw.stderr).toContain('password authentication failed');
    expect(sw.stderr).not.toContain(password);
  });

  it('a psycopg writer claims and completes commands with the documented SQL; a stale token and an old incarnation are refused', async () => {
    const e = await postgresEngine();
    try {
      await e.step('register', { name: 'pycmd' });
      await e.step('heartbeat', { name: 'pycmd', status: 'ok' });
      await e.step('send', { name: 'pycmd', payload: 'echo one', deadline_at: null });
      await e.step('send', { name: 'pycmd', payload: 'echo two', deadline_at: null });
      const py = `
import json, re, sys, uuid
import psycopg
SQL = {k: re.sub(r"(?<![:\\w]):([a-z_]+)", r"%(\\1)s", v) for k, v in json.loads(sys.argv[2]).items()}
db = psycopg.connect(sys.argv[1], autocommit=True)
name = "pycmd"
inc = db.execute("SELECT incarnation FROM agents WHERE name = %s", (name,)).fetchone()[0]
db.execute(SQL["expire"], {"name": name})
tok = str(uuid.uuid4())
cmd = db.execute(SQL["claim"], {"name": name, "incarnation": inc, "token": tok}).fetchone()
out = {"claimed": cmd[1]}
done = {"id": cmd[0], "token": tok, "state": "completed", "result": cmd[1].split(" ", 1)[1], "error": None}
out["completed"] = db.execute(SQL["complete"], done).rowcount
out["again"] = db.execute(SQL["complete"], dict(done, state="failed", result=None, error="x")).rowcount
tok2 = str(uuid.uuid4())
cmd2 = db.execute(SQL["claim"], {"name": name, "incarnation": inc, "token": tok2}).fetchone()
db.execute(SQL["start"], {"name": name, "restarted": 0, "pid": None, "pid_start_time": None, "host": None, "boot_id": None,
                          "reason": "started", "evidence": None})
out["stale"] = db.execute(SQL["complete"], {"id": cmd2[0], "token": tok2, "state": "completed", "result": "late", "error": None}).rowcount
out["old_claim"] = db.execute(SQL["claim"], {"name": name, "incarnation": inc, "token": "t"}).fetchone()
db.execute(SQL["send"], {"name": name, "payload": "from python", "deadline_at": None})
print(json.dumps(out))
`;
      const sql = JSON.stringify({ expire: block('pg-protocol:expire'), claim: block('pg-protocol:claim'), complete: block('pg-protocol:complete'), start: block('pg-protocol:start'), send: block('pg-protocol:send') });
      const r = spawnSync(pythonWithPsycopg(), ['-c', py, e.url, sql], { encoding: 'utf8' });
      expect(r.stderr).toBe('');
      expect(JSON.parse(r.stdout)).toEqual({ claimed: 'echo one', completed: 1, again: 0, stale: 0, old_claim: null });
      expect((await e.all('SELECT payload, state, result, error FROM commands ORDER BY id')).map((c) => [c.payload, c.state, c.result ?? c.error])).toEqual([
        ['echo one', 'completed', 'one'],
        ['echo two', 'cancelled', 'agent restarted: claimed by incarnation 1, now 2'],
        ['from python', 'queued', null],
      ]);
      expect((await e.history('pycmd')).at(-1)).toBe('active>initializing:started');
    } finally {
      await e.close();
    }
  });

  it('two claimers at once never get the same command', async () => {
    const e = await postgresEngine();
    try {
      await e.step('register', { name: 'busy' });
      for (let i = 0; i < 40; i++) await e.step('send', { name: 'busy', payload: `job ${i}`, deadline_at: null });
      const claims = await Promise.all(Array.from({ length: 40 }, (_, i) => e.step('claim', { name: 'busy', incarnation: 1, token: `t${i}` })));
      const ids = claims.flatMap((c) => c.rows.map((r) => r.id));
      expect(new Set(ids).size).toBe(ids.length);
      expect(ids.length).toBeGreaterThan(0);
      expect(await e.all(`SELECT count(*) AS n FROM commands WHERE state = 'executing'`)).toEqual([{ n: ids.length }]);
    } finally {
      await e.close();
    }
  });
});
