import { describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { closeSync, openSync, readSync, renameSync, rmSync, truncateSync, writeFileSync, writeSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { cli, exited, fileHash, start, tempDb, waitFor, ROOT } from '../helpers.js';

const fixture = join(ROOT, 'test', 'fixtures', 'beat-until.mjs');

/** A database with some history, and two agents beating into it from their own processes. */
async function runningFleet() {
  const db = tempDb();
  for (let i = 0; i < 30; i++) cli(['heartbeat', `idle-${i}`, '--message', 'x'.repeat(200)], { db });
  const agents = ['live-0', 'live-1'].map((n) => start(process.execPath, [fixture, db, n]));
  await waitFor(() => agents.every((a) => a.output().includes('"ready":true')), 'the agents to beat');
  return { db, agents };
}

function errorsOf(agent: ReturnType<typeof start>): { error: string; code: string | null }[] {
  return agent
    .output()
    .split('\n')
    .filter((l) => l.includes('"error"'))
    .map((l) => JSON.parse(l));
}

/** How many tries (committed heartbeats, counted in tens, and errors) the agent has reported so far. */
function triesOf(agent: ReturnType<typeof start>): number {
  const lines = agent.output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
  return (lines.filter((l) => 'beats' in l).at(-1)?.beats ?? 0) + lines.filter((l) => 'error' in l).length;
}

async function stop(agents: ReturnType<typeof start>[]) {
  for (const a of agents) a.kill('SIGKILL');
  await Promise.all(agents.map(exited));
}

describe('fault: the database damaged under running agents', () => {
  it('deleted: agents report it clearly, nothing is created in its place, db-check exits 1', async () => {
    const { db, agents } = await runningFleet();
    for (const suffix of ['', '-wal', '-shm']) rmSync(`${db}${suffix}`, { force: true });
    await waitFor(() => agents.every((a) => errorsOf(a).length >= 2), 'both agents to report');
    await stop(agents);
    for (const a of agents) {
      const [first, next] = errorsOf(a);
      expect(first!.error).toMatch(/was deleted while in use; nothing was written/);
      expect(next!.error).toMatch(/does not exist \(create it with 'agentctl init/);
    }
    const check = cli(['db-check'], { db });
    expect(check.code).toBe(1);
    expect(check.stderr).toMatch(/does not exist/);
  });

  it('replaced by a file that is not SQLite: agents report it, the file is never written, db-check exits 4', async () => {
    const { db, agents } = await runningFleet();
    writeFileSync(`${db}.junk`, 'this is not a database\n'.repeat(500));
    renameSync(`${db}.junk`, db);
    const hash = fileHash(db);
    await waitFor(() => agents.every((a) => errorsOf(a).length >= 2), 'both agents to report');
    await stop(agents);
    for (const a of agents) {
      const [first, next] = errorsOf(a);
      expect(first!.error).toMatch(/was replaced while in use; nothing was written/);
      expect(next!.error).toMatch(/not an SQLite database/);
    }
    expect(fileHash(db)).toBe(hash);
    expect(cli(['db-check'], { db }).code).toBe(4);
    expect(cli(['heartbeat', 'x'], { db }).code).toBe(4);
    expect(fileHash(db)).toBe(hash);
  });

  it('truncated: agents stop writing and say so, db-check exits 4', async () => {
    const { db, agents } = await runningFleet();
    const raw = new Database(db);
    // The agents go on writing: the write-ahead log may hold later pages than the file keeps (then a read of the
    // file fails short, which db-check counts as the damage it is).
    raw.pragma('wal_checkpoint(TRUNCATE)');
    raw.close();
    truncateSync(db, Math.floor(statSync(db).size / 2));
    await waitFor(() => agents.every((a) => errorsOf(a).length >= 1), 'both agents to report');
    await stop(agents);
    for (const a of agents) expect(errorsOf(a)[0]!.error).toMatch(/truncated|corrupt|malformed|not an SQLite/i);
    const check = cli(['db-check', '--full'], { db });
    expect({ code: check.code, stdout: check.stdout, stderr: check.stderr }).toMatchObject({ code: 4 });
  });

  it('bytes flipped in a page: db-check exits 4, and running agents neither hide nor spread the damage', async () => {
    const { db, agents } = await runningFleet();
    const raw = new Database(db);
    raw.pragma('wal_checkpoint(TRUNCATE)');
    const pageSize = raw.pragma('page_size', { simple: true }) as number;
    // A page of the events table that the agents do not touch again: the oldest history.
    const page = raw.prepare("SELECT pageno FROM dbstat WHERE name = 'events' AND pagetype = 'leaf' ORDER BY pageno LIMIT 1").pluck().get() as number | undefined;
    raw.close();
    expect(page, 'a leaf page of the events table').toBeTypeOf('number');
    const fd = openSync(db, 'r+');
    const buf = Buffer.alloc(256);
    readSync(fd, buf, 0, buf.length, (page! - 1) * pageSize + 100);
    for (let i = 0; i < buf.length; i++) buf[i] = buf[i]! ^ 0x5a;
    writeSync(fd, buf, 0, buf.length, (page! - 1) * pageSize + 100);
    closeSync(fd);
    const triesAtDamage = agents.map(triesOf);
    expect(cli(['db-check', '--full'], { db }).code).toBe(4);
    // Each agent goes on trying after the damage (its heartbeats touch the agents table, not this page): wait until
    // each has tried at least 20 more times, so that what it says about the damage is judged, whatever it is.
    await waitFor(() => agents.every((a, i) => triesOf(a) >= triesAtDamage[i]! + 20), 'each agent to try 20 more times');
    await stop(agents);
    // An agent that met the damage says so (it does not pass it off as something else).
    for (const a of agents) for (const e of errorsOf(a)) expect(e.error).toMatch(/corrupt|malformed|busy/i);
    const after = cli(['db-check', '--full'], { db });
    expect(after.code).toBe(4);
    const fix = cli(['db-check', '--fix'], { db });
    expect(fix.code).toBe(4);
    expect(fix.stdout).toMatch(/readable rows are in/);
  });
});
