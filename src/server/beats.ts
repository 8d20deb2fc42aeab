import type { HeartbeatParams, Store } from '../store/store.js';

interface Pending {
  beat: HeartbeatParams;
  now: number;
  resolve: (existed: boolean) => void;
  reject: (err: unknown) => void;
}

/**
 * The server's heartbeats of agents that exist (Store.heartbeatRow), committed together: the beats that arrive while
 * the event loop is busy are written in one transaction at its next turn, so that 64 clients pinging at once cost
 * one commit, not 64. Each caller still learns only after the commit whether its row existed, and a beat is never
 * answered before it is on disk. One beat alone is the plain autocommit UPDATE, as before. Should the transaction
 * fail (busy past the retries, a beat the database refuses), nothing of it was written, and each beat is tried
 * again on its own, so that one bad beat fails only its own request.
 * SQLite only: there one writer holds the whole file, so a transaction of many rows waits for nobody's row lock. On
 * PostgreSQL a transaction that beats row A and then waits for row B, which a health pass holds while it waits for
 * A, deadlocks (see state_database.md); there every beat stays its own statement.
 */
export class BeatWriter {
  private queue: Pending[] = [];
  private scheduled = false;

  constructor(private readonly store: Store) {}

  /** Whether the agent `beat.name` existed (and was beaten); false: no such agent, nothing written. */
  beat(beat: HeartbeatParams, now: number): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      this.queue.push({ beat, now, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => void this.flush());
      }
    });
  }

  private async flush(): Promise<void> {
    const batch = this.queue;
    this.queue = [];
    this.scheduled = false;
    if (batch.length > 1 && this.store.sql.dialect === 'sqlite') {
      try {
        const existed = await this.store.tx(async (s) => {
          const out: boolean[] = [];
          for (const p of batch) out.push(await s.heartbeatRow(p.beat, p.now));
          return out;
        });
        batch.forEach((p, i) => p.resolve(existed[i]!));
        return;
      } catch {
        // Rolled back whole: each beat again on its own, with its own answer.
      }
    }
    for (const p of batch) {
      try {
        p.resolve(await this.store.heartbeatRow(p.beat, p.now));
      } catch (err) {
        p.reject(err);
      }
    }
  }
}
