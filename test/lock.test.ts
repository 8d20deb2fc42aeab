import { describe, expect, it } from 'vitest';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { withExclusiveLock, inspectLock, lockPaths } from '../src/store/sqlite/lock.js';
import { LockCompromisedError, LockHeldError } from '../src/errors.js';
import { exited, start, tempDb, waitFor, ROOT } from './helpers.js';

describe('the exclusive lock', () => {
  it('lets one holder in at a time and says who holds it', async () => {
    const db = tempDb();
    const ran = await withExclusiveLock(db, { name: 'maintenance' }, async () => {
      expect(inspectLock(db, 'maintenance')?.owner?.pid).toBe(process.pid);
      await expect(withExclusiveLock(db, { name: 'maintenance' }, async () => 1)).rejects.toThrow(LockHeldError);
      // A different name is a different lock.
      expect(await withExclusiveLock(db, { name: 'monitor' }, async () => 2)).toBe(2);
      return 'ran';
    });
    expect(ran).toBe('ran');
    expect(inspectLock(db, 'maintenance')).toBeNull();
    expect(existsSync(lockPaths(db, 'maintenance').ownerPath)).toBe(false);
  });

  it('takes over the lock of a holder killed with SIGKILL once it is stale, and says so', async () => {
    const db = tempDb();
    const holder = start(process.execPath, [join(ROOT, 'test/fixtures/hold-lock.mjs'), db, 'maintenance', '2000']);
    await waitFor(() => holder.output().includes('locked'), 'the holder to lock');
    await expect(withExclusiveLock(db, { name: 'maintenance', staleMs: 2000 }, async () => 1)).rejects.toThrow(/another agentctl maintenance is running/);
    holder.kill('SIGKILL');
    await exited(holder);
    const takeovers: number[] = [];
    const result = await withExclusiveLock(db, { name: 'maintenance', staleMs: 2000, retries: 40, onTakeover: (owner) => takeovers.push(owner?.pid ?? -1) }, async () => 'mine');
    expect(result).toBe('mine');
    expect(takeovers).toEqual([holder.pid]);
  });

  it('aborts cleanly, without crashing, when the lock is compromised', async () => {
    const db = tempDb();
    const err = await withExclusiveLock(db, { name: 'maintenance', staleMs: 2000 }, async (h) => {
      rmSync(h.lockPath, { recursive: true, force: true });
      await new Promise<void>((resolve) => {
        if (h.signal.aborted) resolve();
        h.signal.addEventListener('abort', () => resolve());
      });
      return 'finished';
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LockCompromisedError);
  }, 20_000);
});
