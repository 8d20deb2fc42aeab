import { describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { exited, fixture, start, tempDb } from './helpers.js';
import { openStore } from '../src/store/store.js';
import { SCHEMA_VERSION } from '../src/store/sqlite/migrations.js';


async function runAll(children: ReturnType<typeof start>[]) {
  const results = await Promise.all(children.map(exited));
  return children.map((c, i) => ({ ...results[i]!, out: c.output(), err: c.errors() }));
}

describe('many writers at once', () => {
  it('8 processes × 500 heartbeats: exactly 4,000 counted, no errors', async () => {
    const db = tempDb();
    await (await openStore({ path: db })).close();
    const startAt = Date.now() + 1500;
    const kids = Array.from({ length: 8 }, (_, i) => start(process.execPath, [fixture('beat-many.mjs'), db, `w${i % 4}`, '500', String(startAt)]));
    const results = await runAll(kids);
    for (const r of results) {
      expect(r.err).toBe('');
      expect(r.code).toBe(0);
      expect(JSON.parse(r.out)).toEqual({ ok: 500, errors: [] });
    }
    const raw = new Database(db, { readonly: true });
    const { total } = raw.prepare('SELECT SUM(heartbeat_seq) AS total FROM agents').get() as { total: number };
    const agents = raw.prepare('SELECT COUNT(*) AS n FROM agents').get() as { n: number };
    const ok = raw.pragma('integrity_check', { simple: true });
    raw.close();
    expect(total).toBe(4000);
    expect(agents.n).toBe(4);
    expect(ok).toBe('ok');
  });

  it('processes creating a new database at the same moment all succeed and migrate once', async () => {
    const db = tempDb();
    const startAt = Date.now() + 1500;
    const kids = Array.from({ length: 6 }, (_, i) => start(process.execPath, [fixture('open-at.mjs'), db, `a${i}`, String(startAt)]));
    const results = await runAll(kids);
    for (const r of results) {
      expect(r.out.trim()).toBe('{"ok":true}');
      expect(r.code).toBe(0);
    }
    const raw = new Database(db, { readonly: true });
    expect(raw.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    expect((raw.prepare('SELECT COUNT(*) AS n FROM agents').get() as { n: number }).n).toBe(6);
    expect((raw.prepare("SELECT COUNT(*) AS n FROM sqlite_schema WHERE type = 'trigger'").get() as { n: number }).n).toBe(5);
    raw.close();
  });
});
