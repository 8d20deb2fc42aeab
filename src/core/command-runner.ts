import { randomUUID } from 'node:crypto';
import { claimCommand, commandStates, expireCommands, finishCommand } from '../store/commands.js';
import type { Store } from '../store/store.js';

/** A command as the handler of `agent.onCommand` receives it. */
export interface AgentCommand {
  id: number;
  /** The payload as sent (`agentctl send NAME -- PAYLOAD`). */
  payload: string;
  createdAt: number;
  deadlineAt: number | null;
  /** Aborted when the command is cancelled (by an operator, its deadline, or its agent going offline) or the agent stops. */
  signal: AbortSignal;
  /** The payload parsed as JSON. */
  json<T = unknown>(): T;
}

/** A handler's return value is the command's result: a string as is, anything else as JSON. Throwing fails the command with the message. */
export type CommandHandler = (cmd: AgentCommand) => unknown | Promise<unknown>;

interface InFlight {
  token: string;
  controller: AbortController;
  done: Promise<void>;
}

/** What the runner needs from its agent: the current connection and incarnation, the clock, and where to report. */
export interface RunnerHost {
  store(): Store | null;
  incarnation(): number | null;
  name: string;
  now(): number;
  failed(err: unknown): void;
  report(event: 'commandCompleted' | 'commandRejected', data: Record<string, unknown>): void;
}

/**
 * Claims and runs an agent's commands one at a time (seed 001's command records, seed 004's handlers). A claim
 * is fenced by a fresh token and the agent's incarnation; the completion carries the token, so a result from a
 * process presumed dead (its commands cancelled, or claimed again since) is rejected by the database.
 */
export class CommandRunner {
  private readonly inflight = new Map<number, InFlight>();

  constructor(private readonly host: RunnerHost, private readonly handler: CommandHandler) {}

  get busy(): boolean {
    return this.inflight.size > 0;
  }

  /** One poll: notice cancelled in-flight commands, settle expired ones, claim the next if idle. Never throws. */
  async poll(): Promise<void> {
    const store = this.host.store();
    const incarnation = this.host.incarnation();
    if (!store || incarnation === null) return;
    try {
      const now = this.host.now();
      if (this.inflight.size) {
        const states = await commandStates(store, [...this.inflight.keys()]);
        for (const [id, f] of this.inflight) if (states.get(id) !== 'executing') f.controller.abort(new Error(`command ${id} is ${states.get(id) ?? 'gone'}`));
        return;
      }
      await expireCommands(store, this.host.name, now);
      const token = randomUUID();
      const claimed = await claimCommand(store, this.host.name, incarnation, token, now);
      if (claimed) this.execute(claimed, token);
    } catch (err) {
      this.host.failed(err);
    }
  }

  private execute(c: { id: number; payload: string; createdAt: number; deadlineAt: number | null }, token: string): void {
    const controller = new AbortController();
    let deadline: NodeJS.Timeout | undefined;
    if (c.deadlineAt !== null) {
      deadline = setTimeout(() => controller.abort(new Error(`command ${c.id} passed its deadline`)), Math.max(0, c.deadlineAt - this.host.now()));
      deadline.unref();
    }
    const cmd: AgentCommand = {
      ...c,
      signal: controller.signal,
      json: <T>() => JSON.parse(c.payload) as T,
    };
    const done = (async () => {
      let outcome: { state: 'completed' | 'failed'; result?: string | null; error?: string | null };
      try {
        const value = await this.handler(cmd);
        outcome = { state: 'completed', result: value === undefined ? null : typeof value === 'string' ? value : JSON.stringify(value) };
      } catch (err) {
        outcome = { state: 'failed', error: (err as Error)?.message ?? String(err) };
      }
      if (deadline) clearTimeout(deadline);
      await this.finish(c.id, token, outcome);
      this.inflight.delete(c.id);
    })();
    this.inflight.set(c.id, { token, controller, done });
  }

  private async finish(id: number, token: string, outcome: { state: 'completed' | 'failed'; result?: string | null; error?: string | null }): Promise<void> {
    const store = this.host.store();
    if (!store) {
      this.host.report('commandRejected', { id, reason: 'no database connection' });
      return;
    }
    try {
      const accepted = await finishCommand(store, { id, token, ...outcome }, this.host.now());
      this.host.report(accepted ? 'commandCompleted' : 'commandRejected', { id, state: outcome.state, ...(accepted ? {} : { reason: 'cancelled meanwhile, or claimed again (stale token)' }) });
    } catch (err) {
      this.host.failed(err);
      this.host.report('commandRejected', { id, reason: (err as Error).message });
    }
  }

  /** Waits up to `graceMs` for the commands in flight, then aborts the rest (their completions will be refused). */
  async drain(graceMs: number): Promise<void> {
    if (!this.inflight.size) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.inflight.values()].map((f) => f.done)),
      new Promise<void>((r) => (timer = setTimeout(r, graceMs))),
    ]);
    if (timer) clearTimeout(timer);
    for (const f of this.inflight.values()) f.controller.abort(new Error('agent stopping'));
  }
}
