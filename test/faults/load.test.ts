import { describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FIXTURES, exited, jsonLines, start, startCli, tempDb, tempDir, waitFor } from '../helpers.js';
import { openStore } from '../../src/store/store.js';

const WRITERS = 16;
const BEATS = 1000;
const EVERY_MS = 200;
const REFRESH_MS = 100;
// Plain autocommit heartbeats, BEGIN IMMEDIATE register + heartbeat transactions, and both alternating.
const MODES = ['plain', 'tx', 'mix', 'mix'] as const;

/** True while any process of group `pgid` is alive. */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * The parts of the run [from, to] (each third of it, and the whole) in which fewer than a third of the expected
 * `periodMs` ticks happened: empty when the loop (or the reader) kept its pace throughout.
 */
function shortfalls(times: number[], from: number, to: number, periodMs: number): string[] {
  const third = (to - from) / 3;
  const parts: [string, number, number][] = [['whole run', from, to], ...[0, 1, 2].map((k): [string, number, number] => [`third ${k + 1}`, from + k * third, from + (k + 1) * third])];
  const out: string[] = [];
  for (const [part, a, b] of parts) {
    const n = times.filter((t) => t >= a && t <= b).length;
    const need = Math.floor((b - a) / periodMs / 3);
    if (n < need) out.push(`${part}: ${n} in ${Math.round(b - a)} ms, ${((b - a) / periodMs).toFixed(1)} periods`);
  }
  return out;
}

describe('fault: load', () => {
  it('16 writers × 1,000 heartbeats with a health loop and a status --watch reader: all counted, no errors, the loop keeps its pace', async () => {
    const db = tempDb();
    const go = join(tempDir(), 'go');
    const names = Array.from({ length: WRITERS }, (_, i) => `load-${String(i).padStart(2, '0')}`);
    // A 30 s contract (stale after 90 s) covers the whole run: any conviction of these agents is the loop's mistake.
    const store = await openStore({ path: db });
    for (const name of names) await store.register({ name, intervalMs: 30_000 }, Date.now());
    await store.close();

    const monitor = startCli(['monitor', '--every', `${EVERY_MS}ms`, '--json'], { db });
    await waitFor(() => jsonLines(monitor).length >= 1, 'the first pass of the health loop');
    const watch = startCli(['status', '--watch', '--refresh', `${REFRESH_MS}ms`], { db });
    // When each frame arrived: the reader's own record of its redraws.
    const frameTimes: number[] = [];
    watch.stdout!.on('data', () => {
      const drawn = watch.output().match(/agentctl status ·/g)?.length ?? 0;
      while (frameTimes.length < drawn) frameTimes.push(Date.now());
    });
    await waitFor(() => frameTimes.length >= 1, 'the first frame of status --watch');

    const writers = names.map((name, i) => start(process.execPath, [join(FIXTURES, 'beat-load.mjs'), db, name, String(BEATS), MODES[i % MODES.length]!, go]));
    await waitFor(() => writers.every((w) => w.output().startsWith('ready')), 'every writer to have opened the database', 30_000);
    writeFileSync(go, '');
    const exits = await Promise.all(writers.map(exited));

    // Every writer exited 0, saw no error, and its 1,000 heartbeats are all in the database.
    const results = writers.map((w) => JSON.parse(w.output().split('\n').find((l) => l.startsWith('{'))!));
    for (const [i, w] of writers.entries()) {
      expect({ name: names[i], exit: exits[i], stderr: w.errors(), ok: results[i].ok, errors: results[i].errors }).toEqual({
        name: names[i],
        exit: { code: 0, signal: null },
        stderr: '',
        ok: BEATS,
        errors: [],
      });
    }
    const from = Math.min(...results.map((r) => r.firstAt as number));
    const to = Math.max(...results.map((r) => r.lastAt as number));

    // The reader is still drawing after the run: wait for a frame that shows every writer's agent active.
    const drawnBy = frameTimes.length;
    await waitFor(() => frameTimes.length > drawnBy && watch.output().includes(`${WRITERS} agents: ${WRITERS} active`), 'a frame after the run with every agent active');
    const passesBy = jsonLines(monitor).length;
    await waitFor(() => jsonLines(monitor).length > passesBy, 'a pass after the run');

    monitor.kill('SIGTERM');
    watch.kill('SIGINT');
    expect(await exited(monitor)).toEqual({ code: 0, signal: null });
    expect(await exited(watch)).toEqual({ code: 0, signal: null });
    for (const p of [monitor, watch, ...writers]) expect(groupAlive(p.pid!)).toBe(false);

    const raw = new Database(db, { readonly: true });
    const inList = names.map(() => '?').join(', ');
    const seq = raw.prepare(`SELECT SUM(heartbeat_seq) AS total FROM agents WHERE name IN (${inList})`).get(...names) as { total: number };
    const convictions = raw.prepare(`SELECT agent_name, to_state, at FROM events WHERE agent_name IN (${inList}) AND to_state IN ('stale', 'offline')`).all(...names);
    const counters = Object.fromEntries((raw.prepare('SELECT name, value FROM monitor_counters').all() as { name: string; value: number }[]).map((r) => [r.name, r.value]));
    const integrity = raw.pragma('integrity_check', { simple: true });
    raw.close();
    expect(seq.total).toBe(WRITERS * BEATS);
    expect(integrity).toBe('ok');

    // The health loop kept its pace, by its own record: its passes during the run (and in each third of it) against
    // the time over the period, at least a third of them on a small, busy machine; none suspected itself, held or
    // convicted anyone.
    const reports = jsonLines(monitor);
    expect(reports.filter((r) => r.at >= from && r.at <= to).length).toBeGreaterThanOrEqual(1);
    expect(shortfalls(reports.map((r) => r.at as number), from, to, EVERY_MS)).toEqual([]);
    expect(reports.filter((r) => r.suspect !== null || r.held.length > 0 || r.transitions.length > 0)).toEqual([]);
    expect(counters.suspect_passes_total ?? 0).toBe(0);
    expect(counters.convictions_held_total ?? 0).toBe(0);
    expect(convictions).toEqual([]);
    expect(monitor.errors()).not.toMatch(/ (WARN|ERROR) /);

    // The reader redrew throughout the run (at least a third of its refreshes) and printed no error, nor a warning
    // that the health loop was overdue.
    expect(frameTimes.filter((t) => t >= from && t <= to).length).toBeGreaterThanOrEqual(1);
    expect(shortfalls(frameTimes, from, to, REFRESH_MS)).toEqual([]);
    expect(watch.errors()).toBe('');
    expect(watch.output()).not.toMatch(/warning:/);
  }, 90_000);
});
