import { AgentNotFoundError, AgentUnavailableError, CommandNotFoundError, UsageError } from '../errors.js';
import { cancelCommandRow, expireCommands, getCommand, insertCommand, selectCommands } from '../store/commands.js';
import { COMMAND_STATES, type CommandRecord, type CommandState } from '../store/rows.js';
import type { Store } from '../store/store.js';
import { MAX_DURATION_MS } from './duration.js';
import { deriveState } from './state.js';
import { PAYLOAD_MAX, parseList, validateMessage, validateName } from './validate.js';
import { setTimeout as sleep } from 'node:timers/promises';

/** The command channel as operators and tools use it: send, list, cancel, wait. Agents claim through HeartbeatAgent.onCommand. */

export interface SendOptions {
  /** The command must be finished within this long (deadline_at); a queued one is cancelled after it, an executing one failed. */
  timeoutMs?: number | undefined;
  /** Queue it even when the agent is offline or failed (it waits for the agent's return). */
  queue?: boolean | undefined;
}

/** Queues a command for an agent. Refused (AgentUnavailableError) when the agent is offline or failed, unless `queue`. */
export async function sendCommand(store: Store, name: string, payload: string, now: number, opts: SendOptions = {}): Promise<CommandRecord> {
  validateName(name);
  if (typeof payload !== 'string' || payload.length === 0) throw new UsageError('the payload is empty: put it after --, as in agentctl send NAME -- PAYLOAD');
  if (Buffer.byteLength(payload) > PAYLOAD_MAX) throw new UsageError(`payload too large: ${Buffer.byteLength(payload)} bytes, the limit is ${PAYLOAD_MAX}`);
  if (opts.timeoutMs !== undefined && (!Number.isInteger(opts.timeoutMs) || opts.timeoutMs <= 0 || opts.timeoutMs > MAX_DURATION_MS)) throw new UsageError(`invalid timeout ${opts.timeoutMs}`);
  const agent = await store.getAgent(name);
  if (!agent) throw new AgentNotFoundError(name);
  const state = deriveState(agent, now).state;
  if ((state === 'offline' || state === 'failed') && !opts.queue) throw new AgentUnavailableError(name, state);
  return await insertCommand(store, name, payload, opts.timeoutMs !== undefined ? now + opts.timeoutMs : null, now);
}

/** Parses a comma-separated list of command states. */
export function parseCommandStates(text: string): CommandState[] {
  return parseList(text, COMMAND_STATES, '--state', 'command state');
}

/**
 * Commands, newest first, after settling the ones past their deadline (so what is listed is true now). On a
 * read-only store nothing is settled: what is listed is what is stored (the next writer settles them).
 */
export async function listCommands(store: Store, now: number, q: { agent?: string | undefined; states?: CommandState[] | undefined; limit?: number | undefined } = {}): Promise<CommandRecord[]> {
  if (q.agent !== undefined) {
    validateName(q.agent);
    if (!(await store.getAgent(q.agent))) throw new AgentNotFoundError(q.agent);
  }
  if (store.writable) await expireCommands(store, null, now);
  return await selectCommands(store, { ...(q.agent !== undefined ? { agent: q.agent } : {}), ...(q.states ? { states: q.states } : {}), limit: q.limit ?? 100 });
}

/** Cancels a queued or executing command (an agent running it sees its signal abort; its result will be refused). */
export async function cancelCommand(store: Store, id: number, now: number, reason = 'cancelled by operator'): Promise<{ command: CommandRecord; cancelled: boolean }> {
  validateMessage(reason);
  if (!(await getCommand(store, id))) throw new CommandNotFoundError(id);
  const cancelled = await cancelCommandRow(store, id, reason, now);
  return { command: (await getCommand(store, id))!, cancelled };
}

/** Waits until a command is finished (completed, failed or cancelled), or `timeoutMs` passes; returns it as it then is. */
export async function waitForCommand(store: Store, id: number, timeoutMs: number, opts: { everyMs?: number; now?: () => number } = {}): Promise<CommandRecord> {
  const now = opts.now ?? Date.now;
  const until = now() + timeoutMs;
  for (;;) {
    await expireCommands(store, null, now());
    const c = await getCommand(store, id);
    if (!c) throw new CommandNotFoundError(id);
    if (c.state !== 'queued' && c.state !== 'executing') return c;
    if (now() >= until) return c;
    await sleep(opts.everyMs ?? 50);
  }
}
