import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import Database from 'better-sqlite3';
import { cli, tempDb } from '../helpers.js';
import { NAME_RE, validateCliInterval } from '../../src/core/validate.js';
import { parseDuration } from '../../src/core/duration.js';
import { CLOCK_COLUMNS, clockOf } from '../../src/core/agents.js';
import { deriveState } from '../../src/core/state.js';
import { AGENT_STATES } from '../../src/store/rows.js';
import { openStore } from '../../src/store/store.js';
import { DERIVED_STATE_SQL } from '../../src/store/fleet.js';

/** Every row of the tables that matter, as text: "unchanged" means this is equal before and after. */
function contents(db: string): string {
  const raw = new Database(db, { readonly: true });
  try {
    return ['agents', 'events', 'commands'].map((t) => JSON.stringify(raw.prepare(`SELECT * FROM ${t} ORDER BY id`).all())).join('\n');
  } finally {
    raw.close();
  }
}

function expectUsageError(r: ReturnType<typeof cli>): void {
  expect(r.code).toBe(2);
  expect(r.stdout).toBe('');
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^agentctl: /);
}

const RUNS = { numRuns: 20 };
const validName = fc.stringMatching(NAME_RE);
let counter = 0;
const unique = (prefix: string) => `${prefix}-${process.pid}-${++counter}`;

describe('property: names', () => {
  it('valid names are stored as given; invalid ones exit 2 and change nothing', () => {
    const db = tempDb();
    cli(['heartbeat', 'seed'], { db });
    fc.assert(
      fc.property(fc.oneof(validName, fc.string({ maxLength: 140 }), fc.string({ minLength: 129, maxLength: 140 })), (name) => {
        const before = contents(db);
        const r = cli(['heartbeat', name], { db });
        if (NAME_RE.test(name)) {
          expect(r.code).toBe(0);
          expect(JSON.parse(cli(['status', '--json', name], { db }).stdout).agents[0].name).toBe(name);
        } else {
          expectUsageError(r);
          expect(contents(db)).toBe(before);
        }
      }),
      RUNS,
    );
  });
});

describe('property: durations', () => {
  const unit = fc.constantFrom('ms', 's', 'm', 'h', 'd', '');
  const valid = fc.tuple(fc.integer({ min: 1, max: 5000 }), unit).map(([n, u]) => (u === 'ms' ? `${n + 10}${u}` : `${n}${u}`));
  it('valid intervals are stored exactly; anything else exits 2 and changes nothing', () => {
    const db = tempDb();
    cli(['heartbeat', 'seed'], { db });
    fc.assert(
      fc.property(fc.oneof(valid, fc.string({ maxLength: 12 })), (text) => {
        const name = unique('d');
        const before = contents(db);
        let expected: number | undefined;
        try {
          expected = validateCliInterval(parseDuration(text, '--interval'));
        } catch {
          expected = undefined;
        }
        const r = cli(['register', name, `--interval=${text}`], { db });
        if (expected !== undefined) {
          expect(r.code).toBe(0);
          expect(JSON.parse(cli(['status', '--json', name], { db }).stdout).agents[0].intervalMs).toBe(expected);
        } else {
          expectUsageError(r);
          expect(contents(db)).toBe(before);
        }
      }),
      RUNS,
    );
  });
});

/** What RFC 7396 merge-patching `value` onto {} stores: nulls removed, recursively inside objects. */
function mergedOntoEmpty(value: unknown): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) if (v !== null) out[k] = mergedOntoEmpty(v);
  return out;
}

describe('property: JSON metadata', () => {
  it('objects are merged into the stored metadata; other JSON and broken JSON exit 2 and change nothing', () => {
    const db = tempDb();
    cli(['heartbeat', 'seed'], { db });
    const object = fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 6 });
    const notObject = fc.oneof(fc.jsonValue({ maxDepth: 2 }).filter((v) => v === null || typeof v !== 'object' || Array.isArray(v)).map((v) => JSON.stringify(v)), fc.string({ maxLength: 20 }).filter((s) => { try { const v = JSON.parse(s); return v === null || typeof v !== 'object' || Array.isArray(v); } catch { return true; } }));
    fc.assert(
      fc.property(fc.oneof(object.map((o) => ({ ok: true as const, o })), notObject.map((t) => ({ ok: false as const, t }))), (c) => {
        const name = unique('m');
        const before = contents(db);
        if (c.ok) {
          const r = cli(['heartbeat', name, '--meta', JSON.stringify(c.o)], { db });
          expect(r.code).toBe(0);
          const stored = JSON.parse(cli(['status', '--json', name], { db }).stdout).agents[0].metadata;
          expect(stored).toEqual(mergedOntoEmpty(JSON.parse(JSON.stringify(c.o))));
        } else {
          expectUsageError(cli(['heartbeat', name, '--meta', c.t], { db }));
          expect(contents(db)).toBe(before);
        }
      }),
      RUNS,
    );
  });
});

