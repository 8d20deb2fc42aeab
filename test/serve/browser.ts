// A real browser for the dashboard's tests: Debian's chromium driven by playwright-core, which downloads no
// browser. A missing chromium fails the test (never a silent skip) and says how to install it.
import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { afterEach } from 'vitest';
import { type BrowserContext, type Page, chromium } from 'playwright-core';
import { killGroupAfter, tempDir } from '../helpers.js';
import { descendantsOf, listProcs } from '../processes.js';

/** The flags every test browser runs with: headless, no sandbox (we may be root), nothing fetched from outside. */
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

const INSTALL_HINT =
  "install it (Debian/Ubuntu: apt-get install chromium; .ci/run does this) or point AGENTCTL_CHROMIUM at a chromium executable";

/**
 * The chromium executable: AGENTCTL_CHROMIUM when set (it must exist), else `chromium` or `chromium-browser` on
 * PATH, else /usr/bin/chromium. Throws, saying how to install it, when there is none: the browser tests then fail.
 */
export function chromiumPath(env: NodeJS.ProcessEnv = process.env): string {
  const given = env.AGENTCTL_CHROMIUM;
  if (given) {
    if (!existsSync(given)) throw new Error(`AGENTCTL_CHROMIUM is ${given}, which does not exist: ${INSTALL_HINT}`);
    return given;
  }
  for (const dir of (env.PATH ?? '').split(delimiter).filter(Boolean)) {
    for (const name of ['chromium', 'chromium-browser']) if (existsSync(join(dir, name))) return join(dir, name);
  }
  if (existsSync('/usr/bin/chromium')) return '/usr/bin/chromium';
  throw new Error(`the dashboard's browser tests need chromium and none was found: ${INSTALL_HINT}`);
}

const open = new Set<Browser>();

/**
 * Closes every browser a test opened (the leak check then kills whatever chromium left), and fails the test if a
 * JavaScript dialog opened in any of them.
 */
afterEach(async () => {
  const dialogs = [...open].flatMap((b) => b.dialogs);
  for (const b of open) await b.context.close().catch(() => undefined);
  open.clear();
  if (dialogs.length) throw new Error(`a JavaScript dialog opened in the page (injected script?): ${dialogs.join('; ')}`);
});

export interface Browser {
  context: BrowserContext;
  page: Page;
  /** What went wrong in the page: uncaught errors and console errors (a CSP violation shows up here); 4xx answers aside. */
  errors: string[];
  /** Every JavaScript dialog that opened (the dashboard opens none): checked after each test. */
  dialogs: string[];
}

/**
 * Launches chromium with a fresh profile (its own --user-data-dir in a temp directory) and opens one page. Any
 * JavaScript dialog (alert, confirm, prompt) fails the test: the dashboard uses none, so one means injected script.
 */
export async function launch(opts: { colorScheme?: 'light' | 'dark'; viewport?: { width: number; height: number } } = {}): Promise<Browser> {
  const context = await chromium.launchPersistentContext(tempDir('agentctl-chromium-'), {
    executablePath: chromiumPath(),
    headless: true,
    args: CHROMIUM_ARGS,
    colorScheme: opts.colorScheme ?? 'light',
    viewport: opts.viewport ?? { width: 1280, height: 800 },
  });
  // Its processes are killed after the test even if close() fails (they carry the worker's mark too).
  const procs = listProcs(true);
  for (const pid of descendantsOf([process.pid], procs)) {
    const p = procs.find((x) => x.pid === pid);
    if (p && p.pid !== process.pid && /chrom/i.test(p.cmd)) killGroupAfter(p.pid);
  }
  const page = context.pages()[0] ?? (await context.newPage());
  const errors: string[] = [];
  const dialogs: string[] = [];
  const b: Browser = { context, page, errors, dialogs };
  open.add(b);
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    // A refused request (a 403 the test asked for) is logged too; anything else, a CSP violation included, counts.
    if (m.type() === 'error' && !/^Failed to load resource: the server responded with a status of 4\d\d/.test(m.text())) errors.push(`console: ${m.text()}`);
  });
  page.on('dialog', (d) => {
    dialogs.push(`${d.type()}: ${d.message()}`);
    void d.dismiss().catch(() => undefined);
  });
  return b;
}

/** Marks the page, so a later check can tell it was not reloaded (a reload loses the mark). */
export async function markPage(page: Page): Promise<void> {
  await page.evaluate(() => ((window as unknown as { __agentctlMark: number }).__agentctlMark = 42));
}

export async function stillMarked(page: Page): Promise<boolean> {
  return page.evaluate(() => (window as unknown as { __agentctlMark?: number }).__agentctlMark === 42);
}

/** The state shown in the fleet table's row of `name` (null: no such row). */
export async function rowState(page: Page, name: string): Promise<string | null> {
  return page.evaluate((n) => {
    for (const tr of Array.from(document.querySelectorAll<HTMLTableRowElement>("#fleet tbody tr"))) if (tr.dataset.name === n) return tr.dataset.state ?? null;
    return null;
  }, name);
}
