import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import Database from 'better-sqlite3';
import { CLAIM_SQL, COMPLETE_SQL, EXPIRE_SQL, GOODBYE_SQL, HEARTBEAT_SQL, SEND_SQL, START_SQL, registerSql } from '../src/store/protocol.js';
import { cli, cliJson, cleanEnv, exited, historyOf, start, tempDb, tempDir, waitFor, withStore, ROOT } from './helpers.js';
import { SCHEMA_VERSION } from '../src/store/sqlite/migrations.js';

const doc = readFileSync(join(ROOT, 'state_database.md'), 'utf8');

/** The fenced block that follows `<!-- marker -->` in state_database.md. */
function block(marker: string): string {
  const at = doc.indexOf(`<!-- ${marker} -->`);
  if (at < 0) throw new Error(`state_database.md has no <!-- ${marker} --> block`);
  const m = /```[a-z]*\n([\s\S]*?)\n```/.exec(doc.slice(at));
  return m![1]!;
}

const DOC_REGISTER = registerSql({ intervalMs: 30_000, staleMultiplier: 3, offlineAfterMs: 300_000 });

describe('state_database.md is the SQL agentctl runs', () => {
  it('quotes the register, heartbeat and goodbye statements verbatim', () => {
    expect(block('protocol:register')).toBe(DOC_REGISTER);
    expect(block('protocol:heartbeat')).toBe(HEARTBEAT_SQL);
    expect(block('protocol:goodbye')).toBe(GOODBYE_SQL);
  });

  it('quotes the start statement and the command channel verbatim', () => {
    expect(block('protocol:start')).toBe(START_SQL);
    expect(block('protocol:send')).toBe(SEND_SQL);
    expect(block('protocol:expire')).toBe(EXPIRE_SQL);
    expect(block('protocol:claim')).toBe(CLAIM_SQL);
    expect(block('protocol:complete')).toBe(COMPLETE_SQL);
  });

  it('the Python and shell examples carry the same statements', () => {
    for (const sql of [DOC_REGISTER, HEARTBEAT_SQL, GOODBYE_SQL]) expect(block('example:python')).toContain(sql);
    for (const sql of [DOC_REGISTER, HEARTBEAT_SQL, GOODBYE_SQL]) expect(block('example:shell')).toContain(sql);
    expect(block('example:python')).toContain(`SCHEMA = ${SCHEMA_VERSION} `);
  });

  it('the examples set every per-connection pragma of the table, and retry with the delays agentctl uses', async () => {
    const { DEFAULTS } = await import('../src/config.js');
    const { Store } = await import('../src/store/store.js');
    for (const ex of ['example:python', 'example:shell']) {
      const code = block(ex);
      expect(code).toMatch(/PRAGMA busy_timeout = 5000|\.timeout 5000/);
      expect(code).toContain('PRAGMA synchronous = NORMAL');
      expect(code).toContain('PRAGMA foreign_keys = ON');
    }
    expect(DEFAULTS.busyTimeoutMs).toBe(5000);
    expect(block('example:python')).toContain(`TRIES, FIRST_DELAY, FACTOR = ${DEFAULTS.retryAttempts}, 0.050, ${DEFAULTS.backoffFactor}`);
    expect(block('example:shell')).toContain(`for delay in 0.050 ${(0.05 * DEFAULTS.backoffFactor).toFixed(3)} none`);
    const s = await (await import('../src/store/store.js')).openStore({ path: tempDb() });
    expect(s.retry).toEqual({ attempts: DEFAULTS.retryAttempts, factor: DEFAULTS.backoffFactor, baseDelayMs: 50 });
    expect(s).toBeInstanceOf(Store);
    await s.close();
  });

  it("the shell's timestamp rounds to the millisecond (never 1 ms low)", () => {
    const formula = /\.parameter set :now \\"(.*?)\\""/.exec(block('example:shell'))![1]!;
    expect(formula).toContain("julianday('now')");
    const db = new Database(':memory:');
    const at = (iso: string, f: string) => db.prepare(`SELECT ${f.replace("'now'", '?')} AS ms`).pluck().get(iso) as number;
    const truncating = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)";
    let low = 0;
    for (let ms = Date.UTC(2026, 11, 1, 8, 0, 0); ms < Date.UTC(2026, 11, 1, 8, 0, 2); ms++) {
      const iso = new Date(ms).toISOString().replace('T', ' ').replace('Z', '');
      expect(at(iso, formula)).toBe(ms);
      if (at(iso, truncating) !== ms) low++;
    }
    // The formula this document gave before: 1 ms low for a good part of all times.
    expect(low).toBeGreaterThan(100);
    db.close();
  });

  it("lists every parameter of each statement it documents (Goodbye's too)", () => {
    const section = (title: string) => doc.slice(doc.indexOf(`### ${title}`), doc.indexOf('<!-- protocol:', doc.indexOf(`### ${title}`)));
    for (const [title, sql] of [['Goodbye', GOODBYE_SQL], ['Heartbeat', HEARTBEAT_SQL]] as const) {
      const params = [...new Set([...sql.matchAll(/:([a-z_]+)/g)].map((m) => m[1]!))];
      for (const p of params) expect({ title, p, listed: section(title).includes(`:${p}`) }).toEqual({ title, p, listed: true });
    }
  });

  it('names the schema version this build writes', async () => {
    const { SCHEMA_VERSION } = await import('../src/store/sqlite/migrations.js');
    expect(doc).toContain(`Schema version: **${SCHEMA_VERSION}**`);
  });
});

