import { recordNote } from '../store/notes.js';
import type { Store } from '../store/store.js';
import { type SendOptions, sendCommand } from './commands.js';
import { type RestartOptions, type RestartResult, restartAgents } from './restart.js';
import type { CommandRecord } from '../store/rows.js';

/**
 * The operator's controls that the HTTP API offers beside set-status (which names its token through
 * updateAgentState): a restart and a command, done by the very core functions the CLI's `restart` and `send` use,
 * each followed by an event in the agent's history that names the token that asked.
 */

/** Restarts one agent as `agentctl restart NAME` does; its result (an error included) is returned, then noted. */
export async function restartByToken(store: Store, name: string, token: string, opts: RestartOptions): Promise<RestartResult> {
  const [r] = await restartAgents(store, [name], opts);
  const result = r!;
  const now = (opts.now ?? Date.now)();
  const reason = result.error ? `restart by operator failed: ${result.error.message}` : `restarted by operator`;
  await recordNote(store, name, reason.slice(0, 1000), { control: 'restart', token, action: result.action, ...(result.pid !== undefined ? { pid: result.pid } : {}) }, now);
  return result;
}

/** Queues a command as `agentctl send NAME -- PAYLOAD` does, and notes it (with its id, not its payload). */
export async function sendByToken(store: Store, name: string, payload: string, token: string, now: number, opts: SendOptions = {}): Promise<CommandRecord> {
  const c = await sendCommand(store, name, payload, now, opts);
  await recordNote(store, name, `command ${c.id} sent by operator`, { control: 'send', token, command_id: c.id }, now);
  return c;
}
