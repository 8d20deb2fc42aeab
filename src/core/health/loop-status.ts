import type { Store } from '../../store/store.js';
import { type MonitorRecord, readMonitor } from '../../store/monitor.js';
import { formatDuration } from '../duration.js';

/** Whether a health loop is keeping up, as `status` and `check` report it. */
export interface HealthLoopStatus {
  /** False when no health loop has ever passed on this database. */
  ran: boolean;
  lastPassAt: number | null;
  ageMs: number | null;
  everyMs: number | null;
  /** A pass older than this counts as overdue: 3 periods, and never less than a period plus 30 s. */
  overdueAfterMs: number;
  overdue: boolean;
  /** One line for humans, or null when all is well. */
  warning: string | null;
}

/** For cron `--once` runs that did not say how often they run: the crontab line in the README runs every minute. */
const ASSUMED_CRON_MS = 60_000;

/** Reads the health loop's own heartbeat and says whether it is overdue at `now`. */
export async function healthLoopStatus(store: Store, now: number): Promise<HealthLoopStatus> {
  return loopStatusOf(await readMonitor(store), now);
}

/** The same judgement from a record already read. */
export function loopStatusOf(m: MonitorRecord | null, now: number): HealthLoopStatus {
  const lastPassAt = m?.lastPassAt ?? null;
  const every = m?.everyMs ?? ASSUMED_CRON_MS;
  const overdueAfterMs = Math.max(3 * every, every + 30_000);
  if (lastPassAt === null) {
    return { ran: false, lastPassAt, ageMs: null, everyMs: m?.everyMs ?? null, overdueAfterMs, overdue: true, warning: "no health loop has run on this database: nothing persists transitions, sends alerts or cancels work (run 'agentctl monitor')" };
  }
  const ageMs = now - lastPassAt;
  const overdue = ageMs > overdueAfterMs;
  return {
    ran: true,
    lastPassAt,
    ageMs,
    everyMs: m?.everyMs ?? null,
    overdueAfterMs,
    overdue,
    warning: overdue ? `no health loop has passed for ${formatDuration(ageMs)} (expected every ${formatDuration(every)}); is 'agentctl monitor' running?` : null,
  };
}
