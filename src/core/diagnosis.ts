import type { HealthLoopRecord, MonitorRecord } from '../store/monitor.js';
import { formatDuration } from './duration.js';
import { loopStatusOf, loopsStatusOf } from './health/loop-status.js';
import { safeText } from './text.js';

/** One finding of db-check: `ok` findings are information, the rest are problems. */
export interface Finding {
  check: string;
  ok: boolean;
  detail: string;
  /** What `db-check --fix` would do about it, when it can. */
  fix?: string;
}

/** What db-check found, whatever the engine (each engine's diagnose, in src/store/<engine>/diagnose.ts, makes one). */
export interface Diagnosis {
  path: string;
  /** 'healthy' (exit 0), 'problems' (exit 1) or 'unusable' (exit 4: not SQLite, corrupt, too new). */
  verdict: 'healthy' | 'problems' | 'unusable';
  findings: Finding[];
  /** Rows that break the state model, as repairable facts. */
  repairs: Repair[];
}

/** A row that breaks the state model, and the statement that repairs it. */
export interface Repair {
  what: string;
  sql: string;
  params: Record<string, unknown>;
}

/**
 * The health loop's last pass, from the monitor record and the loops seen. Never having run one is information,
 * not a problem; one that stopped is.
 */
export function healthLoopFinding(record: MonitorRecord | null, loops: HealthLoopRecord[], now: number): Finding {
  const s = loops.length ? loopsStatusOf(loops, now) : loopStatusOf(record, now);
  if (!s.ran) return { check: 'health loop', ok: true, detail: "no health loop has run on this database (run 'agentctl monitor')" };
  const by = record?.monitorPid ? ` by pid ${record.monitorPid}${record.monitorHost ? ` on ${safeText(record.monitorHost)}` : ''}` : '';
  // The loops seen (health_loops, version 7): how many, on which hosts, and which of them keep up.
  const seen = s.loops.length
    ? `; ${s.loops.length} health loop${s.loops.length === 1 ? '' : 's'} seen: ${s.loops.slice(0, 10).map((l) => `pid ${l.pid} on ${safeText(l.host || '?')} (${l.stoppedAt !== null ? 'stopped' : l.overdue ? 'overdue' : 'passing'}, last pass ${formatDuration(Math.max(0, now - (l.lastPassAt ?? now)))} ago)`).join(', ')}${s.loops.length > 10 ? ', …' : ''}`
    : '';
  return {
    check: 'health loop',
    ok: !s.overdue,
    detail: `last pass ${formatDuration(s.ageMs ?? 0)} ago${by}, ${record?.passSeq ?? 0} passes${seen}${s.warning ? `: ${s.warning}` : ''}`,
  };
}
