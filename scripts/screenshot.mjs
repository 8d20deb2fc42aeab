// The dashboard's screenshots in the README: docs/dashboard-light.png and docs/dashboard-dark.png (1280x800).
// Run by hand after `npm run build`:   node scripts/screenshot.mjs
// It starts a small demo fleet (three agents under `agentctl run`, the rest written by `agentctl heartbeat` and
// `set-status`), `agentctl serve --monitor` on a free loopback port and Debian's chromium (AGENTCTL_CHROMIUM, else
// `chromium` on PATH) through playwright-core, which downloads no browser; everything it starts is stopped at the end.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = join(root, 'bin', 'agentctl');
const dir = mkdtempSync(join(tmpdir(), 'agentctl-shots-'));
const db = join(dir, 'fleet.db');
const children = [];

function cli(...args) {
  const r = spawnSync(process.execPath, [bin, '--db', db, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`agentctl ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

function startCli(...args) {
  const child = spawn(process.execPath, [bin, '--db', db, ...args], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (d) => (err += d));
  children.push(child);
  return { child, errors: () => err };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(cond, what, ms = 20_000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

function demoFleet() {
  const worker = "let n = 0; setInterval(() => n++, 1000);";
  for (const name of ['web-1', 'web-2', 'web-3']) {
    cli('register', name, '--group', 'web', '--interval', '5s');
    startCli('run', '--name', name, '--interval', '5s', '--', process.execPath, '-e', worker);
  }
  for (const [name, group] of [['ingest-1', 'pipeline'], ['ingest-2', 'pipeline'], ['transform', 'pipeline'], ['backup', 'cron'], ['report', 'cron'], ['mailer', 'cron']]) cli('register', name, '--group', group);
  cli('heartbeat', 'ingest-1', '--message', 'batch 4812: 12,400 rows', '--progress', '4812');
  cli('heartbeat', 'ingest-2', '--status', 'busy', '--message', 'replaying the dead-letter queue');
  cli('heartbeat', 'transform', '--status', 'error', '--message', 'warehouse unreachable: connection refused');
  cli('heartbeat', 'backup', '--message', 'nightly snapshot done (41 GiB)');
  cli('set-status', 'backup', 'maintenance', '--for', '2h', '--reason', 'moving to the new NAS');
  cli('heartbeat', 'report');
  cli('set-status', 'report', 'offline', '--reason', 'decommissioned host');
  cli('heartbeat', 'mailer', '--interval', '100ms', '--message', 'sent 310 mails');
}

let context;
try {
  demoFleet();
  const serve = startCli('serve', '--listen', '127.0.0.1:0', '--monitor', '--every', '1s');
  let base = '';
  await until(() => (base = /serving (http:\/\/\S+) /.exec(serve.errors())?.[1] ?? '') !== '', 'serve to print its address');
  const login = /login\?token=(\S+)/.exec(serve.errors())?.[1];
  if (!login) throw new Error(`serve printed no login link: ${serve.errors()}`);
  await until(() => /"state": "active"/.test(cli('status', 'web-3', '--json')), 'the agents under agentctl run to beat');
  await until(() => /"state": "stale"/.test(cli('status', 'mailer', '--json')), 'the mailer to go stale');
  const executablePath = process.env.AGENTCTL_CHROMIUM || spawnSync('sh', ['-c', 'command -v chromium || command -v chromium-browser'], { encoding: 'utf8' }).stdout.trim() || '/usr/bin/chromium';
  context = await chromium.launchPersistentContext(join(dir, 'profile'), {
    executablePath,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    viewport: { width: 1280, height: 800 },
  });
  const page = context.pages()[0] ?? (await context.newPage());
  await page.goto(`${base}/login?token=${login}`);
  await page.locator('#fleet tbody tr[data-name="web-1"]').waitFor();
  await page.waitForFunction(() => /Health loop running/.test(document.querySelector('#loop')?.textContent ?? ''));
  mkdirSync(join(root, 'docs'), { recursive: true });
  for (const scheme of ['light', 'dark']) {
    await page.emulateMedia({ colorScheme: scheme });
    await sleep(200);
    await page.screenshot({ path: join(root, 'docs', `dashboard-${scheme}.png`) });
    console.log(`wrote docs/dashboard-${scheme}.png`);
  }
} finally {
  await context?.close().catch(() => undefined);
  for (const c of children.reverse()) {
    try {
      process.kill(-c.pid, 'SIGTERM');
    } catch {
      // gone
    }
  }
  await sleep(1500);
  for (const c of children) {
    try {
      process.kill(-c.pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  rmSync(dir, { recursive: true, force: true });
}
