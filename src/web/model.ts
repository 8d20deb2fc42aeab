// What the page knows about the fleet: the agents as the read API gave them, patched by the live stream's events
// between refreshes, and the server's clock (ages are computed against it, not the browser's).
import type { Agent, AgentEvent, Fleet, HealthLoop } from './api.js';

export interface Row extends Agent {
  /** When this incarnation started beating, on the server's clock (null: not up). */
  upSince: number | null;
}

type Listener = (changed: Set<string> | null) => void;

const DOWN = new Set(['offline', 'failed']);

export class Model {
  readonly agents = new Map<string, Row>();
  /** Names in display order (sorted by name), rebuilt when the set of agents changes. */
  order: string[] = [];
  healthLoop: HealthLoop | null = null;
  loaded = false;
  private offset = 0;
  private readonly listeners = new Set<Listener>();

  /** Now, on the server's clock. */
  now(): number {
    return Date.now() + this.offset;
  }

  subscribe(fn: Listener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private emit(changed: Set<string> | null): void {
    for (const fn of this.listeners) fn(changed);
  }

  private row(a: Agent, at: number): Row {
    return { ...a, upSince: a.uptimeMs === null || a.uptimeMs === undefined ? null : at - a.uptimeMs };
  }

  /** Keeps what an event newer than the fetched row already told (a fetch may answer after a later event). */
  private merge(fresh: Row): Row {
    const old = this.agents.get(fresh.name);
    if (old && old.stateSince > fresh.stateSince) {
      return { ...fresh, state: old.state, stateSince: old.stateSince, stateReason: old.stateReason, stateEvidence: old.stateEvidence, upSince: old.upSince };
    }
    return fresh;
  }

  /** The whole fleet from GET /api/v1/agents. */
  setFleet(f: Fleet): void {
    const at = Date.parse(f.generatedAt);
    this.offset = at - Date.now();
    const next = new Map<string, Row>();
    for (const a of f.agents) next.set(a.name, this.merge(this.row(a, at)));
    const sameSet = next.size === this.agents.size && [...next.keys()].every((k) => this.agents.has(k));
    this.agents.clear();
    for (const [k, v] of next) this.agents.set(k, v);
    if (!sameSet || !this.loaded) this.order = [...next.keys()].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
    this.healthLoop = f.healthLoop;
    this.loaded = true;
    this.emit(null);
  }

  /** One agent from GET /api/v1/agents/<name>. */
  setAgent(a: Agent, generatedAt: string): void {
    const isNew = !this.agents.has(a.name);
    this.agents.set(a.name, this.merge(this.row(a, Date.parse(generatedAt))));
    if (isNew) this.order = [...this.agents.keys()].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
    this.emit(new Set([a.name]));
  }

  /** An event from the stream: the agent's state changes at once; false when the agent is not known yet. */
  apply(e: AgentEvent): boolean {
    const a = this.agents.get(e.agentName);
    if (!a) return false;
    if (e.at >= a.stateSince) {
      a.state = e.toState;
      a.stateSince = e.at;
      a.stateReason = e.reason;
      a.stateEvidence = e.evidence;
      if (DOWN.has(e.toState)) a.upSince = null;
    }
    this.emit(new Set([e.agentName]));
    return true;
  }

  /** Counts by state over the whole fleet. */
  counts(): Record<string, number> {
    const c: Record<string, number> = {};
    for (const a of this.agents.values()) c[a.state] = (c[a.state] ?? 0) + 1;
    return c;
  }
}

export const STATES = ['active', 'initializing', 'stale', 'error', 'maintenance', 'offline', 'failed'] as const;