describe('foreign writers', () => {
  it("a Python agent using the documented SQL through python3's sqlite3 shows up in status and history", () => {
    const db = tempDb();
    expect(cli(['init'], { db }).code).toBe(0);
    const script = join(tempDir(), 'agent.py');
    writeFileSync(script, block('example:python'));
    const r = spawnSync('python3', [script, 'py-worker', '3'], { encoding: 'utf8', env: cleanEnv({ AGENTCTL_DB: db, INTERVAL_SECONDS: '0.05' }) });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const a = cliJson(['status', '--all'], { db }).agents.find((x: any) => x.name === 'py-worker');
    expect(a).toMatchObject({ state: 'offline', heartbeatSeq: 3, progress: 3, message: 'stopped', reportedStatus: 'ok', metadata: { lang: 'python', beats: 3 }, intervalMs: 50, host: expect.any(String) });
    expect(a.pidStartTime).toBeGreaterThan(0);
    const history = cliJson(['history', 'py-worker'], { db }) as any[];
    expect(history.map((e) => `${e.fromState}>${e.toState}:${e.reason}`)).toEqual([
      'null>initializing:registered',
      'initializing>active:first heartbeat',
      'active>offline:goodbye',
    ]);
    // Back again from Python after the goodbye: a new process, a new incarnation, reactivated by its heartbeat.
    const again = spawnSync('python3', [script, 'py-worker', '1'], { encoding: 'utf8', env: cleanEnv({ AGENTCTL_DB: db, INTERVAL_SECONDS: '0.05' }) });
    expect(again.status).toBe(0);
    const b = cliJson(['status', 'py-worker'], { db }).agents[0];
    expect(b.incarnation).toBe(2);
    expect(b.heartbeatSeq).toBe(4);
  });

  it('a Python heartbeat after silence reactivates a stale agent with events', () => {
    const db = tempDb();
    cli(['register', 'slowpy', '--interval', '100ms'], { db });
    const py = `
import sqlite3, sys, time
HEARTBEAT = """${HEARTBEAT_SQL}"""
db = sqlite3.connect(sys.argv[1], timeout=5.0, isolation_level=None)
p = {"name": "slowpy", "status": None, "message": None, "metadata": None, "progress": None}
db.execute(HEARTBEAT, dict(p, now=int(time.time() * 1000)))
time.sleep(0.4)
print(db.execute(HEARTBEAT, dict(p, now=int(time.time() * 1000))).rowcount)
`;
    const r = spawnSync('python3', ['-c', py, db], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('1');
    const history = cliJson(['history', 'slowpy'], { db }) as any[];
    // The first beat may come late on a loaded machine (stuck initializing, then active); the last two are the point.
    expect(history.slice(-2).map((e) => `${e.fromState}>${e.toState}`)).toEqual(['active>stale', 'stale>active']);
    expect(history.at(-2).evidence).toMatchObject({ rule: 'clock', detected_by: 'heartbeat' });
    expect(history.at(-1).reason).toBe('heartbeat');
  });

  it('a shell agent using the documented SQL through the sqlite3 shell shows up in status and history', () => {
    const db = tempDb();
    expect(cli(['init'], { db }).code).toBe(0);
    const script = join(tempDir(), 'agent.sh');
    writeFileSync(script, block('example:shell'));
    const r = spawnSync('sh', [script], { encoding: 'utf8', env: cleanEnv({ DB: db, NAME: 'sh-backup', BEATS: '3', INTERVAL: '0.05' }) });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const a = cliJson(['status', '--all', 'sh-backup'], { db }).agents[0];
    expect(a).toMatchObject({ state: 'offline', group: 'shell', intervalMs: 50, heartbeatSeq: 3, message: 'stopped', progress: 3, metadata: { lang: 'sh' }, pid: null });
    expect(a.lastHeartbeatAt).toBeGreaterThan(Date.now() - 60_000);
    expect(historyOf(db, 'sh-backup').map((e) => `${e.fromState}>${e.toState}:${e.reason}`)).toEqual([
      'null>initializing:registered',
      'initializing>active:first heartbeat',
      'active>offline:goodbye',
    ]);
  });

  it('the Python agent says in one line that a missing database must be created first, and creates nothing', () => {
    const db = tempDb();
    const script = join(tempDir(), 'agent.py');
    writeFileSync(script, block('example:python'));
    const r = spawnSync('python3', [script, 'nodb', '1'], { encoding: 'utf8', env: cleanEnv({ AGENTCTL_DB: db, INTERVAL_SECONDS: '0.05' }) });
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/agentctl init --db /);
    expect(existsSync(db)).toBe(false);
  });

  it("a Python agent claims and completes commands with the documented SQL through python3's sqlite3; a stale token is refused", () => {
    const db = tempDb();
    expect(cli(['heartbeat', 'pycmd'], { db }).code).toBe(0);
    const first = cli(['send', 'pycmd', '--', 'echo', 'one'], { db }).stdout.trim();
    const second = cli(['send', 'pycmd', '--', 'echo', 'two'], { db }).stdout.trim();
    const py = `
import json, sqlite3, sys, time, uuid
SQL = json.loads(sys.argv[2])
db = sqlite3.connect(sys.argv[1], timeout=5.0, isolation_level=None)
now = lambda: int(time.time() * 1000)
name = "pycmd"
inc = db.execute("SELECT incarnation FROM agents WHERE name = ?", (name,)).fetchone()[0]
db.execute(SQL["expire"], {"name": name, "now": now()})
tok = str(uuid.uuid4())
cmd = db.execute(SQL["claim"], {"name": name, "incarnation": inc, "token": tok, "now": now()}).fetchone()
out = {"claimed": cmd[1]}
done = {"id": cmd[0], "token": tok, "state": "completed", "result": cmd[1].split(" ", 1)[1], "error": None, "now": now()}
out["completed"] = db.execute(SQL["complete"], done).rowcount
out["again"] = db.execute(SQL["complete"], dict(done, state="failed", result=None, error="x")).rowcount
tok2 = str(uuid.uuid4())
cmd2 = db.execute(SQL["claim"], {"name": name, "incarnation": inc, "token": tok2, "now": now()}).fetchone()
# the same process starts again: a new incarnation; the command it was executing is cancelled
db.execute(SQL["start"], {"name": name, "restarted": 0, "pid": None, "pid_start_time": None, "host": None, "boot_id": None,
                          "reason": "started", "evidence": None, "now": now()})
out["stale"] = db.execute(SQL["complete"], {"id": cmd2[0], "token": tok2, "state": "completed", "result": "late", "error": None, "now": now()}).rowcount
out["old_claim"] = db.execute(SQL["claim"], {"name": name, "incarnation": inc, "token": "t", "now": now()}).fetchone()
db.execute(SQL["send"], {"name": name, "payload": "from python", "deadline_at": None, "now": now()})
print(json.dumps(out))
`;
    const sql = JSON.stringify({ expire: block('protocol:expire'), claim: block('protocol:claim'), complete: block('protocol:complete'), start: block('protocol:start'), send: block('protocol:send') });
    const r = spawnSync('python3', ['-c', py, db, sql], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ claimed: 'echo one', completed: 1, again: 0, stale: 0, old_claim: null });
    const list = cliJson(['commands', 'pycmd'], { db }) as any[];
    expect(list.map((c) => [String(c.id), c.state, c.result ?? c.error])).toEqual([
      [expect.any(String), 'queued', null],
      [second, 'cancelled', 'agent restarted: claimed by incarnation 1, now 2'],
      [first, 'completed', 'one'],
    ]);
    const history = cliJson(['history', 'pycmd'], { db }) as any[];
    expect(history.at(-1)).toMatchObject({ fromState: 'active', toState: 'initializing', reason: 'started', evidence: { rule: 'start' } });
  });
});

