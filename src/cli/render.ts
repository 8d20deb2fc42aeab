import { Chalk, type ChalkInstance } from 'chalk';
import type { AgentView } from '../core/agents.js';
import { formatDuration, iso } from '../core/duration.js';
import { countStates } from '../core/state.js';
import type { AgentState } from '../store/rows.js';

/** A chalk that colours only when `enabled` (TTY, no NO_COLOR, no --no-color). */
export function painter(enabled: boolean): ChalkInstance {
  return new Chalk({ level: enabled ? 1 : 0 });
}

export function paintState(c: ChalkInstance, state: AgentState): string {
  switch (state) {
    case 'active':
      return c.green(state);
    case 'initializing':
      return c.cyan(state);
    case 'stale':
    case 'error':
      return c.yellow(state);
    case 'offline':
    case 'failed':
      return c.red(state);
    case 'maintenance':
      return c.blue(state);
  }
}

/** Seed 000's last-seen text: "Online now" while beating on time, "42s ago", or "never". */
export function lastSeen(a: AgentView): string {
  if (a.lastHeartbeatAt === null || a.heartbeatAgeMs === null) return 'never';
  if ((a.state === 'active' || a.state === 'error') && a.heartbeatAgeMs < a.intervalMs) return 'Online now';
  return `${formatDuration(Math.max(0, a.heartbeatAgeMs))} ago`;
}

/** "3 agents: 2 active, 1 offline" */
export function summaryLine(agents: AgentView[], c?: ChalkInstance): string {
  const counts = countStates(agents);
  const parts = Object.entries(counts)
    .filter(([, n]) => n > 0)
    .map(([s, n]) => `${n} ${c ? paintState(c, s as AgentState) : s}`);
  return `${plural(agents.length, 'agent')}${parts.length ? `: ${parts.join(', ')}` : ''}`;
}

/** `n word`, or `n words`. */
export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** `s` on one line, cut to `n` characters with an ellipsis. */
export function oneLine(s: string, n: number): string {
  const one = s.replace(/\s+/g, ' ');
  return one.length > n ? `${one.slice(0, n - 1)}…` : one;
}


/** An agent as the JSON outputs give it: the view plus ISO times and the seconds seed 003 uses. */
export function agentJson(a: AgentView) {
  return {
    ...a,
    lastHeartbeat: iso(a.lastHeartbeatAt),
    stateSinceIso: iso(a.stateSince),
    secondsSinceHeartbeat: a.heartbeatAgeMs === null ? null : Math.floor(a.heartbeatAgeMs / 1000),
  };
}
