// One writer process of the PostgreSQL fleet bench: agents PREFIX-FROM … PREFIX-(TO-1) each beat every INTERVAL_MS,
// spread evenly over the interval, from START_AT for DURATION_MS, on one Store (its pool). Prints
// {"count","errors","latencies":[…]} as one JSON line (latency: from the call to its commit, pool waits included).
// usage: node bench-pg-worker.mjs URL PREFIX FROM TO INTERVAL_MS DURATION_MS START_AT
import { openStore } from '../dist/index.js';

const [url, prefix, ...nums] = process.argv.slice(2);
const [from, to, intervalMs, durationMs, startAt] = nums.map(Number);
const store = await openStore({ path: url, mode: 'existing' });
const n = to - from;
const latencies = [];
let errors = 0;
const pending = new Set();
// The pool's connections opened before the clock starts (its default size): a first beat waits for none.
await Promise.all(Array.from({ length: 10 }, () => store.lastEventId()));
while (Date.now() < startAt) await new Promise((r) => setTimeout(r, 1));
const end = startAt + durationMs;
let sent = 0;
for (;;) {
  const now = Date.now();
  if (now >= end) break;
  // Every beat whose time has come: beat k of agent i is due at startAt + (i / n + k) * intervalMs.
  const due = Math.floor(((now - startAt) / intervalMs) * n) + 1;
  for (; sent < due; sent++) {
    const name = `${prefix}-${from + (sent % n)}`;
    const s = performance.now();
    const p = store.heartbeat({ name, progress: sent }, Date.now()).then(
      () => latencies.push(performance.now() - s),
      () => errors++,
    );
    pending.add(p);
    void p.finally(() => pending.delete(p));
  }
  await new Promise((r) => setTimeout(r, 2));
}
await Promise.all(pending);
await store.close();
process.stdout.write(JSON.stringify({ count: latencies.length, errors, latencies }) + '\n');
