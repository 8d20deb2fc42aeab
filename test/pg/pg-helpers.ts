// What the PostgreSQL tests share: the run's cluster (started by ./global-setup.ts) and a fresh database per test.
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { afterEach } from 'vitest';
import pg from 'pg';
import { agentctlTypes } from '../../src/store/postgres/executor.js';

/** The run's cluster as its superuser (postgres://agentctl_test@127.0.0.1:PORT/postgres). */
export function clusterUrl(): string {
  const url = process.env.AGENTCTL_TEST_PG;
  if (!url) throw new Error('AGENTCTL_TEST_PG is not set: the PostgreSQL tests run against the cluster that vitest\'s global setup starts (run them through vitest)');
  return url;
}

/** `url` with its database replaced. */
export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: clusterUrl() });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

const created: string[] = [];

/** A new empty database for this test (CREATE DATABASE … TEMPLATE template0), dropped after it; returns its URL. */
export async function freshDatabase(): Promise<string> {
  const name = `t_${randomBytes(6).toString('hex')}`;
  await admin((c) => c.query(`CREATE DATABASE ${name} TEMPLATE template0`));
  created.push(name);
  return withDatabase(clusterUrl(), name);
}

const roles: string[] = [];

/**
 * A role of this test that may read (with `write`, also write) every table of `db` (which must have them) and hold at most `limit` connections
 * at a time (superusers, the tests' own role, are exempt from such limits), dropped after the test with its
 * databases. `url` is `db` as that role; `setLimit` changes the limit (-1: none).
 */
export async function limitedRole(db: string, limit: number, opts: { write?: boolean } = {}): Promise<{ url: string; setLimit(n: number): Promise<void> }> {
  const role = `t_role_${randomBytes(6).toString('hex')}`;
  await admin((c) => c.query(`CREATE ROLE ${role} LOGIN CONNECTION LIMIT ${Number(limit)}`));
  roles.push(role);
  await query(db, opts.write
    ? `GRANT ALL ON ALL TABLES IN SCHEMA public TO ${role}; GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO ${role}`
    : `GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${role}`);
  const u = new URL(db);
  u.username = role;
  u.password = '';
  return {
    url: u.toString(),
    setLimit: async (n) => void (await admin((c) => c.query(`ALTER ROLE ${role} CONNECTION LIMIT ${Number(n)}`))),
  };
}

afterEach(async () => {
  const names = created.splice(0);
  const gone = roles.splice(0);
  if (names.length === 0 && gone.length === 0) return;
  await admin(async (c) => {
    // Dropping a database ends its connections and takes the roles' grants in it along.
    for (const name of names) await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    for (const role of gone) await c.query(`DROP ROLE IF EXISTS ${role}`);
  });
});

/** Runs SQL on a database as the superuser, beside the code under test (numbers as numbers, JSON as text). */
export async function query<T = Record<string, unknown>>(url: string, sql: string, args: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: url, types: agentctlTypes() });
  await c.connect();
  try {
    return (await c.query(sql, args)).rows as T[];
  } finally {
    await c.end();
  }
}

/** A python3 that can `import psycopg` (the PATH's, else the system's /usr/bin/python3), or a clear failure. */
export function pythonWithPsycopg(): string {
  for (const py of ['python3', '/usr/bin/python3']) {
    if (spawnSync(py, ['-c', 'import psycopg'], { encoding: 'utf8' }).status === 0) return py;
  }
  throw new Error('no python3 here can import psycopg (install python3-psycopg; .ci/run does)');
}
