import Database from 'better-sqlite3';
import { accessSync, closeSync, constants, existsSync, openSync, readSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { AgentctlError, DatabaseMissingError } from '../../errors.js';
import { type Diagnosis, type Finding, type Repair, healthLoopFinding } from '../../core/diagnosis.js';
import { connectReader, headerJournalMode, preflight, walBytes } from './open.js';
import { APPLICATION_ID, SCHEMA_VERSION } from './migrations.js';
import { holderIsDead, inspectLock } from './lock.js';
import { describeSqliteError } from './sqlite-errors.js';
import { readLoopsFrom, readMonitorFrom } from '../monitor.js';

/** Locks db-check looks at: the health loop's and the one for operations on the file. */
export const LOCK_NAMES = ['monitor', 'maintenance'] as const;
/** A WAL this many times the auto-checkpoint size means checkpoints are not keeping up. */
const WAL_BEHIND_FACTOR = 4;
/** Heartbeats further in the future than this are clock skew. */
const FUTURE_TOLERANCE_MS = 5_000;

/**
 * Examines the database at `path` without writing to it: header, application id, schema version, integrity
 * (quick_check, or integrity_check when `full`), foreign keys, journal mode, WAL size, pages, the lock files, clock
 * skew and rows that break the state model. Never throws for a damaged or unreadable file: that is its verdict. A
 * missing file throws DatabaseMissingError (db-check never creates one).
 */
export function diagnose(path: string, now: number, opts: { full?: boolean; lockStaleMs?: number } = {}): Diagnosis {
  const findings: Finding[] = [];
  const repairs: Repair[] = [];
  const result = (verdict?: Diagnosis['verdict']): Diagnosis => ({
    path,
    verdict: verdict ?? (findings.every((f) => f.ok) ? 'healthy' : 'problems'),
    findings,
    repairs,
  });
  try {
    statSync(path);
  } catch (err) {
    // Not "missing" when it is only out of reach (a directory this user may not search): that is permissions.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new DatabaseMissingError(path);
  }
  const denied = permissionFinding(path);
  if (denied) {
    findings.push(denied);
    return result('problems');
  }
  try {
    preflight(path, { mode: 'read' });
  } catch (err) {
    findings.push({ check: 'header', ok: false, detail: (err as Error).message });
    return result('unusable');
  }
  findings.push({ check: 'header', ok: true, detail: `SQLite 3 file, ${statSync(path).size} bytes` });
  let db: Database.Database;
  let snapshot = false;
  try {
    ({ db, snapshot } = connectReader(path, 5000));
  } catch (err) {
    const e = describeSqliteError(err, path, 1);
    if (e instanceof AgentctlError && e.code === 'E_READONLY') {
      findings.push({ check: 'permissions', ok: false, detail: `${e.message}. A permission problem, not damage: ${walIndexFix(path)}` });
      return result('problems');
    }
    findings.push({ check: 'open', ok: false, detail: e.message });
    return result(e instanceof AgentctlError && e.exitCode === 4 ? 'unusable' : 'problems');
  }
  try {
    const unusable = examine(db, path, now, { ...opts, snapshot }, findings, repairs);
    return result(unusable ? 'unusable' : undefined);
  } catch (err) {
    const e = describeSqliteError(err, path, 1);
    // A read that fails on a file shorter than its own header says is damage, not a passing I/O error: pages the
    // write-ahead log does not hold are missing (SQLite reports such a short read as an I/O error).
    const cut = truncation(path);
    findings.push({ check: 'read', ok: false, detail: cut ? `${cut}; restore it from a backup (${e.message})` : e.message });
    return result(cut || (e instanceof AgentctlError && e.exitCode === 4) ? 'unusable' : 'problems');
  } finally {
    db.close();
  }
}

/**
 * Why the file at `path` looks truncated, or null: shorter than the database size its header records (valid when
 * the header's version-valid-for number equals its change counter). Only for a file whose reads already failed:
 * while a checkpoint runs, page 1 may be written before the pages that make the file that long.
 */
export function truncation(path: string): string | null {
  const head = Buffer.alloc(100);
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    if (readSync(fd, head, 0, 100, 0) < 100) return null;
    const size = statSync(path).size;
    const raw = head.readUInt16BE(16);
    const pageSize = raw === 1 ? 65536 : raw;
    const pages = head.readUInt32BE(28);
    if (pageSize < 512 || head.readUInt32BE(92) !== head.readUInt32BE(24) || pages === 0) return null;
    return size < pages * pageSize ? `the file is ${size} bytes, shorter than the ${pages} pages of ${pageSize} bytes its header records: it was truncated` : null;
  } catch {
    return null;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function examine(db: Database.Database, path: string, now: number, opts: { full?: boolean; lockStaleMs?: number; snapshot?: boolean }, findings: Finding[], repairs: Repair[]): boolean {
  const appId = db.pragma('application_id', { simple: true }) as number;
  const version = db.pragma('user_version', { simple: true }) as number;
  if (appId !== APPLICATION_ID) {
    const tables = (db.prepare("SELECT count(*) AS n FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'").get() as { n: number }).n;
    // Every other command refuses a file with tables and no agentctl mark as another application's (exit 4).
    const foreign = appId !== 0 || (version === 0 && tables > 0);
    findings.push({
      check: 'application_id',
      ok: false,
      detail: appId !== 0
        ? `application_id ${appId} belongs to another application; it was left untouched`
        : foreign
          ? `not an agentctl database: an SQLite file of another application (${tables} table(s), application_id 0); it was left untouched`
          : `not marked as an agentctl database (application_id 0)${tables === 0 ? `: it is empty; run 'agentctl init --db ${path}'` : ''}`,
    });
    return foreign;
  }
  findings.push({ check: 'application_id', ok: true, detail: 'agentctl (0x41474354)' });
  if (version > SCHEMA_VERSION) {
    findings.push({ check: 'schema', ok: false, detail: `schema version ${version} is newer than this agentctl (${SCHEMA_VERSION}); upgrade agentctl` });
    return true;
  }
  findings.push({ check: 'schema', ok: version === SCHEMA_VERSION, detail: `version ${version}, this build ${SCHEMA_VERSION}${version < SCHEMA_VERSION ? ' (migrated on the next write)' : ''}` });

  const integrity = (db.pragma(opts.full ? 'integrity_check' : 'quick_check') as Record<string, string>[]).map((r) => Object.values(r)[0]);
  const intact = integrity.length === 1 && integrity[0] === 'ok';
  findings.push({ check: opts.full ? 'integrity_check' : 'quick_check', ok: intact, detail: intact ? 'ok' : integrity.slice(0, 5).join('; ') });
  if (!intact) return true;

  const fk = db.pragma('foreign_key_check') as unknown[];
  findings.push({ check: 'foreign_key_check', ok: fk.length === 0, detail: fk.length ? `${fk.length} rows point at missing rows` : 'ok' });

  // Read as an immutable snapshot (a user who may not write beside the file), SQLite reports 'delete' for any file.
  const mode = opts.snapshot ? headerJournalMode(path) : String(db.pragma('journal_mode', { simple: true }));
  findings.push({ check: 'journal_mode', ok: mode === 'wal', detail: mode, ...(mode === 'wal' ? {} : { fix: 'set journal_mode=WAL' }) });

  const pageSize = db.pragma('page_size', { simple: true }) as number;
  const pages = db.pragma('page_count', { simple: true }) as number;
  const free = db.pragma('freelist_count', { simple: true }) as number;
  findings.push({ check: 'pages', ok: true, detail: `${pages} pages of ${pageSize} bytes, ${free} free` });
  const walBytes = existsSync(`${path}-wal`) ? statSync(`${path}-wal`).size : 0;
  const autoCheckpoint = 1000;
  const behind = walBytes > WAL_BEHIND_FACTOR * autoCheckpoint * (pageSize + 24);
  findings.push({
    check: 'wal',
    ok: !behind,
    detail: `${walBytes} bytes${behind ? `: more than ${WAL_BEHIND_FACTOR}× the auto-checkpoint size, checkpoints are not keeping up (a long-lived reader holds them back?)` : ''}`,
    ...(behind ? { fix: 'checkpoint and truncate the WAL' } : {}),
  });

  for (const name of LOCK_NAMES) findings.push(lockFinding(path, name, opts.lockStaleMs ?? 30_000));
  findings.push(loopFinding(db, now));

  const future = db.prepare('SELECT name, last_heartbeat_at FROM agents WHERE last_heartbeat_at > ?').all(now + FUTURE_TOLERANCE_MS) as { name: string; last_heartbeat_at: number }[];
  findings.push({
    check: 'clock skew',
    ok: future.length === 0,
    detail: future.length ? `${future.length} agent(s) with heartbeats in the future: ${future.slice(0, 5).map((f) => `${f.name} (+${Math.round((f.last_heartbeat_at - now) / 1000)}s)`).join(', ')}` : 'no heartbeats in the future',
  });

  repairs.push(...stateModelRepairs(db, now));
  findings.push({
    check: 'state model',
    ok: repairs.length === 0,
    detail: repairs.length ? repairs.map((r) => r.what).join('; ') : 'every row fits',
    ...(repairs.length ? { fix: `repair ${repairs.length} row group(s)` } : {}),
  });
  return false;
}

/** The user db-check runs as, for messages: `nobody (uid 65534)`. */
function whoAmI(): string {
  const uid = process.getuid?.();
  return uid === undefined ? 'this user' : `uid ${uid}`;
}

/**
 * A database this user may not read at all (the file, or the directory to reach it): a permission problem, named as
 * one with the change that fixes it. Write access is not needed to read (see connectReader).
 */
function permissionFinding(path: string): Finding | null {
  try {
    accessSync(path, constants.R_OK);
    return null;
  } catch {
    let owner = '';
    try {
      const st = statSync(path);
      owner = ` (owner uid ${st.uid}, mode ${(st.mode & 0o777).toString(8)})`;
    } catch {
      // its directory cannot be searched either: the same fix, one level up
    }
    return {
      check: 'permissions',
      ok: false,
      detail: `${path} is not readable by ${whoAmI()}${owner}: a permission problem, not damage. Let it be read, e.g. 'chmod o+r ${path}' (and 'chmod o+x' on its directories), or 'chgrp GROUP ${path} && chmod g+r ${path}' for a group this user is in`,
    };
  }
}

/** What lets a reader without write access read a database whose write-ahead log holds data. */
function walIndexFix(path: string): string {
  return `let this user write the directory (e.g. 'chgrp GROUP ${dirname(path)} && chmod g+w ${dirname(path)}'), or read while a writer has it open (${walBytes(path)} bytes in ${path}-wal)`;
}

/** The health loop's last pass, as the monitor tables of this file record it. */
function loopFinding(db: Database.Database, now: number): Finding {
  const hasTable = db.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'monitor_state'").get();
  return healthLoopFinding(hasTable ? readMonitorFrom(db) : null, readLoopsFrom(db), now);
}

function lockFinding(path: string, name: string, staleMs: number): Finding {
  const check = `${name} lock`;
  const info = inspectLock(path, name);
  if (!info) return { check, ok: true, detail: 'not held' };
  // A planted lock (a symlink, another user's directory) is never honoured: the health loop removes it.
  if (info.planted) return { check, ok: false, detail: `${info.planted}: not honoured (planted by another user?)`, fix: 'remove it' };
  const refreshed = `refreshed ${Math.round(info.ageMs / 1000)}s ago`;
  const expired = info.ageMs >= staleMs;
  if (!info.owner) {
    const why = info.ownerProblem ?? 'no owner file says who holds it';
    return {
      check,
      ok: false,
      detail: `held by an unknown process (${why}), ${refreshed}: ${expired ? 'stale' : `taken over once stale (in ${Math.ceil((staleMs - info.ageMs) / 1000)}s)`}`,
      ...(expired ? { fix: 'remove the stale lock' } : {}),
    };
  }
  const pid = info.owner.pid;
  // The lock module's own rule: only a holder on this host can be proven dead (by pid, start time and boot id).
  const dead = holderIsDead(info.owner);
  const stale = expired || dead;
  return {
    check,
    ok: !stale,
    detail: `held by pid ${pid}${dead ? ' (that process is gone)' : ''}, ${refreshed}${stale ? ': stale' : ''}`,
    ...(stale ? { fix: 'remove the stale lock' } : {}),
  };
}

/** Rows that contradict the state model, each with the statement that puts it right (recording an event through the trigger). */
function stateModelRepairs(db: Database.Database, now: number): Repair[] {
  const out: Repair[] = [];
  const count = (sql: string, params: Record<string, number> = {}) => (db.prepare(sql).get(params) as { n: number }).n;
  const active = count("SELECT COUNT(*) AS n FROM agents WHERE state IN ('active', 'error') AND last_heartbeat_at IS NULL");
  if (active) {
    out.push({
      what: `${active} agent(s) active or error without any heartbeat`,
      sql: "UPDATE agents SET state = 'initializing', state_since = :now, state_reason = 'repaired by db-check: never beat', state_evidence = json_object('rule', 'db-check') WHERE state IN ('active', 'error') AND last_heartbeat_at IS NULL",
      params: { now },
    });
  }
  const dereg = count("SELECT COUNT(*) AS n FROM agents WHERE deregistered_at IS NOT NULL AND state <> 'offline'");
  if (dereg) {
    out.push({
      what: `${dereg} deregistered agent(s) not offline`,
      sql: "UPDATE agents SET state = 'offline', state_since = :now, state_reason = 'repaired by db-check: deregistered', state_evidence = json_object('rule', 'db-check') WHERE deregistered_at IS NOT NULL AND state <> 'offline'",
      params: { now },
    });
  }
  const maint = count("SELECT COUNT(*) AS n FROM agents WHERE state <> 'maintenance' AND maintenance_until IS NOT NULL");
  if (maint) {
    out.push({
      what: `${maint} agent(s) with a maintenance end but not in maintenance`,
      sql: "UPDATE agents SET maintenance_until = NULL WHERE state <> 'maintenance' AND maintenance_until IS NOT NULL",
      params: {},
    });
  }
  const orphaned = count("SELECT COUNT(*) AS n FROM commands c JOIN agents a ON a.id = c.agent_id WHERE c.state = 'executing' AND a.state IN ('offline', 'failed')");
  if (orphaned) {
    out.push({
      what: `${orphaned} command(s) executing for agents that are offline or failed`,
      sql: "UPDATE commands SET state = 'cancelled', finished_at = :now, error = 'cancelled by db-check: agent ' || (SELECT state FROM agents WHERE agents.id = commands.agent_id) WHERE state = 'executing' AND agent_id IN (SELECT id FROM agents WHERE state IN ('offline', 'failed'))",
      params: { now },
    });
  }
  const future = count('SELECT COUNT(*) AS n FROM agents WHERE state_since > :limit', { limit: now + FUTURE_TOLERANCE_MS });
  if (future) {
    out.push({
      what: `${future} agent(s) whose state began in the future`,
      sql: 'UPDATE agents SET state_since = :now WHERE state_since > :limit',
      params: { now, limit: now + FUTURE_TOLERANCE_MS },
    });
  }
  return out;
}
