import type { StoreEngine } from '../engine.js';
import type { PgExecutor } from './executor.js';

/** A PostgreSQL database beneath a Store: nothing file-specific to check; readers see every commit. */
export class PgEngine implements StoreEngine {
  readonly kind = 'postgres' as const;
  readonly sql: PgExecutor;
  /** The URL it was opened with (for dedicated connections: the lease, LISTEN). Never print it unredacted. */
  readonly url: string;
  readonly writable: boolean;
  readonly snapshot = false;
  promptWriteLock = false;

  constructor(sql: PgExecutor, url: string, opts: { writable: boolean }) {
    this.sql = sql;
    this.url = url;
    this.writable = opts.writable;
  }

  assertSameFile(): void {}

  rawBatches(): undefined {
    return undefined;
  }

  close(): Promise<void> {
    return this.sql.close();
  }
}
