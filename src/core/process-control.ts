import { readFileSync, readdirSync } from 'node:fs';
import { basename } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { procStat, processStartTime } from './host.js';

/**
 * A process as the database names it: a pid and the start time it had. Signalled only while both still match.
 * `group`: signal its whole process group. Only for a process that an `agentctl run` started as the leader of a group
 * of its own, checked when the plan is made (see agentctlRunProblem); right before the signal, the leader's identity
 * (pid and start time) and its leading that group are checked again.
 */
export interface ProcessRef {
  pid: number;
  startTime: number | null;
  group?: boolean;
}

/** Whose processes may be signalled: the real uid they must have (see ownership.ts: the database owner's, or our own). */
export interface SignalRules {
  uid: number;
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

/** The parent of a pid (field 4 of /proc/PID/stat), or null. */
export function parentPid(pid: number): number | null {
  const ppid = Number(procStat(pid)?.[1]);
  return Number.isInteger(ppid) ? ppid : null;
}

/** The real uid of a process (the first field of `Uid:` in /proc/PID/status): the kernel's, whatever the process says. */
export function processUid(pid: number): number | null {
  try {
    const m = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/**
 * Why `pid` may not be signalled under `rules`, or null if it may. Never pid 0 or 1 (kill(2) reads them, and their
 * negatives, as "my group" and "every process"), never agentctl itself or a process in its own group, never a
 * process whose real uid is not the allowed one. The caller has checked the start time.
 */
export function signalProblem(pid: number, rules: SignalRules): string | null {
  if (!Number.isSafeInteger(pid) || pid <= 1) return `pid ${pid} is ${pid === 1 ? 'init (as a group, every process)' : 'no single process'}`;
  if (pid === process.pid) return `pid ${pid} is this agentctl process`;
  const own = processGroup(process.pid);
  if (own !== null && processGroup(pid) === own) return `pid ${pid} is in agentctl's own process group ${own}`;
  const uid = processUid(pid);
  if (uid === null) return null; // gone meanwhile: nothing will be signalled
  if (uid !== rules.uid) return `pid ${pid} runs as uid ${uid}, and only uid ${rules.uid}'s processes may be signalled for this database`;
  return null;
}

/**
 * Why `pid` is not the `agentctl run` supervising agent `name`, or null if it is. Read from /proc/PID/cmdline: a
 * process of another user cannot make it say so for a process it does not own, and one of the allowed uid could
 * only fool us into signalling its own process (which its owner may do anyway).
 */
export function agentctlRunProblem(pid: number, name: string): string | null {
  let argv: string[];
  try {
    argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return null; // gone meanwhile
  }
  const entry = argv.findIndex((a, i) => i > 0 && /^agentctl(\.[cm]?js)?$/.test(basename(a)));
  const end = argv.indexOf('--', entry);
  const words = entry < 0 ? [] : argv.slice(entry + 1, end < 0 ? undefined : end);
  let sub: string | undefined;
  for (let i = 0; i < words.length && sub === undefined; i++) {
    if (words[i] === '--db') i++;
    else if (!words[i]!.startsWith('-')) sub = words[i];
  }
  const shown = argv.filter(Boolean).join(' ').slice(0, 80);
  if (sub !== 'run') return `pid ${pid} is not an agentctl run (it is '${shown}')`;
  const named = words.findIndex((w) => w === '--name' || w.startsWith('--name='));
  const runsFor = named < 0 ? undefined : words[named]!.startsWith('--name=') ? words[named]!.slice(7) : words[named + 1];
  if (runsFor !== undefined && runsFor !== name) return `pid ${pid} is the agentctl run of '${runsFor}', not of '${name}'`;
  return null;
}

/** The pids in process group `pgid` (from /proc). */
function groupMembers(pgid: number): number[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  return entries.filter((e) => /^\d+$/.test(e)).map(Number).filter((p) => processGroup(p) === pgid);
}

/**
 * Sends `sig` to the process `ref` names, after checking (again, right before) that it is still that process and
 * that `rules` allow it (signalProblem). A `group` ref that still leads its group (and is not in ours) gets it
 * through the group, so its children go too; members of another uid (a setuid program it ran) are left out, the
 * others get it one by one. Returns what was signalled, or null (gone, or no longer allowed).
 */
export function signalProcess(ref: ProcessRef, sig: NodeJS.Signals, rules: SignalRules = { uid: process.getuid?.() ?? -1 }): 'group' | 'process' | null {
  if (!isSameProcess(ref) || signalProblem(ref.pid, rules) !== null) return null;
  try {
    if (ref.group && processGroup(ref.pid) === ref.pid) {
      const members = groupMembers(ref.pid);
      if (members.every((p) => processUid(p) === rules.uid)) {
        process.kill(-ref.pid, sig);
      } else {
        for (const p of members) if (processUid(p) === rules.uid && p !== process.pid) tryKill(p, sig);
      }
      return 'group';
    }
    process.kill(ref.pid, sig);
    return 'process';
  } catch {
    return null;
  }
}

function tryKill(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // exited meanwhile
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
