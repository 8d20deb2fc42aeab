// Bench figures for the read and maintenance paths: `status --json` over a 10,000-agent fleet against one
// `agentctl heartbeat`, and `cleanup --events-older-than` over a million events. Called by scripts/bench.mjs.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { openStore } from '../dist/index.js';

const fmt = (n, d = 0) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });

function wall(argv, runs) {
  const times = [];
  for (let i = 0; i < runs; i++) {
    const t = process.hrtime.bigint();
    const r = spawnSync(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'inherit'], maxBuffer: 1 << 30 });
    times.push(Number(process.hrtime.bigint() - t) / 1e6);
    if (r.status !== 0) throw new Error(`${argv.slice(1).join(' ')} exited ${r.status}`);
  }
  return times.sort((a, b) => a - b)[Math.floor(times.length / 2)];
}

/** Runs both figures in `dir`; returns nothing, prints each line. */
export async function benchDiagnostics(dir, bin) {
  const db = join(dir, 'fleet.db');
  const store = await openStore({ path: db });
  const now = Date.now();
  for (let i = 0; i < 10_000; i++) await store.heartbeat({ name: `agent-${String(i).padStart(5, '0')}`, message: 'working' }, now);
  await store.close();
  const status = wall([process.execPath, bin, '--db', db, 'status', '--json'], 7);
  const beat = wall([process.execPath, bin, '--db', db, 'heartbeat', 'agent-00000'], 7);
  console.log(`status --json over 10,000 agents: ${fmt(status, 0)} ms vs agentctl heartbeat ${fmt(beat, 0)} ms → ${fmt(status / beat, 1)}×`);

  const edb = join(dir, 'events.db');
  const es = await openStore({ path: edb });
  await es.heartbeat({ name: 'chatty' }, now);
  const id = (await es.getAgent('chatty')).id;
  const old = now - 60 * 86_400_000;
  await es.tx((s) =>
    s.sql.run(
      `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000)
       INSERT INTO events (agent_id, agent_name, at, from_state, to_state, reason, evidence)
       SELECT ?, 'chatty', ? + i, 'active', 'stale', 'heartbeat overdue', '{"rule":"clock"}' FROM n`,
      [id, old],
    ),
  );
  await es.close();
  const t = process.hrtime.bigint();
  const r = spawnSync(process.execPath, [bin, '--db', edb, 'cleanup', '--events-older-than', '30d', '--json'], { encoding: 'utf8' });
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  if (r.status !== 0) throw new Error(`cleanup exited ${r.status}: ${r.stderr}`);
  const pruned = JSON.parse(r.stdout).prunedEvents;
  console.log(`cleanup --events-older-than over 1,000,000 events: ${fmt(pruned)} deleted in ${fmt(ms / 1000, 2)} s (${fmt(pruned / (ms / 1000))} events/s)`);
  if (pruned !== 1_000_000) throw new Error(`expected 1,000,000 events pruned, got ${pruned}`);
}
