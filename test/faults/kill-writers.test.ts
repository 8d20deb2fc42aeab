import { describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { exited, sleep, start, tempDb, tempDir, waitFor, ROOT } from '../helpers.js';
import { openStore } from '../../src/store/store.js';

const fixture = join(ROOT, 'test', 'fixtures', 'beat-log.mjs');
const lines = (path: string) => (existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter(Boolean).length : 0);

describe('fault: writers killed with SIGKILL in the middle of transactions', () => {
  it('over and over, while others keep writing: integrity ok, every committed heartbeat counted, no unreported error', async () => {
    const db = tempDb();
    const logs = tempDir();
    await (await openStore({ path: db })).close();
    // Two steady writers that are never killed and must see no error at all.
    const steady = [0, 1].map((i) => start(process.execPath, [fixture, db, `steady-${i}`, join(logs, `steady-${i}.log`), '3000']));
    // Three slots of victims, each killed and replaced again and again.
    const kills: Record<string, number> = {};
    const victims = new Map<string, ReturnType<typeof start>>();
    /** Lines in the slot's log when its current victim was started: it is writing once there are more. */
    const linesAtStart = new Map<string, number>();
    const spawnVictim = (slot: string) => {
      linesAtStart.set(slot, lines(join(logs, `${slot}.log`)));
      victims.set(slot, start(process.execPath, [fixture, db, slot, join(logs, `${slot}.log`)]));
    };
    for (const slot of ['victim-0', 'victim-1', 'victim-2']) spawnVictim(slot);
    // Each victim is killed only once it is writing (however long it took to start on a busy machine), a random
    // moment after its first commit, so that the kills land in the middle of its transactions.
    for (let round = 0; round < 12; round++) {
      const slot = `victim-${round % 3}`;
      const log = join(logs, `${slot}.log`);
      await waitFor(() => lines(log) > linesAtStart.get(slot)!, `${slot} to commit a heartbeat`, 60_000);
      await sleep(Math.random() * 80);
      const v = victims.get(slot)!;
      v.kill('SIGKILL');
      await exited(v);
      kills[slot] = (kills[slot] ?? 0) + 1;
      spawnVictim(slot);
    }
    for (const v of victims.values()) v.kill('SIGKILL');
    await Promise.all([...victims.values()].map(exited));
    for (const [slot] of victims) kills[slot] = (kills[slot] ?? 0) + 1;
    const steadyExits = await Promise.all(steady.map(exited));
    for (const [i, s] of steady.entries()) {
      expect(steadyExits[i]!.code).toBe(0);
      expect(JSON.parse(s.output())).toEqual({ ok: 3000, errors: [] });
    }
    const raw = new Database(db, { readonly: true });
    const seq = Object.fromEntries((raw.prepare('SELECT name, heartbeat_seq FROM agents').all() as { name: string; heartbeat_seq: number }[]).map((r) => [r.name, r.heartbeat_seq]));
    const integrity = raw.pragma('integrity_check', { simple: true });
    raw.close();
    expect(integrity).toBe('ok');
    expect(seq['steady-0']).toBe(3000);
    expect(seq['steady-1']).toBe(3000);
    let totalKills = 0;
    for (const slot of ['victim-0', 'victim-1', 'victim-2']) {
      const logged = lines(join(logs, `${slot}.log`));
      totalKills += kills[slot]!;
      // Every heartbeat a writer saw commit is in the database; at most one per kill committed without being logged.
      expect(seq[slot]).toBeGreaterThanOrEqual(logged);
      expect(seq[slot]! - logged).toBeLessThanOrEqual(kills[slot]!);
    }
    expect(totalKills).toBe(15);
  }, 180_000);
});
