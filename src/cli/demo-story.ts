import type { AgentView } from '../core/agents.js';
import { formatDuration } from '../core/duration.js';
import type { ProcessRef } from '../core/process-control.js';

/** What the demo shows above the table, and (once) the worker to kill. */
export interface StoryStep {
  line: string;
  kill?: ProcessRef;
}

type Phase =
  | { kind: 'starting' }
  | { kind: 'killed'; pid: number; incarnation: number }
  | { kind: 'offline'; pid: number; incarnation: number; reason: string }
  | { kind: 'back'; pid: number | null };

export interface StoryOptions {
  /** The agent whose worker is killed. */
  victim: string;
  /** When to kill it (epoch ms); later if it is not active by then. */
  killAt: number;
  /** Whether its wrapper restarts it (`run --restart on-failure`). */
  restart: boolean;
  backoffMs: number;
}

/**
 * The demo's plot as a state machine over what the database says: agents start, the victim's worker is killed once
 * the victim is active and its time has come, it goes offline, and (with restart) comes back as a new incarnation.
 * It reads views and returns text; the caller does the killing, so the plot can be followed without processes.
 */
export class DemoStory {
  private phase: Phase = { kind: 'starting' };

  constructor(private readonly o: StoryOptions) {}

  /** Advances the story to `now` from the victim's view (undefined before it registered). */
  tick(victim: AgentView | undefined, now: number): StoryStep {
    const name = this.o.victim;
    const p = this.phase;
    if (p.kind === 'starting') {
      const ready = victim?.state === 'active' && victim.pid !== null && victim.pidStartTime !== null;
      if (!ready) {
        return { line: now < this.o.killAt ? 'starting three agents under agentctl run, and the health loop (agentctl monitor --every 1s)…' : `waiting for ${name} to be active before killing its worker…` };
      }
      if (now < this.o.killAt) return { line: `all running. Killing ${name}'s worker (pid ${victim.pid}) in ${Math.ceil((this.o.killAt - now) / 1000)}s…` };
      this.phase = { kind: 'killed', pid: victim.pid!, incarnation: victim.incarnation };
      return { line: `killing ${name}'s worker (pid ${victim.pid}) with SIGKILL…`, kill: { pid: victim.pid!, startTime: victim.pidStartTime } };
    }
    if (p.kind === 'killed' || p.kind === 'offline') {
      if (victim && victim.incarnation > p.incarnation && victim.state === 'active') {
        this.phase = { kind: 'back', pid: victim.pid };
      } else if (p.kind === 'killed' && victim?.state === 'offline') {
        this.phase = { kind: 'offline', pid: p.pid, incarnation: p.incarnation, reason: victim.stateReason ?? 'gone' };
      }
    }
    return { line: this.describe() };
  }

  private describe(): string {
    const name = this.o.victim;
    const p = this.phase;
    switch (p.kind) {
      case 'starting':
        return '';
      case 'killed':
        return `${name}'s worker (pid ${p.pid}) was killed with SIGKILL; watch it go offline`;
      case 'offline':
        return this.o.restart
          ? `${name} is offline (${p.reason}): agentctl run saw its worker die; it restarts it after a ${formatDuration(this.o.backoffMs)} backoff…`
          : `${name} is offline (${p.reason}): agentctl run saw its worker die. It stays down (with --restart it would come back).`;
      case 'back':
        return `${name} is back: agentctl run restarted its worker${p.pid !== null ? ` (pid ${p.pid})` : ''} and it heartbeats again (see: agentctl history ${name})`;
    }
  }
}
