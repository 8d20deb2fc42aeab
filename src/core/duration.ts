import { UsageError } from '../errors.js';

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION_RE = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/;
/** The longest duration accepted anywhere: 10 years, so that sums with epoch times stay exact integers. */
export const MAX_DURATION_MS = 10 * 365 * 86_400_000;

/**
 * Parses `250ms`, `30s`, `5m`, `1h`, `2d`, or a bare number of seconds (as in the seeds' settings) into milliseconds.
 * Throws UsageError naming `what` for anything else, for zero unless `allowZero`, and past ten years.
 */
export function parseDuration(text: string, what = 'duration', opts: { allowZero?: boolean } = {}): number {
  const trimmed = String(text).trim();
  const m = DURATION_RE.exec(trimmed);
  if (!m) throw new UsageError(`invalid ${what} '${text}': use a number with a unit, like 250ms, 30s, 5m, 1h or 2d (a bare number means seconds)`);
  const ms = Math.round(Number(m[1]) * UNITS[m[2] ?? 's']!);
  if (ms === 0 && !opts.allowZero) throw new UsageError(`invalid ${what} '${text}': must be more than zero`);
  if (ms > MAX_DURATION_MS) throw new UsageError(`invalid ${what} '${text}': longer than the 10-year limit`);
  return ms;
}

/** Compact human form of a duration: `850ms`, `42s`, `5m`, `1h 5m`, `3d 4h`. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return '-';
  const neg = ms < 0;
  let v = Math.abs(ms);
  let out: string;
  if (v < 1000) out = `${Math.round(v)}ms`;
  else if (v < 60_000) out = `${Math.floor(v / 1000)}s`;
  else if (v < 3_600_000) {
    const m = Math.floor(v / 60_000);
    const s = Math.floor((v % 60_000) / 1000);
    out = s ? `${m}m ${s}s` : `${m}m`;
  } else if (v < 86_400_000) {
    const h = Math.floor(v / 3_600_000);
    const m = Math.floor((v % 3_600_000) / 60_000);
    out = m ? `${h}h ${m}m` : `${h}h`;
  } else {
    v = Math.floor(v / 3_600_000);
    const d = Math.floor(v / 24);
    const h = v % 24;
    out = h ? `${d}d ${h}h` : `${d}d`;
  }
  return neg ? `-${out}` : out;
}

/** An ISO 8601 time (UTC) for a time in ms, or null. */
export function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}
