import { describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cli, cliJson, exited, startCli, tempDir, waitFor } from '../helpers.js';

// Text a hostile writer of the database (or a careless caller) can put where agentctl prints it: an escape sequence
// that clears the screen, one that retitles the terminal (ended by BEL), a newline that starts a forged line, a
// right-to-left override that reverses what follows, and a C1 control (NEL, a newline to some terminals).
const EVIL = '\x1b[2J\x1b]0;pwned\x07FAKE OK\nFORGED line \u202Eesrever\u0085end';
const EVIL_NAME = 'evil\x1b[2J\x1b]0;pwned\x07\nFORGED\u202Ex\u0085y';
const EVIL_GROUP = 'grp\x1b[31m\nFORGED\u202E';

/** What must never reach a terminal or a log file from agent text: ESC, BEL, C1 controls, the bidi override. */
// eslint-disable-next-line no-control-regex
const RAW = /[\x1b\x07\x80-\x9f\u202e]/;

/** Asserts that `text` holds no raw control from the hostile strings and no line that a newline in them started. */
function expectClean(text: string, what: string): void {
  expect(RAW.test(text), `${what} holds a raw control character: ${JSON.stringify(text)}`).toBe(false);
  expect(text, `${what} holds a forged line: ${JSON.stringify(text)}`).not.toMatch(/^FORGED/m);
}

/** A foreign writer: better-sqlite3 on the file, with the CHECK constraints off (any writer may do that). */
function foreign(db: string, fn: (raw: Database.Database) => void): void {
  const raw = new Database(db);
  try {
    raw.pragma('busy_timeout = 10000');
    raw.pragma('ignore_check_constraints = ON');
    fn(raw);
  } finally {
    raw.close();
  }
}

/**
 * A database with one agent whose name, group, message, reason and launch command are hostile, last seen an hour
 * ago with a 1 s interval: overdue. Registered by the CLI, then rewritten by a foreign writer.
 */
function hostileFleet(opts: { lastBeat?: number } = {}): { db: string; dir: string } {
  const dir = tempDir();
  const db = join(dir, 'agents.db');
  expect(cli(['register', 'victim', '--interval', '1s', '--', '/bin/true'], { db }).code).toBe(0);
  const t = opts.lastBeat ?? Date.now() - 3_600_000;
  foreign(db, (raw) => {
    raw
      .prepare(
        `UPDATE agents SET name = ?, group_name = ?, message = ?, state = 'active', state_since = ?, state_reason = ?,
           launch_argv = ?, last_heartbeat_at = ?, started_at = ?, heartbeat_seq = 1, pid = NULL WHERE name = 'victim'`,
      )
      .run(EVIL_NAME, EVIL_GROUP, EVIL, t, EVIL, JSON.stringify(['/bin/echo', EVIL]), t, t - 1000);
  });
  return { db, dir };
}

