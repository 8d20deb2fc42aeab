import type { Store } from '../../store/store.js';
import { restartCandidates } from '../../store/lifecycle.js';
import { type RestartOptions, type RestartResult, restartAgents } from '../restart.js';

/**
 * Restarts the convicted agents by their launch command with the health loop's backoff and `failed` limit
 * (restartAgents with respectBackoff): one still backing off is 'waiting' and tried again on a later pass.
 */
export async function restartConvicted(store: Store, opts: Omit<RestartOptions, 'respectBackoff' | 'dryRun'>): Promise<RestartResult[]> {
  const names = await restartCandidates(store);
  return names.length ? restartAgents(store, names, { ...opts, respectBackoff: true }) : [];
}
