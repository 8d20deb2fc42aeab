import { describe, expect, it } from 'vitest';
import { type Store, openStore } from '../src/store/store.js';
import { tempDb } from './helpers.js';

/** A promise and the function that settles it: lets one chain wait, inside its transaction, for the other. */
function gate(): { opened: Promise<void>; open: () => void } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
}

async function withSql<T>(fn: (store: Store) => Promise<T>): Promise<T> {
  const store = await openStore({ path: tempDb() });
  store.db.exec('CREATE TABLE t (v TEXT)');
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

describe('the SQLite executor', () => {
  it("makes another chain's write wait while a transaction awaits, so that a rollback does not take it along", async () => {
    await withSql(async ({ sql }) => {
      const inTx = gate();
      const otherIssued = gate();
      const failing = sql.tx(async (tx) => {
        await tx.run('INSERT INTO t (v) VALUES (?)', ['rolled back']);
        inTx.open();
        await otherIssued.opened; // the other chain's statement is issued while this transaction is open
        await new Promise((r) => setTimeout(r, 20));
        throw new Error('abort');
      });
      await inTx.opened;
      const other = sql.run('INSERT INTO t (v) VALUES (?)', ['kept']);
      otherIssued.open();
      await expect(failing).rejects.toThrow('abort');
      await other;
      expect(await sql.all('SELECT v FROM t ORDER BY v')).toEqual([{ v: 'kept' }]);
    });
  });

  it('runs concurrent transactions one after the other, each seeing the writes of the one before', async () => {
    await withSql(async ({ sql }) => {
      await sql.run("INSERT INTO t (v) VALUES ('0')");
      const bump = () =>
        sql.tx(async (tx) => {
          const row = await tx.get<{ v: string }>('SELECT v FROM t');
          await new Promise((r) => setTimeout(r, 1));
          await tx.run('UPDATE t SET v = ?', [String(Number(row!.v) + 1)]);
        });
      await Promise.all(Array.from({ length: 20 }, bump));
      expect(await sql.get('SELECT v FROM t')).toEqual({ v: '20' });
    });
  });

  it('reads rows in batches of the size asked, and holds other chains off until the reading ends', async () => {
    await withSql(async ({ sql }) => {
      await sql.tx(async (tx) => {
        for (let i = 0; i < 25; i++) await tx.run('INSERT INTO t (v) VALUES (?)', [String(i).padStart(2, '0')]);
      });
      const sizes: number[] = [];
      let write: Promise<unknown> | undefined;
      for await (const rows of sql.batches<{ v: string }>('SELECT v FROM t ORDER BY v', [], 10)) {
        sizes.push(rows.length);
        write ??= sql.run("INSERT INTO t (v) VALUES ('zz')");
      }
      await write;
      expect(sizes).toEqual([10, 10, 5]);
      expect(await sql.get('SELECT count(*) AS n FROM t')).toEqual({ n: 26 });
    });
  });

  it('binds named arguments, and reads one snapshot in read()', async () => {
    await withSql(async ({ sql }) => {
      await sql.run('INSERT INTO t (v) VALUES (:v)', { v: 'a' });
      const seen = await sql.read(async (r) => [await r.get('SELECT count(*) AS n FROM t'), await r.all('SELECT v FROM t WHERE v = @v', { v: 'a' })]);
      expect(seen).toEqual([{ n: 1 }, [{ v: 'a' }]]);
      expect(sql.dialect).toBe('sqlite');
      expect(Math.abs((await sql.now()) - Date.now())).toBeLessThan(60_000);
    });
  });
});
