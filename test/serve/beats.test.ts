import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { tempDb } from '../helpers.js';
import { openStore } from '../../src/store/store.js';
import { BeatWriter } from '../../src/server/beats.js';

/** Frames in the WAL of `db` now, then the WAL emptied (a checkpoint while nothing else reads). */
function walFrames(db: string): number {
  const c = new Database(db);
  try {
    const [r] = c.pragma('wal_checkpoint(PASSIVE)') as { busy: number; log: number }[];
    const [t] = c.pragma('wal_checkpoint(TRUNCATE)') as { busy: number }[];
    expect([r!.busy, t!.busy]).toEqual([0, 0]);
    return r!.log;
  } finally {
    c.close();
  }
}

const seqs = (db: string) => {
  const c = new Database(db, { readonly: true });
  try {
    return Object.fromEntries((c.prepare('SELECT name, heartbeat_seq FROM agents ORDER BY name').all() as { name: string; heartbeat_seq: number }[]).map((r) => [r.name, r.heartbeat_seq]));
  } finally {
    c.close();
  }
};

const T = Date.UTC(2026, 0, 1);

describe('serve: the heartbeats of pings', () => {
  it('beats that arrive together are committed together: one commit, each told whether its agent exists', async () => {
    const db = tempDb();
    const store = await openStore({ path: db });
    try {
      for (let i = 0; i < 64; i++) await store.register({ name: `a${i}` }, T + 1);
      walFrames(db);
      // The plain way, for comparison: 64 autocommit UPDATEs.
      for (let i = 0; i < 64; i++) expect(await store.heartbeatRow({ name: `a${i}` }, T + 2)).toBe(true);
      const single = walFrames(db);
      const beats = new BeatWriter(store);
      const answers = await Promise.all([...Array.from({ length: 64 }, (_, i) => beats.beat({ name: `a${i}` }, T + 3)), beats.beat({ name: 'nobody' }, T + 3)]);
      const together = walFrames(db);
      expect(answers).toEqual([...Array.from({ length: 64 }, () => true), false]);
      expect(seqs(db)).toEqual(Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`a${i}`, 2])));
      // 64 commits write at least 64 frames; one commit writes each page it changed once.
      expect(single).toBeGreaterThanOrEqual(64);
      expect(together).toBeLessThan(single / 8);
    } finally {
      await store.close();
    }
  });

  it('a beat the database refuses fails alone; the others are written once each', async () => {
    const db = tempDb();
    const store = await openStore({ path: db });
    try {
      for (const name of ['a', 'b', 'c']) await store.register({ name }, T + 1);
      const beats = new BeatWriter(store);
      // A message past the column's limit (the routes never send one: this stands for any refused write).
      const results = await Promise.allSettled([beats.beat({ name: 'a' }, T + 2), beats.beat({ name: 'b', message: 'x'.repeat(2000) }, T + 2), beats.beat({ name: 'c' }, T + 2)]);
      expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
      expect(String((results[1] as PromiseRejectedResult).reason)).toMatch(/CHECK constraint/);
      expect(seqs(db)).toEqual({ a: 1, b: 0, c: 1 });
      // Beats after it go on as before.
      expect(await beats.beat({ name: 'b' }, T + 3)).toBe(true);
      expect(seqs(db)).toEqual({ a: 1, b: 1, c: 1 });
    } finally {
      await store.close();
    }
  });
});
