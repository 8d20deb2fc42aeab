import type { AgentView } from '../core/agents.js';
import { safeText } from '../core/text.js';
import type { StoryStep } from './demo-story.js';

/** What one tick of the demo saw. */
export interface DemoTick {
  step: StoryStep;
  /** The demo's agents, as the database has them now. */
  agents: AgentView[];
  lastPassAt: number | null;
}

/** A process of the demo as far as its changes go: its label, how it ended, and the last line it wrote. */
export interface ProcessSeen {
  readonly label: string;
  readonly exit: { code: number | null; signal: NodeJS.Signals | null } | null;
  readonly lastLine: string;
}

/**
 * The demo for a reader that is not a terminal (a pipe, a log, CI): instead of a screen per tick, one line for each
 * thing that changed since the last tick: an agent's state, the health loop's first pass, a process that exited, and
 * the story's line.
 */
export class DemoChanges {
  private line = '';
  private readonly states = new Map<string, string>();
  private passed = false;
  private readonly exited = new Set<string>();

  constructor(private readonly startedAt: number) {}

  /** The lines that say what changed since the previous call. */
  next(t: DemoTick, procs: readonly ProcessSeen[]): string[] {
    const out: string[] = [];
    for (const a of t.agents) {
      if (this.states.get(a.name) === a.state) continue;
      this.states.set(a.name, a.state);
      out.push(`${a.name} is ${a.state}${a.stateReason ? ` (${safeText(a.stateReason)})` : ''}`);
    }
    if (!this.passed && t.lastPassAt !== null && t.lastPassAt >= this.startedAt) {
      this.passed = true;
      out.push('the health loop has passed for the first time');
    }
    for (const p of procs) {
      if (!p.exit || this.exited.has(p.label)) continue;
      this.exited.add(p.label);
      // The demo's processes are agentctl itself: a wrapper per agent, and the monitor.
      const who = p.label === 'monitor' ? 'agentctl monitor' : `agentctl run for ${p.label}`;
      const how = p.exit.signal ? `killed by ${p.exit.signal}` : `with code ${p.exit.code}`;
      out.push(`${who} exited ${how}${p.lastLine ? ` (last output: ${safeText(p.lastLine)})` : ''}`);
    }
    if (t.step.line && t.step.line !== this.line) {
      this.line = t.step.line;
      out.push(t.step.line);
    }
    return out;
  }
}

/** A local wall-clock time as HH:MM:SS, the same in every locale. */
export function clockTime(ms: number): string {
  const d = new Date(ms);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
}
