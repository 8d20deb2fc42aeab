import { describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { exited, start, tempDb, tempDir, ROOT } from '../helpers.js';
import { openStore } from '../../src/store/store.js';

const fixture = join(ROOT, 'test', 'fixtures', 'beat-log.mjs');
const lines = (path: string) => (existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter(Boolean).length : 0);

describe('fault: writers killed with SIGKILL in the middle of transactions', () => {
  it('over and over, while others keep writing: integrity ok, every committed heartbeat counted, no unreported error', async () => {
    const db = tempDb();
    const logs = tempDir();
    openStore({ path: db }).close();
    // Two steady writers that are never killed and must see no error at all.
    const steady = [0, 1].map((i) => start(process.execPath, [fixture, db, `steady-${i}`, join(logs, `steady-${i}.log`), '3000']));
    // Three slots of victims, each killed and replaced again and again.
    const kills: Record<string, number> = {};
    const victims = new Map<string, ReturnType<typeof start>>();
    const spawnVictim = (slot: string) => victims.set(slot, start(process.execPath, [fixture, db, slot, join(logs, `${slot}.log`)]));
    for (const slot of ['victim-0', 'victim-1', 'victim-2']) spawnVictim(slot);
    const until = Date.now() + 5000;
    let round = 0;
    while (Date.now() < until) {
      await new Promise((r) => setTimeout(r, 60 + Math.random() * 120));
      const slot = `victim-${round++ % 3}`;
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
    expect(totalKills).toBeGreaterThanOrEqual(10);
  }, 60_000);
});
