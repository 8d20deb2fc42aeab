// The processes the tests started, found through /proc: every child a test starts carries LEAK_MARK in its
// environment (set by test/global-setup.ts for the run and by test/helpers.ts for each worker), and inherits it into
// everything it starts, so whatever a test leaves behind can be found, named and killed, wherever it was reparented.
import { readdirSync, readFileSync } from 'node:fs';
import { procStat } from '../src/core/host.js';

/** The environment variable that marks the processes of one test run (`RUN`) and of one test worker (`RUN:PID`). */
export const LEAK_MARK = 'LEAK_MARK_AGENTCTL_TESTS';

export interface Proc {
  pid: number;
  ppid: number;
  pgid: number;
  /** Its command line, joined with spaces (for a report). */
  cmd: string;
  /** The value of LEAK_MARK in the environment it started with, or null. */
  mark: string | null;
}

/** This process's own group: never signalled by the cleanup (it holds the test runner). */
export const OWN_PGID = Number(procStat(process.pid)?.[2] ?? process.pid);

/** Live processes (zombies excluded: they are dead, waiting to be reaped). `withMarks` also reads each environment. */
export function listProcs(withMarks = false): Proc[] {
  const out: Proc[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    const f = procStat(pid);
    if (!f || f[0] === 'Z' || f[0] === 'X') continue;
    let cmd = '';
    let mark: string | null = null;
    if (withMarks) {
      try {
        cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
        const env = readFileSync(`/proc/${pid}/environ`, 'utf8');
        const at = env.indexOf(`${LEAK_MARK}=`);
        if (at === 0 || (at > 0 && env[at - 1] === '\0')) {
          const end = env.indexOf('\0', at);
          mark = env.slice(at + LEAK_MARK.length + 1, end < 0 ? undefined : end);
        }
      } catch {
        continue; // gone meanwhile
      }
    }
    out.push({ pid, ppid: Number(f[1]), pgid: Number(f[2]), cmd, mark });
  }
  return out;
}

/** The pids of `roots` and every live descendant of theirs (by parent pid). */
export function descendantsOf(roots: Iterable<number>, procs: Proc[] = listProcs()): Set<number> {
  const children = new Map<number, number[]>();
  for (const p of procs) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p.pid]);
  const seen = new Set<number>();
  const todo = [...roots];
  while (todo.length) {
    const pid = todo.pop()!;
    if (seen.has(pid)) continue;
    seen.add(pid);
    todo.push(...(children.get(pid) ?? []));
  }
  return seen;
}

/** SIGKILL to process group `pgid` (never our own group, never pid 0 or 1); false if there was no such group. */
export function killGroup(pgid: number): boolean {
  if (!Number.isInteger(pgid) || pgid <= 1 || pgid === OWN_PGID) return false;
  try {
    process.kill(-pgid, 'SIGKILL');
    return true;
  } catch {
    return false;
  }
}

/** SIGKILL to one process (never ourselves, never pid 0 or 1). */
export function killPid(pid: number): void {
  if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone
  }
}

/** Waits (polling, at most `ms`) until none of `pids` is alive; returns those still alive. */
export async function waitGone(pids: Iterable<number>, ms = 10_000): Promise<number[]> {
  const want = new Set(pids);
  const deadline = Date.now() + ms;
  for (;;) {
    const alive = [...want].filter((pid) => {
      const f = procStat(pid);
      return f !== null && f[0] !== 'Z' && f[0] !== 'X';
    });
    if (alive.length === 0 || Date.now() > deadline) return alive;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** One line per process, for a failure message. */
export function describeProcs(procs: Proc[]): string {
  return procs.map((p) => `  pid ${p.pid} (group ${p.pgid}, parent ${p.ppid}): ${p.cmd.slice(0, 300)}`).join('\n');
}
