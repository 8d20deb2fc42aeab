// Marks this test run's processes, and fails the run if any of them is still alive when every test file is done
// (a process a test left behind that its own cleanup missed, for example one started outside a test).
import { randomBytes } from 'node:crypto';
import { LEAK_MARK, describeProcs, killGroup, killPid, listProcs, waitGone } from './processes.js';

export function setup(): () => Promise<void> {
  const run = `run-${randomBytes(6).toString('hex')}`;
  // Inherited by the test workers (started after this), and from them by everything they start.
  process.env[LEAK_MARK] = run;
  return async () => {
    const procs = listProcs(true);
    // The workers themselves (our children) carry the run's mark: what they started carries `run:worker`.
    const leaked = procs.filter((p) => p.pid !== process.pid && p.ppid !== process.pid && (p.mark === run || p.mark?.startsWith(`${run}:`)));
    if (leaked.length === 0) return;
    for (const p of leaked) if (!killGroup(p.pgid)) killPid(p.pid);
    await waitGone(leaked.map((p) => p.pid));
    process.stderr.write(`\nThe tests left ${leaked.length} process${leaked.length === 1 ? '' : 'es'} behind (killed now):\n${describeProcs(leaked)}\n`);
    process.exitCode = 1;
  };
}
