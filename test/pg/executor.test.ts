import { describe, expect, it } from 'vitest';
import { createServer } from 'node:net';
import pg from 'pg';
import { openPg, withTlsEnv } from '../../src/store/postgres/executor.js';
import { rewrite } from '../../src/store/postgres/placeholders.js';
import { OperationError } from '../../src/errors.js';
import { ExitCode } from '../../src/exit-codes.js';
import { clusterUrl, freshDatabase, query } from './pg-helpers.js';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { DIST } from '../helpers.js';

/** A loopback port nothing listens on. */
function deadPort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

async function failure(url: string): Promise<unknown> {
  const sql = openPg({ url });
  try {
    await sql.get('SELECT 1 AS one');
  } catch (err) {
    return err;
  } finally {
    await sql.close();
  }
  throw new Error(`connecting to ${url} did not fail`);
}

describe('placeholders', () => {
  it('rewrites ? and :name / @name to $n outside literals, identifiers, dollar quotes and comments, leaving :: casts alone', () => {
    expect(rewrite(`SELECT ?::int AS a, '?' AS "b?", ? -- ? :x\n`).text).toBe(`SELECT $1::int AS a, '?' AS "b?", $2 -- ? :x\n`);
    const named = rewrite(`SELECT :a::text, @b, :a, 'it''s :a', E'\\' :a', $$ :a ? $$, $t$ @b $t$ /* :a /* ? */ :a */ FROM x WHERE y = :c_1`);
    expect(named.text).toBe(`SELECT $1::text, $2, $1, 'it''s :a', E'\\' :a', $$ :a ? $$, $t$ @b $t$ /* :a /* ? */ :a */ FROM x WHERE y = $3`);
    expect(named.names).toEqual(['a', 'b', 'c_1']);
    expect(rewrite('SELECT 1').kind).toBe('none');
    expect(() => rewrite('SELECT ?, :a')).toThrow(/mixes/);
  });

  it('binds positional and named arguments against the server, and says which is missing', async () => {
    const url = await freshDatabase();
    const sql = openPg({ url });
    try {
      expect(await sql.get('SELECT CAST(? AS int) + CAST(? AS int) AS n', [2, 3])).toEqual({ n: 5 });
      expect(await sql.get(`SELECT CAST(:a AS text) || '-' || CAST(@b AS text) || '-' || CAST(:a AS text) AS s`, { a: 'x', b: 'y' })).toEqual({ s: 'x-y-x' });
      expect(await sql.get('SELECT CAST(:v AS int) IS NULL AS missing', { v: undefined })).toEqual({ missing: true });
      await expect(sql.get('SELECT CAST(:a AS int) AS n', {})).rejects.toThrow(/missing named parameter :a/);
      await expect(sql.get('SELECT CAST(? AS int) AS n', [])).rejects.toThrow(/takes 1 positional/);
    } finally {
      await sql.close();
    }
  });
});