describe('property: flags', () => {
  const known = new Set(['--status', '--message', '--meta', '--progress', '--interval', '--pid', '--db', '--json', '--no-color', '--debug', '--help', '--version']);
  it('unknown flags and bad values of known ones exit 2 with one line and change nothing', () => {
    const db = tempDb();
    cli(['heartbeat', 'seed'], { db });
    const unknownFlag = fc.stringMatching(/^--[a-z][a-z-]{0,12}$/).filter((f) => !known.has(f));
    const badValue = fc.oneof(
      fc.constant(['--status', 'sleepy']),
      fc.integer({ max: -1 }).map((n) => ['--progress', String(n)]),
      fc.double({ noNaN: true }).filter((n) => !Number.isInteger(n)).map((n) => ['--progress', String(n)]),
      fc.integer({ min: 4_194_305 }).map((n) => ['--pid', String(n)]),
      fc.string({ minLength: 1025, maxLength: 1100 }).map((m) => ['--message', m]),
    );
    fc.assert(
      fc.property(fc.oneof(unknownFlag.map((f) => [f]), badValue), (args) => {
        const before = contents(db);
        expectUsageError(cli(['heartbeat', 'seed', ...args], { db }));
        expect(contents(db)).toBe(before);
      }),
      RUNS,
    );
  });
});

describe('property: the derived state in SQL', () => {
  it('DERIVED_STATE_SQL says what deriveState says, for any persisted state, timestamps and contract', () => {
    const store = openStore({ path: tempDb() });
    const now = Date.UTC(2026, 0, 1);
    // Random values, and small sets of values whose differences land exactly on the thresholds (the boundaries are
    // inclusive: silent for exactly the window is stale).
    const near = fc.tuple(fc.constantFrom(0, 1000, 1500, 2000, 3000, 4500, 6000, 9000), fc.constantFrom(-1, 0, 0, 1)).map(([d, e]) => now - d + e);
    const time = fc.oneof(fc.integer({ min: now - 1_000_000, max: now + 10_000 }), near);
    const row = fc.record({
      state: fc.constantFrom(...AGENT_STATES),
      stateSince: time,
      lastHeartbeatAt: fc.option(time, { nil: null }),
      startedAt: time,
      intervalMs: fc.oneof(fc.integer({ min: 1, max: 400_000 }), fc.constantFrom(1000, 1500, 2000)),
      staleMultiplier: fc.oneof(fc.double({ min: 1, max: 20, noNaN: true }), fc.constantFrom(1, 1.5, 3)),
      offlineAfterMs: fc.oneof(fc.integer({ min: 1, max: 900_000 }), fc.constantFrom(3000, 4500, 6000)),
      maintenanceUntil: fc.option(time, { nil: null }),
      reportedStatus: fc.constantFrom('ok', 'busy', 'error'),
    });
    const insert = store.db.prepare(
      `INSERT INTO agents (name, state, state_since, state_reason, last_heartbeat_at, started_at, interval_ms, stale_multiplier, offline_after_ms,
         maintenance_until, reported_status, created_at, updated_at)
       VALUES (:name, :state, :stateSince, 'given', :lastHeartbeatAt, :startedAt, :intervalMs, :staleMultiplier, :offlineAfterMs,
         :maintenanceUntil, :reportedStatus, :startedAt, :startedAt)`,
    );
    const read = store.db.prepare(`SELECT ${CLOCK_COLUMNS.join(', ')}, name, ${DERIVED_STATE_SQL} AS derived FROM agents`).raw(true);
    try {
      fc.assert(
        fc.property(fc.array(row, { minLength: 1, maxLength: 30 }), (rows) => {
          store.db.exec('DELETE FROM agents');
          rows.forEach((r, i) => insert.run({ ...r, name: `a${i}` }));
          for (const r of read.all({ now }) as unknown[][]) {
            expect(r[r.length - 1], JSON.stringify(r)).toBe(deriveState(clockOf(r), now).state);
          }
        }),
        { numRuns: 300 },
      );
    } finally {
      store.close();
    }
  });
});
