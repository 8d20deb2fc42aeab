// One writer process for `npm run bench`: COUNT heartbeats for NAME, each in its own write, starting at START_AT.
// MODE 'plain' relies on SQLite's locking; MODE 'lockfile' wraps every write in a proper-lockfile lock, the
// hand-rolled pattern agentctl replaces. Prints {"count","ms","latencies":[…]} as one JSON line.
// usage: node bench-worker.mjs DB NAME COUNT START_AT MODE
import lockfile from 'proper-lockfile';
import { openStore } from '../dist/index.js';

const [db, name, countText, startAt, mode] = process.argv.slice(2);
const count = Number(countText);
const store = await openStore({ path: db, busyTimeoutMs: 10_000, retryAttempts: 10 });
await store.heartbeat({ name }, Date.now());
while (Date.now() < Number(startAt)) await new Promise((r) => setTimeout(r, 1));
const latencies = [];
const t0 = performance.now();
for (let i = 0; i < count; i++) {
  const s = performance.now();
  if (mode === 'lockfile') {
    const release = await lockfile.lock(db, { realpath: false, stale: 10_000, retries: { retries: 10_000, minTimeout: 1, maxTimeout: 20, factor: 1.2, randomize: true } });
    await store.heartbeat({ name, progress: i }, Date.now());
    await release();
  } else {
    await store.heartbeat({ name, progress: i }, Date.now());
  }
  latencies.push(performance.now() - s);
}
const ms = performance.now() - t0;
await store.close();
process.stdout.write(JSON.stringify({ count, ms, start: Number(startAt), end: Date.now(), latencies }) + '\n');
