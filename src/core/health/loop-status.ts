import type { Store } from '../../store/store.js';
import { type HealthLoopRecord, type MonitorRecord, readLoops, readMonitor } from '../../store/monitor.js';
import { formatDuration } from '../duration.js';
import { safeText } from '../text.js';

/** One health loop seen on the database (a row of health_loops), as `status --json` lists it. */
export interface LoopSighting {
  host: string;
  pid: number;
  lastPassAt: number | null;
  everyMs: number | null;
  passes: number;
  /** Its last pass is older than its own overdue limit. */
  overdue: boolean;
  stoppedAt: number | null;
}

/** Whether a health loop is keeping up, as `status` and `check` report it. */
export interface HealthLoopStatus {
  /** False when no health loop has ever passed on this database. */
  ran: boolean;
  /** The latest pass of any loop. */
  lastPassAt: number | null;
  ageMs: number | null;
  everyMs: number | null;
  /** A pass older than this counts as overdue: 3 periods, and never less than a period plus 30 s. */
  overdueAfterMs: number;
  overdue: boolean;
  /** The health loops seen, the latest pass first (none on a database no loop of schema version 7 has passed on). */
  loops: LoopSighting[];
  /** The hosts on which a loop is keeping up, sorted. */
  hosts: string[];
  /** One line for humans, or null when all is well. */
  warning: string | null;
}

/** For cron `--once` runs that did not say how often they run: the crontab line in the README runs every minute. */
const ASSUMED_CRON_MS = 60_000;

const overdueAfter = (everyMs: number | null) => {
  const every = everyMs ?? ASSUMED_CRON_MS;
  return Math.max(3 * every, every + 30_000);
};

/** Reads the health loops' own heartbeats (health_loops; monitor_state before any loop wrote one) and says whether any keeps up at `now`. */
export async function healthLoopStatus(store: Store, now: number): Promise<HealthLoopStatus> {
  const loops = await readLoops(store);
  return loops.length ? loopsStatusOf(loops, now) : loopStatusOf(await readMonitor(store), now);
}

/** The judgement from the health_loops rows already read: the loop that passed last decides; each is listed. */
export function loopsStatusOf(loops: readonly HealthLoopRecord[], now: number): HealthLoopStatus {
  const passed = loops.filter((l) => l.lastPassAt !== null).sort((a, b) => b.lastPassAt! - a.lastPassAt!);
  const latest = passed[0];
  const status = loopStatusOf(latest ? { passSeq: latest.lastPassSeq ?? 0, lastPassAt: latest.lastPassAt, lastPassMs: latest.lastPassMs, everyMs: latest.everyMs, monitorPid: latest.pid, monitorHost: latest.host, eventCursor: null } : null, now);
  const sightings = passed.map((l) => ({ host: l.host, pid: l.pid, lastPassAt: l.lastPassAt, everyMs: l.everyMs, passes: l.passes, overdue: now - l.lastPassAt! > overdueAfter(l.everyMs), stoppedAt: l.stoppedAt }));
  const hosts = [...new Set(sightings.filter((l) => !l.overdue).map((l) => l.host))].sort();
  const seen = [...new Set(sightings.map((l) => l.host))].sort();
  const warning = status.warning && status.ran && seen.length ? `${status.warning} (last seen on ${seen.map((h) => safeText(h)).join(', ')})` : status.warning;
  return { ...status, loops: sightings, hosts, warning };
}

/** The same judgement from a monitor_state record already read (one loop). */
export function loopStatusOf(m: MonitorRecord | null, now: number): HealthLoopStatus {
  const lastPassAt = m?.lastPassAt ?? null;
  const every = m?.everyMs ?? ASSUMED_CRON_MS;
  const overdueAfterMs = overdueAfter(m?.everyMs ?? null);
  if (lastPassAt === null) {
    return { ran: false, lastPassAt, ageMs: null, everyMs: m?.everyMs ?? null, overdueAfterMs, overdue: true, loops: [], hosts: [], warning: "no health loop has run on this database: nothing persists transitions, sends alerts or cancels work (run 'agentctl monitor')" };
  }
  const ageMs = now - lastPassAt;
  const overdue = ageMs > overdueAfterMs;
  const host = m?.monitorHost ?? null;
  return {
    ran: true,
    lastPassAt,
    ageMs,
    everyMs: m?.everyMs ?? null,
    overdueAfterMs,
    overdue,
    loops: [],
    hosts: host !== null && !overdue ? [host] : [],
    warning: overdue ? `no health loop has passed for ${formatDuration(ageMs)} (expected every ${formatDuration(every)}); is 'agentctl monitor' running?` : null,
  };
}
