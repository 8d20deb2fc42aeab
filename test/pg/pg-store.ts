/** A Store over a PostgreSQL database of the run's cluster, opened as the library opens it (migrating a fresh one). */
import { openStore } from '../../src/store/open-store.js';
import type { Store } from '../../src/store/store.js';

export function pgStore(url: string): Promise<Store> {
  return openStore({ path: url });
}
