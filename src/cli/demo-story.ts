import type { AgentView } from '../core/agents.js';
import { formatDuration } from '../core/duration.js';
import type { ProcessRef } from '../core/process-control.js';

/** What the demo shows above the table, and (once) the worker to kill. */
export interface StoryStep {
  /** What is happening; stays the same while nothing changes (the demo prints it again only when it does). */
  line: string;
  /** A countdown that follows the line on the screen ("in 3s…"), left out where only changes are printed. */
  countdown?: string;
  kill?: ProcessRef;
}

/** What the database says at one tick: the demo's agents (those registered so far) and the health loop's last pass. */
export interface StoryInput {
  agents: AgentView[];
  lastPassAt: number | null;
}

type Phase =
  | { kind: 'starting' }
  | { kind: 'killed'; pid: number; incarnation: number }
  | { kind: 'offline'; pid: number; incarnation: number; reason: string }
  | { kind: 'back'; pid: number | null };

export interface StoryOptions {
  /** Every agent the demo runs; "all running" waits for each of them. */
  agents: string[];
  /** The agent whose worker is killed. */
  victim: string;
  /** When the demo started (epoch ms): only beats and passes since then count. */
  startedAt: number;
  /** When to kill it (epoch ms); later if the fleet is not all running by then. */
  killAt: number;
  /** Whether its wrapper restarts it (`run --restart on-failure`). */
  restart: boolean;
  backoffMs: number;
  /** The database, for the commands the story suggests. */
  db: string;
  /** Whether the database outlives the demo (--db or --keep): if not, the suggestions hold only while it runs. */
  kept: boolean;
}

/**
 * The demo's plot as a state machine over what the database says: agents start, the victim's worker is killed once
 * every agent has beaten and the health loop has passed and the victim's time has come, it goes offline, and (with
 * restart) comes back as a new incarnation. It reads views and returns text; the caller does the killing, so the
 * plot can be followed without processes.
 */
export class DemoStory {
  private phase: Phase = { kind: 'starting' };
  /** Whether "all running" has been shown: it is, for at least one tick, before the kill. */
  private announced = false;

  constructor(private readonly o: StoryOptions) {}

  /** Advances the story to `now` from what the database says. */
  tick(input: StoryInput, now: number): StoryStep {
    const name = this.o.victim;
    const victim = input.agents.find((a) => a.name === name);
    const p = this.phase;
    if (p.kind === 'starting') {
      const beating = this.o.agents.filter((n) => this.beatingSinceStart(input.agents.find((a) => a.name === n)));
      const passed = input.lastPassAt !== null && input.lastPassAt >= this.o.startedAt;
      const ready = beating.length === this.o.agents.length && passed && victim?.pid != null && victim.pidStartTime !== null;
      if (!ready) {
        const progress = `${beating.length} of ${this.o.agents.length} agents beating, ${passed ? 'the health loop has passed' : 'no health-loop pass yet'}`;
        return {
          line:
            now < this.o.killAt
              ? `starting ${this.o.agents.length} agents under agentctl run, and the health loop (agentctl monitor --every 1s): ${progress}…`
              : `waiting for every agent to beat and the health loop to pass before killing ${name}'s worker: ${progress}…`,
        };
      }
      if (now < this.o.killAt || !this.announced) {
        this.announced = true;
        return {
          line: `all running: ${this.o.agents.length} agents beating and the health loop passing; ${name}'s worker (pid ${victim.pid}) is killed next`,
          countdown: ` (in ${Math.ceil((this.o.killAt - now) / 1000)}s)`,
        };
      }
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

  /** Active, with a heartbeat from the incarnation this demo started (not one left in a reused --db). */
  private beatingSinceStart(a: AgentView | undefined): boolean {
    return a !== undefined && a.state === 'active' && a.startedAt >= this.o.startedAt && a.lastHeartbeatAt !== null && a.lastHeartbeatAt >= a.startedAt;
  }

  /** The command that shows the victim's history, runnable from another terminal. */
  private historyHint(): string {
    const hint = `its history: agentctl --db ${this.o.db} history ${this.o.victim}`;
    return this.o.kept ? hint : `${hint} while the demo runs (--keep keeps the database afterwards)`;
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
          : `${name} is offline (${p.reason}): agentctl run saw its worker die. It stays down (with --restart it would come back); ${this.historyHint()}`;
      case 'back':
        return `${name} is back: agentctl run restarted its worker${p.pid !== null ? ` (pid ${p.pid})` : ''} and it heartbeats again; ${this.historyHint()}`;
    }
  }
}