describe('the PostgreSQL executor', () => {
  it('returns BIGINT, COUNT, SUM and NUMERIC as numbers and JSON as text, without changing pg for anyone else', async () => {
    const url = await freshDatabase();
    const sql = openPg({ url });
    try {
      const row = await sql.get(`SELECT count(*) AS n, CAST(1733000000123 AS bigint) AS ms, sum(x) AS total, CAST(1.5 AS numeric) AS num,
                                        CAST('{"a": 1}' AS jsonb) AS j, CAST('[1]' AS json) AS k FROM generate_series(1, 3) AS x`);
      expect(row).toEqual({ n: 3, ms: 1733000000123, total: 6, num: 1.5, j: '{"a": 1}', k: '[1]' });
      // pg's global parsers are untouched: a plain client still gets BIGINT as a string.
      const plain = new pg.Client({ connectionString: url });
      await plain.connect();
      const r = await plain.query('SELECT count(*) AS n');
      await plain.end();
      expect(r.rows[0].n).toBe('1');
    } finally {
      await sql.close();
    }
  });

  it('reads in batches as the rows are consumed, and gives the connection back when the reader stops early', async () => {
    const url = await freshDatabase();
    const sql = openPg({ url, max: 2 });
    try {
      const sizes: number[] = [];
      for await (const b of sql.batches<{ x: number }>('SELECT x FROM generate_series(1, CAST(? AS int)) AS x', [2500], 1000)) sizes.push(b.length);
      expect(sizes).toEqual([1000, 1000, 500]);
      for (let i = 0; i < 3; i++) {
        for await (const b of sql.batches('SELECT x FROM generate_series(1, 10) AS x', [], 2)) {
          expect(b).toHaveLength(2);
          break;
        }
      }
      // With two connections in the pool, three abandoned readers would have left none.
      expect(await sql.get('SELECT 1 AS one')).toEqual({ one: 1 });
      expect(sql.pool.idleCount + sql.pool.waitingCount).toBeLessThanOrEqual(2);
    } finally {
      await sql.close();
    }
  });

  it('retries a write transaction that lost a deadlock as a whole, and gives up after the last try', async () => {
    const url = await freshDatabase();
    const sql = openPg({ url, retry: { attempts: 3, factor: 1.5, baseDelayMs: 10 } });
    try {
      await sql.run('CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL)');
      await sql.run('INSERT INTO t VALUES (1, 0), (2, 0)');
      let calls = 0;
      let firstDone!: () => void;
      let secondDone!: () => void;
      const first = new Promise<void>((r) => (firstDone = r));
      const second = new Promise<void>((r) => (secondDone = r));
      // Each takes one row, waits until the other holds its row, then wants the other's: one of them is the victim.
      const a = sql.tx(async (tx) => {
        calls++;
        await tx.run('UPDATE t SET v = v + 1 WHERE id = 1');
        firstDone();
        await second;
        await tx.run('UPDATE t SET v = v + 1 WHERE id = 2');
      });
      const b = sql.tx(async (tx) => {
        calls++;
        await tx.run('UPDATE t SET v = v + 1 WHERE id = 2');
        secondDone();
        await first;
        await tx.run('UPDATE t SET v = v + 1 WHERE id = 1');
      });
      await Promise.all([a, b]);
      expect(calls).toBe(3);
      expect(await sql.all('SELECT id, v FROM t ORDER BY id')).toEqual([{ id: 1, v: 2 }, { id: 2, v: 2 }]);

      let tries = 0;
      const err = await sql
        .tx(async () => {
          tries++;
          throw Object.assign(new Error('could not serialize access'), { code: '40001' });
        })
        .catch((e: unknown) => e);
      expect(tries).toBe(3);
      expect((err as { code: string }).code).toBe('40001');
      // Anything else is not retried, and rolled back.
      tries = 0;
      await expect(
        sql.tx(async (tx) => {
          tries++;
          await tx.run('UPDATE t SET v = 100');
          throw new Error('boom');
        }),
      ).rejects.toThrow('boom');
      expect(tries).toBe(1);
      expect(await sql.all('SELECT v FROM t ORDER BY id')).toEqual([{ v: 2 }, { v: 2 }]);
    } finally {
      await sql.close();
    }
  });

  it('reads one snapshot in a read transaction, which refuses writes', async () => {
    const url = await freshDatabase();
    const sql = openPg({ url });
    try {
      await sql.run('CREATE TABLE t (id int)');
      await sql.run('INSERT INTO t VALUES (1)');
      const seen = await sql.read(async (r) => {
        const before = await r.get<{ n: number }>('SELECT count(*) AS n FROM t');
        await query(url, 'INSERT INTO t VALUES (2)');
        const after = await r.get<{ n: number }>('SELECT count(*) AS n FROM t');
        return [before!.n, after!.n];
      });
      expect(seen).toEqual([1, 1]);
      expect(await sql.get('SELECT count(*) AS n FROM t')).toEqual({ n: 2 });
      await expect(sql.read((r) => r.run('INSERT INTO t VALUES (3)'))).rejects.toMatchObject({ code: '25006' });
    } finally {
      await sql.close();
    }
  });

  it("tells the server's clock, as it runs (not the transaction's start)", async () => {
    const url = await freshDatabase();
    const sql = openPg({ url });
    try {
      const server = await sql.now();
      expect(Number.isInteger(server)).toBe(true);
      // The same machine: the server's clock is this host's.
      expect(Math.abs(server - Date.now())).toBeLessThan(60_000);
      const [t1, t2] = await sql.tx(async (tx) => {
        const a = await tx.now();
        await tx.get('SELECT pg_sleep(0.02)');
        return [a, await tx.now()];
      });
      expect(t2! - t1!).toBeGreaterThanOrEqual(20);
    } finally {
      await sql.close();
    }
  });
});