describe('fault: agent text is shown escaped to people, exact in JSON', () => {
  it('commands: a hostile agent name, payload, result and error are escaped in the table, exact with --json', async () => {
    const { db } = await hostileFleet();
    foreign(db, (raw) => {
      const id = raw.prepare('SELECT id FROM agents WHERE name = ?').pluck().get(EVIL_NAME) as number;
      const now = Date.now();
      raw.prepare("INSERT INTO commands (agent_id, payload, state, created_at, finished_at, result) VALUES (?, ?, 'completed', ?, ?, ?)").run(id, EVIL, now, now, EVIL);
      raw.prepare("INSERT INTO commands (agent_id, payload, state, created_at, finished_at, error) VALUES (?, ?, 'failed', ?, ?, ?)").run(id, EVIL, now, now, EVIL);
    });
    const r = cli(['commands'], { db });
    expect(r.code, r.stderr).toBe(0);
    expectClean(r.stdout, 'commands');
    expectClean(r.stderr, 'commands (stderr)');
    expect(r.stdout.trimEnd().split('\n')).toHaveLength(3); // the header and one line per command
    expect(r.stdout).toContain('evil\\x1b[2J\\x1b]0;pwned\\x07');
    const list = cliJson<any[]>(['commands'], { db });
    expect(list.map((c) => c.agentName)).toEqual([EVIL_NAME, EVIL_NAME]);
    expect(list.map((c) => c.payload)).toEqual([EVIL, EVIL]);
    expect(list.map((c) => c.result ?? c.error)).toEqual([EVIL, EVIL]);
  });

  it('db-check: a hostile name in a finding is escaped in the report, exact with --json', async () => {
    const { db } = await hostileFleet({ lastBeat: Date.now() + 3_600_000 }); // a heartbeat an hour in the future: clock skew
    const r = cli(['db-check'], { db });
    expect(r.code, r.stderr).toBe(1);
    expectClean(r.stdout, 'db-check');
    expectClean(r.stderr, 'db-check (stderr)');
    expect(r.stdout).toMatch(/clock skew: 1 agent\(s\) with heartbeats in the future: evil\\x1b\[2J/);
    const j = JSON.parse(cli(['db-check', '--json'], { db }).stdout);
    expect(j.findings.find((f: any) => f.check === 'clock skew').detail).toContain(EVIL_NAME);
  });

  it('monitor --once: the health loop writes the hostile name escaped to its log file and to stderr, one line per entry', async () => {
    const { db, dir } = await hostileFleet();
    const logs = join(dir, 'logs');
    const r = cli(['monitor', '--once', '--log-dir', logs], { db });
    expect(r.code, r.stderr).toBe(0);
    expectClean(r.stderr, 'monitor stderr');
    expect(r.stderr).toContain('evil\\x1b[2J\\x1b]0;pwned\\x07\\x0aFORGED\\u202ex\\x85y');
    const files = readdirSync(logs).filter((f) => f.startsWith('health-'));
    expect(files).toHaveLength(1);
    const log = readFileSync(join(logs, files[0]!), 'utf8');
    expectClean(log, 'monitor log file');
    expect(log).toContain('evil\\x1b[2J');
    // Every line of the log is one entry: a timestamp, a level, a message.
    for (const line of log.trimEnd().split('\n')) expect(line).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z (DEBUG|INFO |WARN |ERROR) /);
    // The conviction itself is stored under the exact name.
    const status = cliJson(['status'], { db });
    expect(status.agents.map((a: any) => a.name)).toEqual([EVIL_NAME]);
  });

  it('restart --dry-run: a hostile name and launch command are escaped in the plan, exact with --json', async () => {
    const { db } = await hostileFleet();
    const r = cli(['restart', '--all', '--dry-run'], { db });
    expect(r.code, r.stderr).toBe(0);
    expectClean(r.stdout, 'restart --dry-run');
    expectClean(r.stderr, 'restart --dry-run (stderr)');
    expect(r.stdout).toContain('would restart evil\\x1b[2J');
    expect(r.stdout).toContain('/bin/echo \\x1b[2J\\x1b]0;pwned\\x07FAKE OK\\x0aFORGED');
    const plan = cliJson<any[]>(['restart', '--all', '--dry-run'], { db });
    expect(plan.map((p) => p.name)).toEqual([EVIL_NAME]);
    expect(plan[0].steps.join('\n')).toContain(`/bin/echo ${EVIL}`);
  });

  it('cleanup: hostile names are escaped in the summary (convict and purge), exact with --json', async () => {
    const { db } = await hostileFleet();
    const dry = cli(['cleanup', '--stale', '--dry-run'], { db });
    expect(dry.code, dry.stderr).toBe(0);
    expectClean(dry.stdout, 'cleanup --stale --dry-run');
    expect(dry.stdout).toMatch(/^would convict 1 agent \(evil\\x1b\[2J.* → (stale|offline)\)$/m);
    expect(cliJson(['cleanup', '--stale', '--dry-run'], { db }).convicted.map((c: any) => c.agent)).toEqual([EVIL_NAME]);
    const convicted = cli(['cleanup', '--stale'], { db });
    expect(convicted.code, convicted.stderr).toBe(0);
    expectClean(convicted.stdout, 'cleanup --stale');
    expectClean(convicted.stderr, 'cleanup --stale (stderr)');
    foreign(db, (raw) => raw.prepare("UPDATE agents SET state = 'offline', state_since = ?, last_heartbeat_at = ?, updated_at = ?").run(Date.now() - 3_600_000, Date.now() - 3_600_000, Date.now() - 3_600_000));
    const dryPurge = cliJson(['cleanup', '--purge-older-than', '1s', '--dry-run'], { db });
    expect(dryPurge.purged.agents).toEqual([EVIL_NAME]);
    const purged = cli(['cleanup', '--purge-older-than', '1s'], { db });
    expect(purged.code, purged.stderr).toBe(0);
    expectClean(purged.stdout, 'cleanup --purge-older-than');
    expect(purged.stdout).toMatch(/^purged 1 agent \(evil\\x1b\[2J/m);
  });

  it('send --wait: a result and an error written by the agent are shown escaped, exact with --json', async () => {
    const dir = tempDir();
    const db = join(dir, 'agents.db');
    expect(cli(['heartbeat', 'worker', '--interval', '1h'], { db }).code).toBe(0);
    for (const outcome of [
      { state: 'completed', column: 'result', stream: 'stdout' },
      { state: 'failed', column: 'error', stream: 'stderr' },
    ] as const) {
      const send = startCli(['send', 'worker', '--wait', '--timeout', '10m', '--', 'ping'], { db });
      let id: number | undefined;
      await waitFor(() => {
        foreign(db, (raw) => (id = raw.prepare("SELECT id FROM commands WHERE state = 'queued' ORDER BY id DESC LIMIT 1").pluck().get() as number | undefined));
        return id !== undefined;
      }, 'the command to be queued', 60_000);
      foreign(db, (raw) => raw.prepare(`UPDATE commands SET state = ?, ${outcome.column} = ?, finished_at = ? WHERE id = ?`).run(outcome.state, EVIL, Date.now(), id));
      const { code } = await exited(send);
      expect(code, send.errors()).toBe(outcome.state === 'completed' ? 0 : 1);
      expectClean(send.output(), `send --wait (${outcome.state}) stdout`);
      expectClean(send.errors(), `send --wait (${outcome.state}) stderr`);
      expect(outcome.stream === 'stdout' ? send.output() : send.errors()).toContain('\\x1b[2J\\x1b]0;pwned\\x07FAKE OK\\x0aFORGED line \\u202eesrever\\x85end');
      const j = cliJson(['commands', 'worker', '--limit', '1'], { db });
      expect(j[0][outcome.column]).toBe(EVIL);
    }
  });

  it('a usage error quotes a hostile agent name escaped, in one line', () => {
    const db = join(tempDir(), 'agents.db');
    const bad = cli(['heartbeat', EVIL_NAME], { db });
    expect(bad.code).toBe(2);
    expectClean(bad.stderr, 'heartbeat with a hostile name');
    expect(bad.stderr.trimEnd().split('\n')).toHaveLength(1);
    // The name is quoted as JSON (which escapes C0 controls but not C1 or the bidi override), then made safe.
    expect(bad.stderr).toMatch(/^agentctl: invalid agent name "evil\\u001b\[2J.*FORGED\\u202ex\\x85y"/);
  });

  it("commander's error quotes a hostile option escaped, in one line", () => {
    const db = join(tempDir(), 'agents.db');
    const opt = cli(['status', `--x${EVIL}`], { db });
    expect(opt.code).toBe(2);
    expectClean(opt.stderr, 'an unknown hostile option');
    expect(opt.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(opt.stderr).toMatch(/^agentctl: unknown option '--x\\x1b\[2J/);
  });

  it("run's log line quotes a launch command that cannot start escaped", () => {
    const db = join(tempDir(), 'agents.db');
    const run = cli(['run', '--name', 'runner', '--', `/nonexistent/${EVIL}`], { db });
    expect(run.code).toBe(127);
    expectClean(run.stderr, 'run of a hostile command');
    expect(run.stderr).toContain('/nonexistent/\\x1b[2J');
  });

  it('register echoes a hostile launch command escaped, and stores it exact', () => {
    const db = join(tempDir(), 'agents.db');
    const reg = cli(['register', 'launcher', '--', '/bin/echo', EVIL], { db });
    expect(reg.code, reg.stderr).toBe(0);
    expectClean(reg.stdout, 'register with a hostile launch command');
    expect(reg.stdout).toContain('launch: /bin/echo \\x1b[2J');
    expect(cliJson(['status'], { db }).agents.find((a: any) => a.name === 'launcher').launch.argv).toEqual(['/bin/echo', EVIL]);
  });

  it('an error quoting a hostile database path shows it escaped, in one line', () => {
    const missing = cli(['commands'], { db: join(tempDir(), `none${EVIL}.db`) });
    expect(missing.code).not.toBe(0);
    expectClean(missing.stderr, 'a missing hostile database path');
    expect(missing.stderr.trimEnd().split('\n')).toHaveLength(1);
  });
});

describe('fault: agent text through the library', () => {
  it("the health loop hands a library user's own logger messages with the hostile name escaped", async () => {
    const { HeartbeatHealthAgent, openStore } = await import('../../dist/index.js');
    const { db } = await hostileFleet();
    const store = await openStore({ path: db, mode: 'existing' });
    const lines: string[] = [];
    const agent = new HeartbeatHealthAgent({ store, logger: { info: (m: string) => lines.push(m), warn: (m: string) => lines.push(m) } });
    try {
      await agent.runOnce();
    } finally {
      await store.close();
    }
    expect(lines.some((l) => l.includes('evil\\x1b[2J\\x1b]0;pwned\\x07\\x0aFORGED'))).toBe(true);
    expectClean(lines.join('\n'), 'the messages given to the logger');
  });
});