describe('the two example agents as documented, eight of each at once', () => {
  /** Writes both examples to files and starts `n` of each with `env`; every process is killed after the test. */
  function fleet(db: string, n: number, env: Record<string, string>, beats: number) {
    const dir = tempDir();
    writeFileSync(join(dir, 'agent.py'), block('example:python'));
    writeFileSync(join(dir, 'agent.sh'), block('example:shell'));
    const agents = [];
    for (let i = 0; i < n; i++) {
      agents.push({ name: `py-${i}`, child: start('python3', [join(dir, 'agent.py'), `py-${i}`, String(beats)], { env: { AGENTCTL_DB: db, INTERVAL_SECONDS: env.interval! } }) });
      agents.push({ name: `sh-${i}`, child: start('sh', [join(dir, 'agent.sh')], { env: { DB: db, NAME: `sh-${i}`, BEATS: String(beats), INTERVAL: env.interval! } }) });
    }
    return agents;
  }
  const seqOf = async (db: string) => await withStore(db, (s) => Object.fromEntries((s.db.prepare('SELECT name, heartbeat_seq FROM agents').all() as { name: string; heartbeat_seq: number }[]).map((r) => [r.name, r.heartbeat_seq])), 'existing');

  it('every beat of sixteen writers commits, with no line on stderr', async () => {
    const db = tempDb();
    expect(cli(['init'], { db }).code).toBe(0);
    const beats = 25;
    const agents = fleet(db, 8, { interval: '0.01' }, beats);
    for (const a of agents) {
      const r = await exited(a.child);
      expect({ name: a.name, code: r.code, stderr: a.child.errors() }).toEqual({ name: a.name, code: 0, stderr: '' });
    }
    const seq = await seqOf(db);
    for (const a of agents) expect([a.name, seq[a.name]]).toEqual([a.name, beats]);
    for (const a of agents) expect(historyOf(db, a.name).at(-1)).toMatchObject({ toState: 'offline', reason: 'goodbye' });
  });

  it('SIGTERM gives a goodbye within a second, although the interval is 30 s', async () => {
    const db = tempDb();
    expect(cli(['init'], { db }).code).toBe(0);
    const agents = fleet(db, 8, { interval: '30' }, 0);
    await waitFor(async () => {
      const seq = await seqOf(db);
      return agents.every((a) => (seq[a.name] ?? 0) >= 1);
    }, 'every agent to beat once', 60_000);
    const signalled: Record<string, number> = {};
    for (const a of agents) {
      signalled[a.name] = Date.now();
      a.child.kill('SIGTERM');
    }
    for (const a of agents) {
      const r = await exited(a.child);
      expect({ name: a.name, code: r.code, stderr: a.child.errors() }).toEqual({ name: a.name, code: 0, stderr: '' });
    }
    for (const a of agents) {
      const bye = historyOf(db, a.name).at(-1);
      expect(bye).toMatchObject({ toState: 'offline', reason: 'goodbye' });
      // From the signal to the goodbye's own time: the agent did not wait out its 30 s interval.
      expect({ name: a.name, ms: bye.at - signalled[a.name]! < 1000 }).toEqual({ name: a.name, ms: true });
    }
  });
});
