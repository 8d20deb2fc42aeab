import { parseDuration } from '../../core/duration.js';
import { PID_MAX, parseCount, parseMetadata, parsePositiveNumber, validateCliInterval, validatePid } from '../../core/validate.js';
import { processGroup } from '../../core/process-control.js';
import type { ContractInput } from '../../core/agents.js';

/** Contract flags shared by register and heartbeat. */
export interface ContractFlags {
  interval?: string;
  staleAfter?: string;
  offlineAfter?: string;
}

/** Parses the contract flags; every value is checked before anything is written. */
export function parseContract(o: ContractFlags): ContractInput {
  const c: ContractInput = {};
  if (o.interval !== undefined) c.intervalMs = validateCliInterval(parseDuration(o.interval, '--interval'));
  if (o.staleAfter !== undefined) c.staleMultiplier = parsePositiveNumber(o.staleAfter, '--stale-after (a multiple of the interval)', 1);
  if (o.offlineAfter !== undefined) c.offlineAfterMs = parseDuration(o.offlineAfter, '--offline-after');
  return c;
}

export function parseMeta(text: string | undefined): Record<string, unknown> | undefined {
  return text === undefined ? undefined : (JSON.parse(parseMetadata(text)) as Record<string, unknown>);
}

/**
 * Parses --pid: an agent's process, never 0 or 1 (validatePid). With `notOwnGroup` (register) also not this CLI
 * process or the leader of its process group. A heartbeat keeps accepting `--pid $$` from a script leading the group
 * it runs agentctl in: the process group is never signalled on a row's word alone (see process-control.ts).
 */
export function parsePid(text: string | undefined, notOwnGroup = false): number | undefined {
  if (text === undefined) return undefined;
  const pid = parseCount(text, '--pid', { min: 0, max: PID_MAX });
  return validatePid(pid, '--pid', notOwnGroup ? { pid: process.pid, group: processGroup(process.pid) } : undefined);
}

export const CONTRACT_HELP = `
Contract: the agent is stale after interval × stale-after without a heartbeat (default: 30s × 3 = 90s),
and offline after the offline threshold (default: 300s). Each agent keeps its own.`;
