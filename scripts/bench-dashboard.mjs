// Bench figures for the dashboard (called by scripts/bench.mjs): the time from a committed transition to the
// browser's DOM, p50 and p99 over 100 transitions, and the first paint of the fleet table at 10,000 agents. Runs the
// real `agentctl serve` and Debian's chromium through playwright-core (AGENTCTL_CHROMIUM, else chromium on PATH).
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { openStore, updateAgentState } from '../dist/index.js';

const fmt = (n, d = 0) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(cond, what, ms = 60_000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await sleep(20);
  }
  throw new Error(`bench: timed out waiting for ${what}`);
}

/** `agentctl serve` on a free loopback port, with its base URL and its printed one-time login token. */
async function startServe(bin, db) {
  const child = spawn(process.execPath, [bin, '--db', db, 'serve', '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (d) => (err += d));
  await until(() => /serving http/.test(err) || child.exitCode !== null, 'serve to start');
  const base = /serving (http:\/\/\S+) /.exec(err)?.[1];
  const login = /login\?token=(\S+)/.exec(err)?.[1];
  if (!base || !login) throw new Error(`bench: serve did not start: ${err}`);
  return { base, login, stop: () => new Promise((r) => (child.exitCode !== null ? r() : (child.once('exit', r), child.kill('SIGTERM')))) };
}

function chromiumPath() {
  return process.env.AGENTCTL_CHROMIUM || spawnSync('sh', ['-c', 'command -v chromium || command -v chromium-browser'], { encoding: 'utf8' }).stdout.trim() || '/usr/bin/chromium';
}

async function browser(dir) {
  const context = await chromium.launchPersistentContext(join(dir, `chromium-${Date.now()}`), {
    executablePath: chromiumPath(),
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    viewport: { width: 1280, height: 800 },
  });
  return { context, page: context.pages()[0] ?? (await context.newPage()) };
}

/** Every state change of a row, as the page draws it: name → [state, Date.now()] (the same clock as ours). */
function watchRows() {
  window.__seen = {};
  new MutationObserver((records) => {
    const t = Date.now();
    for (const r of records) {
      const tr = r.target;
      if (tr.dataset && tr.dataset.name) window.__seen[tr.dataset.name] = [tr.dataset.state, t];
    }
  }).observe(document.querySelector('#fleet tbody'), { attributes: true, attributeFilter: ['data-state'], subtree: true });
}

/** 100 transitions committed here, each timed until its row shows the new state. */
async function commitToDom(bin, dir) {
  const db = join(dir, 'dash-latency.db');
  const store = await openStore({ path: db });
  const names = Array.from({ length: 20 }, (_, i) => `live-${String(i).padStart(2, '0')}`);
  for (const name of names) await store.heartbeat({ name, intervalMs: 3_600_000 }, Date.now());
  const serve = await startServe(bin, db);
  const { context, page } = await browser(dir);
  try {
    await page.goto(`${serve.base}/login?token=${serve.login}`);
    await page.locator(`#fleet tbody tr[data-name="${names.at(-1)}"]`).waitFor();
    await page.evaluate(watchRows);
    await sleep(500); // the stream is open and the page idle
    const lat = [];
    for (let i = 0; i < 100; i++) {
      const name = names[i % names.length];
      const to = Math.floor(i / names.length) % 2 === 0 ? 'offline' : 'active';
      const t0 = Date.now();
      if (to === 'offline') await updateAgentState(store, name, 'offline', t0);
      else await store.heartbeat({ name }, t0);
      await until(() => page.evaluate(([n, s]) => window.__seen[n]?.[0] === s, [name, to]), `row ${name} to show ${to}`, 10_000);
      const [, seenAt] = await page.evaluate((n) => window.__seen[n], name);
      lat.push(seenAt - t0);
      await sleep(20 + Math.random() * 300); // transitions come at random phases of the stream's poll
    }
    return lat.sort((a, b) => a - b);
  } finally {
    await context.close();
    await serve.stop();
    await store.close();
  }
}

/** In the page, before its scripts: the time (since navigation started) at which the table's first row appears. */
function timeFirstRow() {
  new MutationObserver((_, obs) => {
    if (document.querySelector('#fleet tbody tr[data-name]')) {
      window.__firstRow = performance.now();
      obs.disconnect();
    }
  }).observe(document, { childList: true, subtree: true });
}

/**
 * Median time, over 5 loads of a logged-in page, from the start of the navigation to the first row of the fleet
 * table in the DOM (measured in the page, so the browser driver's own round trips do not count), at 10,000 agents.
 */
async function firstPaint(bin, dir) {
  const db = join(dir, 'dash-10k.db');
  const store = await openStore({ path: db });
  const now = Date.now();
  const insert = store.db.prepare(
    `INSERT INTO agents (name, group_name, state, state_since, state_reason, created_at, started_at, updated_at, last_heartbeat_at, heartbeat_seq, message)
     VALUES (?, ?, 'active', ?, 'first heartbeat', ?, ?, ?, ?, 1, ?)`,
  );
  store.db.transaction(() => {
    for (let i = 0; i < 10_000; i++) insert.run(`agent-${String(i).padStart(5, '0')}`, `group-${i % 50}`, now, now, now, now, now, `processed batch ${i}`);
  })();
  await store.close();
  const serve = await startServe(bin, db);
  const { context, page } = await browser(dir);
  try {
    await page.goto(`${serve.base}/login?token=${serve.login}`);
    await page.locator('#fleet tbody tr[data-name="agent-00000"]').waitFor({ timeout: 60_000 });
    await page.addInitScript(timeFirstRow);
    const times = [];
    for (let i = 0; i < 5; i++) {
      await page.goto(`${serve.base}/`);
      await page.waitForFunction(() => window.__firstRow !== undefined, undefined, { timeout: 60_000 });
      times.push(await page.evaluate(() => window.__firstRow));
    }
    const rows = await page.locator('#fleet tbody tr').count();
    return { ms: times.sort((a, b) => a - b)[2], rows };
  } finally {
    await context.close();
    await serve.stop();
  }
}

/** Runs both figures in `dir`, reporting each through `goal(label, ok, detail)`. */
export async function benchDashboard(dir, bin, goal) {
  const lat = await commitToDom(bin, dir);
  const p50 = pct(lat, 50);
  const p99 = pct(lat, 99);
  console.log(`dashboard: commit to the browser's DOM over ${lat.length} transitions: p50 ${fmt(p50)} ms, p99 ${fmt(p99)} ms (max ${fmt(lat.at(-1))} ms)`);
  goal('dashboard: commit → DOM p50 ≤ 100 ms', p50 <= 100, `${fmt(p50)} ms`);
  goal('dashboard: commit → DOM p99 ≤ 250 ms', p99 <= 250, `${fmt(p99)} ms`);
  const paint = await firstPaint(bin, dir);
  console.log(`dashboard: first paint of the fleet at 10,000 agents: ${fmt(paint.ms)} ms from navigation to the first row (median of 5 loads; ${paint.rows} rows in the DOM)`);
  goal('dashboard: first paint at 10,000 agents ≤ 1 s', paint.ms <= 1000, `${fmt(paint.ms)} ms`);
}
