/**
 * A Store over a PostgreSQL executor, for the tests of the engine-independent store modules and the health pass
 * until `openStore` selects PostgreSQL itself: the Store's methods that the pass uses (tx, read, getAgent,
 * lastEventId, now) only go through `sql`.
 */
import { Store } from '../../src/store/store.js';
import { openPg } from '../../src/store/postgres/executor.js';
import { migratePg } from '../../src/store/postgres/migrate.js';
import { DEFAULT_CONTRACT } from '../../src/store/store.js';

export async function pgStore(url: string): Promise<Store> {
  const sql = openPg({ url });
  await migratePg(sql, url);
  const s = Object.create(Store.prototype) as Store;
  Object.defineProperty(s, 'sql', { value: sql });
  Object.defineProperty(s, 'path', { value: url });
  Object.defineProperty(s, 'contract', { value: DEFAULT_CONTRACT });
  Object.defineProperty(s, 'close', { value: () => sql.close() });
  return s;
}
