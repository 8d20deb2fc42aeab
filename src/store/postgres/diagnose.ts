import type { Diagnosis, Finding } from '../../core/diagnosis.js';
import { formatDuration } from '../../core/duration.js';
import { redactUrl } from '../../core/redact.js';
import { readMonitor } from '../monitor.js';
import type { Store } from '../store.js';
import { ADVISORY_CLASS, advisoryKey } from './lease.js';
import { PG_SCHEMA_VERSION } from './migrate.js';
import { MAX_CLOCK_OFFSET_MS, hostClockOffsets } from '../fleet.js';


/** What db-check reports about a PostgreSQL database beyond its findings. */
export interface PgDetails {
  schemaVersion: number;
  buildSchemaVersion: number;
  tables: { table: string; rows: number; deadTuples: number }[];
  connections: { applicationName: string; clientAddr: string | null; state: string | null; count: number }[];
  clockSkew: { host: string; maxOffsetMs: number; agents: number }[];
  healthLoops: { host: string | null; pid: number | null; lastPassAt: number | null; everyMs: number | null }[];
  advisoryLocks: { lease: string; pid: number; granted: boolean }[];
}

/** The leases agentctl takes as advisory locks (postgres/lease.ts), by their keys. */
const LEASES = ['monitor', 'maintenance'];

/**
 * db-check on PostgreSQL: the schema version against this build, every table's rows and dead tuples
 * (pg_stat_user_tables), the connections to this database (pg_stat_activity), the clock skew per host, the health
 * loop seen and on which host, and the advisory locks held. Read-only.
 */
export async function diagnosePg(store: Store, now: number): Promise<Diagnosis & { postgres: PgDetails }> {
  const findings: Finding[] = [];
  const version = Number((await store.sql.get<{ version: number }>('SELECT version FROM agentctl_schema'))?.version ?? 0);
  findings.push({ check: 'schema version', ok: version === PG_SCHEMA_VERSION, detail: `${version} (this build: ${PG_SCHEMA_VERSION})` });
  const tables = (await store.sql.all<{ relname: string; n_live_tup: number; n_dead_tup: number }>(
    'SELECT relname, n_live_tup, n_dead_tup FROM pg_stat_user_tables ORDER BY relname',
  )).map((r) => ({ table: r.relname, rows: Number(r.n_live_tup), deadTuples: Number(r.n_dead_tup) }));
  const dead = tables.filter((t) => t.deadTuples > 10_000 && t.deadTuples > t.rows);
  findings.push({
    check: 'tables',
    ok: dead.length === 0,
    detail: dead.length ? `more dead tuples than rows in ${dead.map((t) => t.table).join(', ')}: is autovacuum running?` : tables.map((t) => `${t.table} ${t.rows} rows, ${t.deadTuples} dead`).join('; '),
  });
  const connections = (await store.sql.all<{ application_name: string; client_addr: string | null; state: string | null; n: number }>(
    `SELECT application_name, CAST(client_addr AS text) AS client_addr, state, count(*) AS n FROM pg_stat_activity
     WHERE datname = current_database() GROUP BY application_name, client_addr, state ORDER BY application_name, client_addr, state`,
  )).map((r) => ({ applicationName: r.application_name, clientAddr: r.client_addr, state: r.state, count: Number(r.n) }));
  findings.push({ check: 'connections', ok: true, detail: `${connections.reduce((n, c) => n + c.count, 0)} open to this database` });
  const clockSkew = await hostClockOffsets(store, MAX_CLOCK_OFFSET_MS);
  findings.push({
    check: 'clock skew',
    ok: clockSkew.length === 0,
    detail: clockSkew.length
      ? clockSkew.map((h) => `host ${h.host} is off by ${formatDuration(h.maxOffsetMs)} (${h.agents} agents); the server's clock judges them, fix the host's time sync`).join('; ')
      : `every host within ${formatDuration(MAX_CLOCK_OFFSET_MS)} of the server's clock`,
  });
  const m = await readMonitor(store);
  const healthLoops = m ? [{ host: m.monitorHost, pid: m.monitorPid, lastPassAt: m.lastPassAt, everyMs: m.everyMs }] : [];
  findings.push({
    check: 'health loop',
    ok: true,
    detail: m?.lastPassAt != null ? `last pass ${formatDuration(Math.max(0, now - m.lastPassAt))} ago on host ${m.monitorHost ?? '?'} (pid ${m.monitorPid ?? '?'})` : 'none has run on this database',
  });
  const byKey = new Map(LEASES.map((l) => [advisoryKey(l), l]));
  const advisoryLocks = (await store.sql.all<{ objid: number; pid: number; granted: boolean }>(
    `SELECT CAST(l.objid AS bigint) AS objid, l.pid, l.granted FROM pg_locks l JOIN pg_database d ON d.oid = l.database
     WHERE l.locktype = 'advisory' AND d.datname = current_database() AND CAST(l.classid AS bigint) = ?`,
    [ADVISORY_CLASS],
  )).map((r) => ({ lease: byKey.get(Number(r.objid)) ?? `key ${r.objid}`, pid: Number(r.pid), granted: Boolean(r.granted) }));
  findings.push({
    check: 'locks',
    ok: true,
    detail: advisoryLocks.length ? advisoryLocks.map((l) => `${l.lease} ${l.granted ? 'held' : 'awaited'} by server pid ${l.pid}`).join('; ') : 'no agentctl lease held',
  });
  const verdict = version > PG_SCHEMA_VERSION ? 'unusable' : findings.every((f) => f.ok) ? 'healthy' : 'problems';
  return {
    path: redactUrl(store.path),
    verdict,
    findings,
    repairs: [],
    postgres: { schemaVersion: version, buildSchemaVersion: PG_SCHEMA_VERSION, tables, connections, clockSkew, healthLoops, advisoryLocks },
  };
}
