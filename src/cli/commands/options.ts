import { parseDuration } from '../../core/duration.js';
import { parseCount, parseMetadata, parsePositiveNumber, validateCliInterval } from '../../core/validate.js';
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

export function parsePid(text: string | undefined): number | undefined {
  return text === undefined ? undefined : parseCount(text, '--pid', { min: 1, max: 4_194_304 });
}

export const CONTRACT_HELP = `
Contract: the agent is stale after interval × stale-after without a heartbeat (default 30s × 3 = 90s),
and offline after the offline threshold (default 300s). Each agent keeps its own.`;
