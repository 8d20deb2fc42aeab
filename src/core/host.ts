import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';

let cachedBootId: string | null | undefined;

/** This machine's boot id (Linux: /proc/sys/kernel/random/boot_id), or null where there is none. A new boot id proves a reboot. */
export function bootId(): string | null {
  if (cachedBootId === undefined) {
    try {
      cachedBootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || null;
    } catch {
      cachedBootId = null;
    }
  }
  return cachedBootId;
}

/** This host's name as agents record it. */
export function hostName(): string {
  return hostname();
}

/**
 * The start time of process `pid` in clock ticks after boot (field 22 of /proc/PID/stat), or null if there is no such
 * live process (a zombie, killed but not yet reaped, counts as dead). With the pid it identifies one process for the
 * life of a boot: a recycled pid has another start time.
 */
export function processStartTime(pid: number): number | null {
  const fields = procStat(pid);
  if (!fields || fields[0] === 'Z' || fields[0] === 'X') return null;
  const start = Number(fields[19]);
  return Number.isFinite(start) ? start : null;
}

/**
 * The fields of /proc/PID/stat from field 3 (the state letter) on, so field N is at index N − 3; null when there is
 * no such process. The command name (field 2) may contain spaces and parentheses: the rest starts past the last ')'.
 */
export function procStat(pid: number): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** True if a process with this pid exists (signal 0), including ones we may not signal. */
export function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
