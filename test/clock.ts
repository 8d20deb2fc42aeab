/**
 * An injected clock for the database as well as for the code, so that a scenario written at T0 + n runs on both
 * engines from one test source.
 *
 * On SQLite every write takes its time from its caller (`now`), so a test passes T0 + n and that is all. On
 * PostgreSQL the server stamps what writers write by its own clock (agentctl_now_ms(), clock_timestamp() in ms:
 * a heartbeat's time, a registration's, a command's creation and expiry), whatever the caller passes. In a test's
 * own throwaway database, injectClock() replaces that one function with one that reads the time the test last
 * set with at(), so the server's clock is the scenario's. Everything else is the real server: its triggers, its
 * locks, its transactions. What the real clock does on PostgreSQL is tested in test/pg/clock.test.ts.
 */
/** A store of either build (dist/ or src/): only its SQL is used. */
interface WithSql {
  readonly sql: { readonly dialect: string; run(sql: string, args?: readonly unknown[]): Promise<unknown> };
}

const CLOCK_TABLE = 'agentctl_test_clock.now';

/** Makes the database's clock the test's (PostgreSQL; nothing to do on SQLite). Call once, after the store opened. */
export async function injectClock(s: WithSql, startAt?: number): Promise<void> {
  if (s.sql.dialect !== 'postgres') return;
  await s.sql.run('CREATE SCHEMA IF NOT EXISTS agentctl_test_clock');
  await s.sql.run(`CREATE TABLE IF NOT EXISTS ${CLOCK_TABLE} (one boolean PRIMARY KEY DEFAULT true CHECK (one), now_ms bigint NOT NULL)`);
  // Same signature, volatility and name as the migration's, so every trigger and statement that calls it reads
  // the test's time; until at() sets one, the real clock.
  await s.sql.run(`CREATE OR REPLACE FUNCTION agentctl_now_ms() RETURNS bigint LANGUAGE sql VOLATILE PARALLEL SAFE
    AS $$ SELECT COALESCE((SELECT now_ms FROM ${CLOCK_TABLE}), floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) $$`);
  if (startAt !== undefined) await at(s, startAt);
}

/**
 * Sets the database's clock to `ms` (PostgreSQL, after injectClock()) and returns `ms`, to be passed on as the
 * `now` of the call that follows: `await updateHeartbeat(s, { name }, await at(s, T0 + 1000))`.
 */
export async function at(s: WithSql, ms: number): Promise<number> {
  if (s.sql.dialect === 'postgres') {
    await s.sql.run(`INSERT INTO ${CLOCK_TABLE} (now_ms) VALUES (?) ON CONFLICT (one) DO UPDATE SET now_ms = excluded.now_ms`, [ms]);
  }
  return ms;
}

/** Gives the database back its real clock (PostgreSQL): for a CLI run after the scenario, which judges by it. */
export async function releaseClock(s: WithSql): Promise<void> {
  if (s.sql.dialect === 'postgres') await s.sql.run(`DELETE FROM ${CLOCK_TABLE}`);
}
