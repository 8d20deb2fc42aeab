// How times read on the page: the same words as `agentctl status` ("Online now", "42s ago", "never").

/** 250ms, 42s, 5m 3s, 2h 10m, 3d 4h. */
export function formatDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '-';
  const v = Math.max(0, ms);
  if (v < 1000) return `${Math.round(v)}ms`;
  if (v < 60_000) return `${Math.floor(v / 1000)}s`;
  const two = (big: number, small: number, a: string, b: string) => {
    const x = Math.floor(v / big);
    const y = Math.floor((v % big) / small);
    return y ? `${x}${a} ${y}${b}` : `${x}${a}`;
  };
  if (v < 3_600_000) return two(60_000, 1000, 'm', 's');
  if (v < 86_400_000) return two(3_600_000, 60_000, 'h', 'm');
  return two(86_400_000, 3_600_000, 'd', 'h');
}

export interface Seen {
  lastHeartbeatAt: number | null;
  state: string;
  intervalMs: number;
}

/** "Online now" while an active (or erroring) agent beat within its interval, else "42s ago", or "never". */
export function lastSeen(a: Seen, now: number): string {
  if (a.lastHeartbeatAt === null) return 'never';
  const age = Math.max(0, now - a.lastHeartbeatAt);
  if ((a.state === 'active' || a.state === 'error') && age < a.intervalMs) return 'Online now';
  return `${formatDuration(age)} ago`;
}

/** A local date and time, to the second. */
export function clock(ms: number | null): string {
  if (ms === null) return '-';
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}
