import { describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { HEARTBEAT_SQL } from '../../src/store/protocol.js';
import { registerBindings } from '../../src/store/store.js';
import { cli, cliJson, exited, startCli, tempDb, waitFor, withStore } from '../helpers.js';

// Text a writer of the database chose, as a hostile user of a shared host would write it (issue: agent text reaches
// the terminal raw). Everything printed for people shows it escaped; JSON keeps it exact.
const CLEAR_AND_RETITLE = '\x1b[2J\x1b]0;pwned\x07FAKE OK';
const FORGED_LINE = 'fine\n2026-01-01 00:00:00Z  db-writer  active → offline  forged line';
const REVERSED = 'backup done \u202ekcab emoc';
const PERF_DATA = 'queue down | fake=999;1;2';
const HOSTILE = { esc: CLEAR_AND_RETITLE, nl: FORGED_LINE, bidi: REVERSED, pipe: PERF_DATA };

// What a terminal would obey or what reorders text: C0 controls (a newline only where the output itself breaks
// lines, checked by counting lines), DEL, C1, and the bidi and line-separator format characters.
// eslint-disable-next-line no-control-regex
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]/;

/** A database in which a foreign writer (plain SQL, the documented statements) registered four agents in error with hostile messages. */
async function hostileFleet(): Promise<string> {
  const db = tempDb();
  await withStore(db, () => undefined); // created and migrated as agentctl does
  const raw = new Database(db);
  try {
    const now = Date.now();
    const register = raw.prepare(await withStore(db, (s) => s.registerSql, 'existing'));
    const beat = raw.prepare(HEARTBEAT_SQL);
    for (const [name, message] of Object.entries(HOSTILE)) {
      register.run(registerBindings({ name, host: name === 'esc' ? CLEAR_AND_RETITLE : null }, now));
      beat.run({ name, status: 'error', message, metadata: null, progress: null, now });
    }
  } finally {
    raw.close();
  }
  return db;
}

describe('fault: text from agents printed for people', () => {
  it('status shows hostile messages and hosts escaped, one line per agent; --json keeps them exact', async () => {
    const db = await hostileFleet();
    const r = cli(['status'], { db });
    expect(r.code).toBe(0);
    expect(r.stdout).not.toMatch(RAW_CONTROL);
    expect(r.stdout.trimEnd().split('\n')).toHaveLength(1 + 4 + 1); // head, four agents, summary
    expect(r.stdout).toContain('\\x1b[2J\\x1b]0;pwned\\x07FAKE OK'.slice(0, 20));
    const json = cliJson(['status'], { db });
    expect(Object.fromEntries(json.agents.map((a: any) => [a.name, a.message]))).toEqual(HOSTILE);
    expect(json.agents.find((a: any) => a.name === 'esc').host).toBe(CLEAR_AND_RETITLE);
  });

  it('status --watch never lets agent text reach the terminal raw', async () => {
    const db = await hostileFleet();
    const w = startCli(['status', '--watch', '--refresh', '100ms'], { db });
    await waitFor(() => w.output().split('4 agents: 4 error').length > 2, 'two frames of status --watch', 30_000);
    w.kill('SIGINT');
    await exited(w);
    const frames = w.output().split(/^(?=agentctl status · )/m).filter((f) => f.includes('4 agents'));
    expect(frames.length).toBeGreaterThanOrEqual(2);
    expect(w.output()).not.toMatch(RAW_CONTROL);
    // Header and blank line, head, four agents, summary (and the screen's health-loop warning).
    for (const f of frames) expect(f.trim().split('\n').filter((l) => !l.startsWith('warning: '))).toHaveLength(2 + 1 + 4 + 1);
  });

  it('history prints one line per event with agent text escaped; --json keeps it exact', async () => {
    const db = await hostileFleet();
    const events = cliJson(['history'], { db });
    const r = cli(['history'], { db });
    expect(r.code).toBe(0);
    expect(r.stdout).not.toMatch(RAW_CONTROL);
    expect(r.stdout.trimEnd().split('\n')).toHaveLength(events.length);
    expect(r.stdout).not.toMatch(/^2026-01-01/m); // the forged line does not start a line of its own
    const reported = events.filter((e: any) => e.toState === 'error');
    expect(Object.fromEntries(reported.map((e: any) => [e.agentName, e.evidence.message]))).toEqual(HOSTILE);
  });

  it('check prints exactly one line whose only | is its own, naming the agents with their text escaped', async () => {
    const db = await hostileFleet();
    const r = cli(['check'], { db });
    expect(r.code).toBe(1); // WARNING: agents in error
    expect(r.stdout.endsWith('\n')).toBe(true);
    expect(r.stdout.slice(0, -1)).not.toContain('\n');
    expect(r.stdout).not.toMatch(RAW_CONTROL);
    expect(r.stdout.split('|')).toHaveLength(2);
    const [text, perf] = r.stdout.split('|') as [string, string];
    expect(text).toMatch(/^WARNING: /);
    expect(text).toContain('pipe error (queue down \\x7c fake=999;1;2)');
    expect(perf.trim()).toBe('total=4 active=0 initializing=0 stale=0 error=4 maintenance=0 offline=0 failed=0');
    const json = JSON.parse(cli(['check', '--json'], { db }).stdout);
    expect(json.agents.map((a: any) => a.name).sort()).toEqual(Object.keys(HOSTILE).sort());
    expect(json.message).toContain(PERF_DATA); // exact in JSON
  });
});
