import { procStat, processStartTime } from './host.js';
import { setTimeout as sleep } from 'node:timers/promises';

/** A process as the database names it: a pid and the start time it had. Signalled only while both still match. */
export interface ProcessRef {
  pid: number;
  startTime: number | null;
}

/** Whether `ref` still names the same live process (a recycled pid has another start time; a zombie is dead). */
export function isSameProcess(ref: ProcessRef): boolean {
  return ref.startTime !== null && processStartTime(ref.pid) === ref.startTime;
}

/** The process group of a pid (field 5 of /proc/PID/stat), or null. */
export function processGroup(pid: number): number | null {
  const pgrp = Number(procStat(pid)?.[2]);
  return Number.isInteger(pgrp) ? pgrp : null;
}

/**
 * Sends `sig` to the process `ref` names, after checking (again, right before) that it is still that process.
 * A process that leads its own group (as `agentctl run` children do) gets it through its group, so its children
 * go too; one in somebody else's group (a shell's, ours) gets it alone. Returns what was signalled, or null.
 */
export function signalProcess(ref: ProcessRef, sig: NodeJS.Signals): 'group' | 'process' | null {
  if (!isSameProcess(ref)) return null;
  const pgrp = processGroup(ref.pid);
  const ownGroup = processGroup(process.pid);
  try {
    if (pgrp === ref.pid && pgrp !== ownGroup) {
      process.kill(-pgrp, sig);
      return 'group';
    }
    process.kill(ref.pid, sig);
    return 'process';
  } catch {
    return null;
  }
}

/** Waits until none of `refs` is alive any more (or `ms` pass); returns whether they are all gone. */
export async function waitGone(refs: ProcessRef[], ms: number, everyMs = 25): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (refs.every((r) => !isSameProcess(r))) return true;
    if (Date.now() >= deadline) return false;
    await sleep(everyMs);
  }
}
