import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { FIXTURES, cli, cliJson, exited, startCli, tempDb, trackAgent, waitFor, withStore } from '../helpers.js';
import { agentOf, createToken, historyJson, serve } from './serve-helpers.js';
import { chromiumPath, launch, markPage, rowState, stillMarked } from './browser.js';

const node = process.execPath;

describe('the dashboard in a real browser', () => {
  it('fails, never skips, without chromium, and says how to install it', () => {
    expect(() => chromiumPath({ AGENTCTL_CHROMIUM: '/nonexistent/chromium' })).toThrow(/apt-get install chromium/);
    expect(chromiumPath({ PATH: '/usr/bin:/bin' })).toMatch(/chromium/);
  });

  it('logs in through the printed link, shows the fleet, and turns a SIGKILLed worker offline live, without a reload', async () => {
    const db = tempDb();
    expect(cli(['register', 'worker', '--group', 'batch'], { db }).code).toBe(0);
    const run = startCli(['run', '--name', 'worker', '--interval', '100ms', '--', node, join(FIXTURES, 'agent-hang.mjs')], { db });
    await waitFor(() => cli(['status', 'worker', '--json'], { db }).stdout.includes('"state": "active"'), 'the worker to beat', 30_000);
    const worker = trackAgent(db, 'worker')!;
    expect(cli(['register', 'idle', '--group', 'batch'], { db }).code).toBe(0);
    const s = await serve(db, ['--monitor', '--every', '200ms', '--poll', '50ms']);
    expect(s.login).toMatch(/^agentctl_/);
    const { page, errors } = await launch();
    await page.goto(`${s.base}/login?token=${s.login}`);
    // The link opens a session and lands on the fleet.
    expect(new URL(page.url()).pathname).toBe('/');
    await page.locator('#fleet tbody tr[data-name="worker"]').waitFor();
    expect(await rowState(page, 'worker')).toBe('active');
    expect(await rowState(page, 'idle')).toBe('initializing');
    const row = page.locator('#fleet tbody tr[data-name="worker"]');
    // Beating every 100ms: "Online now" within its interval (a busy machine may show the beat a few ms late).
    expect(await row.locator('td').nth(2).textContent()).toMatch(/^(Online now|\d+ms ago)$/);
    expect(await page.locator('#fleet tbody tr[data-name="idle"] td').nth(2).textContent()).toBe('never');
    expect(await page.locator('#who').textContent()).toMatch(/\(operator\)$/);
    // Summary counts and the group's roll-up.
    expect(await page.locator('.summary .count').first().textContent()).toContain('2');
    expect(await page.locator('.groups .group').first().textContent()).toMatch(/batch 2.*1 active.*1 initializing/);
    // The health loop of serve --monitor is running: no warning.
    await waitFor(async () => /Health loop running/.test((await page.locator('#loop').textContent()) ?? ''), 'the health loop status line');

    await markPage(page);
    process.kill(worker.pid!, 'SIGKILL');
    await page.waitForFunction(() => document.querySelector('#fleet tbody tr[data-name="worker"]')?.getAttribute('data-state') === 'offline', undefined, { timeout: 15_000 });
    expect(await stillMarked(page)).toBe(true);
    // run reports the exit and ends (its child's code): the row stays offline, the badge with it.
    await exited(run);
    await waitFor(async () => historyJson(db, 'worker').some((e: { reason: string }) => e.reason === 'killed by SIGKILL' || e.reason === 'process gone'), 'the conviction in the history');
    expect(await rowState(page, 'worker')).toBe('offline');
    expect(await row.locator('.state').textContent()).toBe('offline');
    // The agent's page: its history as a timeline, the conviction with its evidence: the signal that killed it, as
    // `agentctl run` reports it, or (when the health loop's pass came first, on a busy machine) its pid gone.
    await row.locator('a').click();
    await page.locator('#timeline li').first().waitFor();
    expect(await stillMarked(page)).toBe(true);
    expect(new URL(page.url()).pathname).toBe('/agents/worker');
    const newest = page.locator('#timeline li').first();
    expect(await newest.locator('.state').last().textContent()).toBe('offline');
    expect(await newest.locator('pre').textContent()).toMatch(/SIGKILL|"pid_check": "gone"/);
    expect(errors).toEqual([]);
    expect(await s.stop()).toEqual({ code: 0, signal: null });
  });

  it('shows a viewer no controls while the API refuses their writes (403); warns when no health loop runs', async () => {
    const db = tempDb();
    const viewer = createToken(db, 'alice', 'viewer');
    expect(cli(['register', 'job'], { db }).code).toBe(0);
    const s = await serve(db);
    const { page, errors } = await launch();
    await page.goto(`${s.base}/login?token=${viewer}`);
    await page.locator('#fleet tbody tr[data-name="job"]').waitFor();
    expect(await page.locator('#loop').textContent()).toMatch(/^Warning: no health loop has run/);
    expect(await page.locator('#loop').getAttribute('role')).toBe('alert');
    await page.locator('#fleet a', { hasText: 'job' }).click();
    await page.locator('#timeline li').first().waitFor();
    expect(await page.locator('#who').textContent()).toBe('alice (viewer)');
    expect(await page.locator('.controls button').count()).toBe(0);
    // The same session's writes, CSRF token and all, are refused by the server.
    const answers = await page.evaluate(async () => {
      const session = await (await fetch('/api/v1/session')).json();
      const post = (path: string, body: unknown) =>
        fetch(path, { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': session.csrfToken }, body: JSON.stringify(body) }).then((r) => r.status);
      return [await post('/api/v1/agents/job/status', { status: 'maintenance' }), await post('/api/v1/agents/job/restart', {}), await post('/api/v1/agents/job/commands', { payload: 'x' })];
    });
    expect(answers).toEqual([403, 403, 403]);
    expect(agentOf(db, 'job').state).toBe('initializing');
    expect(errors).toEqual([]);
    // Revoking the token ends the session: at its next refresh the page says how to log in again.
    expect(cli(['token', 'revoke', 'alice'], { db }).code).toBe(0);
    await page.locator('h1', { hasText: 'Log in to agentctl' }).waitFor({ timeout: 30_000 });
    await s.stop();
  });

  it('lets an operator set maintenance through the confirmation dialog and shows the row change; Esc cancels; send and restart say what they did', async () => {
    const db = tempDb();
    const op = createToken(db, 'olga', 'operator');
    expect(cli(['heartbeat', 'svc', '--interval', '1h'], { db }).code).toBe(0);
    const s = await serve(db, ['--poll', '50ms']);
    const { page, errors } = await launch();
    await page.goto(`${s.base}/login?token=${op}`);
    await page.locator('#fleet tbody tr[data-name="svc"]').waitFor();
    await markPage(page);
    await page.locator('#fleet a', { hasText: 'svc' }).click();
    await page.locator('#c-maintenance').waitFor();
    // Cancelled: nothing is sent.
    await page.locator('#c-maintenance').click();
    await page.locator('#confirm[open]').waitFor();
    await page.keyboard.press('Escape');
    await page.locator('#confirm:not([open])').waitFor({ state: 'attached' });
    expect(agentOf(db, 'svc').state).toBe('active');
    // Confirmed, with a duration and a reason.
    await page.locator('#c-maintenance').click();
    await page.locator('#confirm-for').fill('30m');
    await page.locator('#confirm-reason').fill('kernel upgrade');
    await page.locator('#confirm-ok').click();
    await page.waitForFunction(() => document.querySelector('#agent-title .state')?.textContent === 'maintenance');
    expect(await page.locator('#control-result').textContent()).toBe('svc is in maintenance');
    await page.locator('a', { hasText: '← Fleet' }).click();
    await page.waitForFunction(() => document.querySelector('#fleet tbody tr[data-name="svc"]')?.getAttribute('data-state') === 'maintenance');
    expect(await stillMarked(page)).toBe(true);
    const a = agentOf(db, 'svc');
    expect(a.state).toBe('maintenance');
    expect(a.maintenanceUntil - Date.now()).toBeGreaterThan(25 * 60_000);
    const ev = historyJson(db, 'svc').at(-1);
    expect(ev).toMatchObject({ toState: 'maintenance', reason: 'kernel upgrade', evidence: { token: 'olga' } });
    // A command, through its dialog; a restart the agent cannot have (no launch command) says why.
    await page.locator('#fleet a', { hasText: 'svc' }).click();
    await page.locator('#c-send').click();
    await page.locator('#confirm-payload').fill('{"op":"reload"}');
    await page.locator('#confirm-ok').click();
    await page.waitForFunction(() => document.querySelector('#control-result')?.textContent === 'command sent to svc');
    expect((cliJson(['commands', 'svc'], { db }) as any[]).map((c) => c.payload)).toEqual(['{"op":"reload"}']);
    await page.locator('#c-restart').click();
    await page.locator('#confirm-ok').click();
    await page.waitForFunction(() => /no launch command/.test(document.querySelector('#control-result.bad')?.textContent ?? ''));
    expect(await stillMarked(page)).toBe(true);
    expect(errors).toEqual([]);
    await s.stop();
  });

  it('shows hostile agent text as text: no element is made of it and no dialog opens; the page has a strict CSP', async () => {
    const db = tempDb();
    const op = createToken(db, 'olga', 'operator');
    const hostile = '<img src=x onerror=alert(1)>';
    expect(cli(['heartbeat', 'evil', '--message', hostile, '--meta', JSON.stringify({ note: '<b>x</b>' })], { db }).code).toBe(0);
    const s = await serve(db);
    const { page, errors } = await launch();
    const res = await page.goto(`${s.base}/login?token=${op}`);
    const headers = res!.headers();
    expect(headers['content-security-policy']).toMatch(/default-src 'self'/);
    expect(headers['content-security-policy']).toMatch(/frame-ancestors 'none'/);
    expect(headers['content-security-policy']).not.toMatch(/unsafe-inline|unsafe-eval/);
    expect(headers['x-content-type-options']).toBe('nosniff');
    const row = page.locator('#fleet tbody tr[data-name="evil"]');
    await row.waitFor();
    expect(await row.locator('td.msg').textContent()).toBe(hostile);
    await row.locator('a').click();
    await page.locator('#timeline li').first().waitFor();
    expect(await page.locator('dl.facts').textContent()).toContain(hostile);
    expect(await page.locator('dl.facts pre').textContent()).toContain('<b>x</b>');
    // Give an injected handler every chance to run: the image would have failed to load by now.
    await page.waitForLoadState('networkidle');
    expect(await page.locator('img').count()).toBe(0);
    expect(await page.locator('b').filter({ hasText: /^x$/ }).count()).toBe(0);
    expect(errors).toEqual([]);
    await s.stop();
  });

  it('renders 10,000 agents a page at a time (a bounded number of rows), and keeps filters in the URL across a reload', async () => {
    const db = tempDb();
    const op = createToken(db, 'olga', 'operator');
    await withStore(db, async (store) => {
      const now = Date.now();
      const insert = store.db.prepare(
        `INSERT INTO agents (name, group_name, state, state_since, state_reason, created_at, started_at, updated_at) VALUES (?, ?, 'initializing', ?, 'registered', ?, ?, ?)`,
      );
      store.db.transaction(() => {
        for (let i = 0; i < 10_000; i++) insert.run(`agent-${String(i).padStart(5, '0')}`, `g${i % 20}`, now, now, now, now);
      })();
      for (let i = 0; i < 5; i++) await store.heartbeat({ name: `agent-0000${i}` }, now);
    });
    const s = await serve(db);
    const { page, errors } = await launch();
    await page.goto(`${s.base}/login?token=${op}`);
    await page.locator('#fleet tbody tr[data-name="agent-00000"]').waitFor({ timeout: 30_000 });
    expect(await page.locator('#fleet tbody tr').count()).toBe(100);
    expect(await page.locator('#page-info').textContent()).toBe('1–100 of 10,000');
    await page.locator('button', { hasText: 'Next →' }).click();
    expect(await page.locator('#page-info').textContent()).toBe('101–200 of 10,000');
    expect(await page.locator('#fleet tbody tr').count()).toBe(100);
    expect(new URL(page.url()).searchParams.get('page')).toBe('2');
    // Filters: state, group and text, in the URL.
    await page.locator('#f-state').selectOption('active');
    await page.locator('#f-group').selectOption('g3');
    await page.waitForFunction(() => document.querySelectorAll('#fleet tbody tr').length === 1);
    expect(await page.locator('#fleet tbody tr').getAttribute('data-name')).toBe('agent-00003');
    await page.locator('#f-state').selectOption('');
    await page.locator('#f-q').fill('agent-0998');
    await page.waitForFunction(() => document.querySelector('#page-info')?.textContent === '1–1 of 1');
    expect(await page.locator('#fleet tbody tr').getAttribute('data-name')).toBe('agent-09983');
    const url = new URL(page.url());
    expect([url.searchParams.get('group'), url.searchParams.get('q'), url.searchParams.get('state')]).toEqual(['g3', 'agent-0998', null]);
    await page.reload();
    await page.waitForFunction(() => document.querySelector('#page-info')?.textContent === '1–1 of 1', undefined, { timeout: 30_000 });
    expect(await page.locator('#f-group').inputValue()).toBe('g3');
    expect(await page.locator('#f-q').inputValue()).toBe('agent-0998');
    expect(errors).toEqual([]);
    await s.stop();
  });

  it('is usable from the keyboard: Tab reaches a row, Enter opens the agent, Tab reaches a control and Enter opens its dialog; dark mode follows the browser', async () => {
    const db = tempDb();
    const op = createToken(db, 'olga', 'operator');
    expect(cli(['heartbeat', 'kb', '--interval', '1h'], { db }).code).toBe(0);
    const s = await serve(db);
    const { page, errors } = await launch();
    await page.goto(`${s.base}/login?token=${op}`);
    await page.locator('#fleet tbody tr[data-name="kb"]').waitFor();
    const focused = () => page.evaluate(() => {
      const e = document.activeElement as HTMLElement | null;
      return e ? `${e.tagName.toLowerCase()}#${e.id}[${e.dataset.name ?? ''}]` : '';
    });
    let at = '';
    for (let i = 0; i < 40 && at !== 'tr#[kb]'; i++) {
      await page.keyboard.press('Tab');
      at = await focused();
    }
    expect(at).toBe('tr#[kb]');
    // The focus is visible: an outline drawn by :focus-visible.
    expect(await page.evaluate(() => getComputedStyle(document.activeElement!).outlineStyle)).toBe('solid');
    await page.keyboard.press('Enter');
    await page.locator('#c-maintenance').waitFor();
    for (let i = 0; i < 40 && at !== 'button#c-maintenance[]'; i++) {
      await page.keyboard.press('Tab');
      at = await focused();
    }
    expect(at).toBe('button#c-maintenance[]');
    await page.keyboard.press('Enter');
    await page.locator('#confirm[open]').waitFor();
    expect(await focused()).toBe('input#confirm-for[]');
    await page.keyboard.press('Escape');
    // Dark mode follows the browser's setting.
    const background = () => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    expect(await background()).toBe('rgb(255, 255, 255)');
    await page.emulateMedia({ colorScheme: 'dark' });
    expect(await background()).toBe('rgb(15, 18, 22)');
    expect(errors).toEqual([]);
    await s.stop();
  });
});