describe('connection failures: one line, exit 1, no password', () => {
  it('an unreachable server', async () => {
    const port = await deadPort();
    const err = await failure(`postgres://someone:hunter2-secret@127.0.0.1:${port}/agents`);
    expect(err).toBeInstanceOf(OperationError);
    expect(err).toMatchObject({ code: 'E_DB_UNREACHABLE', exitCode: ExitCode.FAILED });
    const message = (err as Error).message;
    expect(message).toContain(`cannot reach PostgreSQL at postgres://someone:***@127.0.0.1:${port}/agents`);
    expect(message).not.toContain('hunter2');
    expect(message.split('\n')).toHaveLength(1);
  });

  it('refused credentials (and the right ones, from the URL or PGPASSWORD, work)', async () => {
    const u = new URL(clusterUrl());
    const password = process.env.AGENTCTL_TEST_PG_PASSWORD!;
    const wrong = `postgres://agentctl_pw:wrong-${password}@127.0.0.1:${u.port}/postgres`;
    const err = await failure(wrong);
    expect(err).toMatchObject({ code: 'E_DB_AUTH', exitCode: ExitCode.FAILED });
    const message = (err as Error).message;
    expect(message).toMatch(/^PostgreSQL at postgres:\/\/agentctl_pw:\*\*\*@127\.0\.0\.1:\d+\/postgres refused the credentials: password authentication failed for user "agentctl_pw"/);
    expect(message).not.toContain(password);
    expect(message.split('\n')).toHaveLength(1);

    const right = openPg({ url: `postgres://agentctl_pw:${password}@127.0.0.1:${u.port}/postgres` });
    expect(await right.get('SELECT current_user AS who')).toEqual({ who: 'agentctl_pw' });
    await right.close();
    const saved = process.env.PGPASSWORD;
    process.env.PGPASSWORD = password;
    try {
      const fromEnv = openPg({ url: `postgres://agentctl_pw@127.0.0.1:${u.port}/postgres` });
      expect(await fromEnv.get('SELECT current_user AS who')).toEqual({ who: 'agentctl_pw' });
      await fromEnv.close();
    } finally {
      if (saved === undefined) delete process.env.PGPASSWORD;
      else process.env.PGPASSWORD = saved;
    }
  });

  it('a missing database', async () => {
    const u = new URL(clusterUrl());
    u.pathname = '/no_such_db';
    const err = await failure(u.toString());
    expect(err).toMatchObject({ code: 'E_DB_MISSING', exitCode: ExitCode.FAILED });
    expect((err as Error).message).toMatch(/^PostgreSQL database at postgres:\/\/agentctl_test@127\.0\.0\.1:\d+\/no_such_db does not exist: database "no_such_db" does not exist/);
    expect((err as Error).message.split('\n')).toHaveLength(1);
  });

  it('sslmode in the URL is honoured (this server has no TLS: verify-full fails in one line, disable connects)', async () => {
    const err = await failure(`${clusterUrl()}?sslmode=verify-full`);
    expect(err).toBeInstanceOf(OperationError);
    expect((err as Error).message).toMatch(/does not support SSL/);
    const plain = openPg({ url: `${clusterUrl()}?sslmode=disable` });
    expect(await plain.get('SELECT 1 AS one')).toEqual({ one: 1 });
    await plain.close();
  });

  it('PGSSLMODE and PGSSLROOTCERT apply where the URL says nothing (the URL wins where it does)', async () => {
    expect(withTlsEnv('postgres://u:pw@h:5432/db', { PGSSLMODE: 'verify-full', PGSSLROOTCERT: '/etc/ca.pem' })).toBe('postgres://u:pw@h:5432/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem');
    expect(withTlsEnv('postgres://h/db?sslmode=disable', { PGSSLMODE: 'verify-full' })).toBe('postgres://h/db?sslmode=disable');
    expect(withTlsEnv('postgres://h/db', {})).toBe('postgres://h/db');
    const saved = process.env.PGSSLMODE;
    process.env.PGSSLMODE = 'verify-full';
    try {
      const err = await failure(clusterUrl());
      expect(err).toMatchObject({ code: 'E_DB_TLS', exitCode: ExitCode.FAILED });
      const plain = openPg({ url: `${clusterUrl()}?sslmode=disable` });
      expect(await plain.get('SELECT 1 AS one')).toEqual({ one: 1 });
      await plain.close();
    } finally {
      if (saved === undefined) delete process.env.PGSSLMODE;
      else process.env.PGSSLMODE = saved;
    }
  });
});

describe('loading pg', () => {
  it("does not load Node's fetch (pg's Cloudflare probe builds a Response where Node has no navigator), leaves the globals as they were, and connects", async () => {
    const url = await freshDatabase();
    const script = `
      const before = 'navigator' in globalThis;
      const { openPg } = await import(${JSON.stringify(pathToFileURL(join(DIST, 'store/postgres/executor.js')).href)});
      const sql = openPg({ url: process.env.URL });
      const now = await sql.now();
      await sql.close();
      console.log(JSON.stringify({ before, after: 'navigator' in globalThis, now, undici: process.moduleLoadList.filter((m) => /undici/.test(m)) }));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { ...process.env, URL: url } });
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout) as { before: boolean; after: boolean; now: number; undici: string[] };
    expect(out.undici).toEqual([]);
    expect(out.after).toBe(out.before);
    expect(Math.abs(out.now - Date.now())).toBeLessThan(60_000);
  });
});
