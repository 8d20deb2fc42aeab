import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import Database from 'better-sqlite3';
import { cli, tempDb } from '../helpers.js';
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

// The oracles below are written from the documented rules, independently of the code under test.

/** Agent names, as documented: 1–128 characters; ASCII letters and digits, then also '.', '_', '-', ':' and '@'. */
const LETTERS_DIGITS = [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'];
const NAME_REST = [...LETTERS_DIGITS, '.', '_', '-', ':', '@'];
function isValidName(name: string): boolean {
  const chars = [...name];
  if (name.length < 1 || name.length > 128 || chars.length !== name.length) return false;
  return LETTERS_DIGITS.includes(chars[0]!) && chars.every((c) => NAME_REST.includes(c));
}
const validName = fc
  .tuple(fc.constantFrom(...LETTERS_DIGITS), fc.array(fc.constantFrom(...NAME_REST), { maxLength: 127 }))
  .map(([first, rest]) => first + rest.join(''));
/** Names one step away from valid: a bad first character, a character outside the alphabet, or one too many. */
const nearlyValidName = fc.oneof(
  fc.tuple(fc.constantFrom('.', '_', '-', ':', '@'), validName).map(([c, n]) => c + n),
  fc.tuple(validName, fc.constantFrom(' ', '/', '*', '#', 'é', 'ß', '\u00a0', '\t', '"', "'", '$', '😀')).map(([n, c]) => n + c),
  fc.array(fc.constantFrom(...LETTERS_DIGITS), { minLength: 129, maxLength: 135 }).map((cs) => cs.join('')),
  fc.constant(''),
);

/**
 * Durations, as documented: digits with an optional fraction, then ms, s, m, h or d, or nothing for seconds; more
 * than zero and at most ten years (365-day years); spaces around it are ignored. An interval on the command line is
 * at least 100 ms.
 * Returns the milliseconds, 'invalid', or 'inexact' when the value falls between two whole milliseconds.
 */
const UNIT_MS: [string, number][] = [['ms', 1], ['s', 1000], ['m', 60_000], ['h', 3_600_000], ['d', 86_400_000]];
const TEN_YEARS_MS = 10 * 365 * 86_400_000;
const INTERVAL_MIN_MS = 100;
function intervalOracle(text: string): number | 'invalid' | 'inexact' {
  const t = text.replace(/^[ \t\n\r\v\f]+|[ \t\n\r\v\f]+$/g, '');
  let i = 0;
  const isDigit = (c: string | undefined) => c !== undefined && c >= '0' && c <= '9';
  let whole = '';
  while (isDigit(t[i])) whole += t[i++];
  if (!whole) return 'invalid';
  let frac = '';
  if (t[i] === '.') {
    i++;
    while (isDigit(t[i])) frac += t[i++];
    if (!frac) return 'invalid';
  }
  const unit = t.slice(i);
  const factor = unit === '' ? 1000 : UNIT_MS.find(([u]) => u === unit)?.[1];
  if (factor === undefined) return 'invalid';
  // Exact arithmetic: (whole.frac × factor) as a fraction over 10^digits.
  const scale = 10n ** BigInt(frac.length);
  const numerator = BigInt(whole + frac) * BigInt(factor);
  if (numerator % scale !== 0n) return 'inexact';
  const ms = Number(numerator / scale);
  return ms >= INTERVAL_MIN_MS && ms <= TEN_YEARS_MS ? ms : 'invalid';
}
/** Valid intervals made from the grammar, with the milliseconds they mean. */
const validInterval = fc.oneof(
  fc.integer({ min: 1, max: 100_000 }).map((n) => ({ text: `${n}ms`, ms: n })),
  fc.tuple(fc.integer({ min: 1, max: 5000 }), fc.constantFrom(['s', 1000], ['', 1000], ['m', 60_000], ['h', 3_600_000], ['d', 86_400_000]) as fc.Arbitrary<[string, number]>).map(([n, [u, f]]) => ({ text: `${n}${u}`, ms: n * f })),
  fc.tuple(fc.integer({ min: 0, max: 99 }), fc.integer({ min: 1, max: 999 }), fc.constantFrom(['s', 1000], ['', 1000], ['m', 60_000], ['h', 3_600_000]) as fc.Arbitrary<[string, number]>)
    .map(([n, f, [u, k]]) => ({ text: `${n}.${String(f).padStart(3, '0')}${u}`, ms: ((n * 1000 + f) * k) / 1000 })),
);
/** Texts that are not durations (or not allowed as an interval), each for a documented reason. */
const invalidInterval = fc.constantFrom(
  '', ' ', '0', '0s', '0ms', '0.000s', '-5s', '+5s', '5 s', '5sec', '5min', '5S', '5M', '5ms5', '1s30s', '1e3', '0x10', '5,5s',
  '.5s', '5.s', 'five', 's', '∞', '3651d', '87601h', '5w', '5y', '1_000ms',
);
let counter = 0;
const unique = (prefix: string) => `${prefix}-${process.pid}-${++counter}`;

describe('property: names', () => {
  it('valid names are stored as given; invalid ones exit 2 and change nothing', () => {
    const db = tempDb();
    cli(['heartbeat', 'seed'], { db });
    fc.assert(
      fc.property(fc.oneof(validName, nearlyValidName, fc.string({ maxLength: 140, unit: 'grapheme' }), fc.string({ minLength: 129, maxLength: 140 })), (name) => {
        const before = contents(db);
        const r = cli(['heartbeat', name], { db });
        if (isValidName(name)) {
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
  it('the oracle agrees with the documented examples', () => {
    expect(['250ms', '30s', '5m', '1h', '2d', '90', '1.5m', ' 2s '].map(intervalOracle)).toEqual([250, 30_000, 300_000, 3_600_000, 172_800_000, 90_000, 90_000, 2000]);
    expect(['0', '5x', '-1s', '', '1.', '3651d', '99ms', '0.05s'].map(intervalOracle)).toEqual(Array(8).fill('invalid'));
    expect(intervalOracle('0.0005s')).toBe('inexact');
  });

  it('valid intervals are stored exactly; anything else exits 2 and changes nothing', () => {
    const db = tempDb();
    cli(['heartbeat', 'seed'], { db });
    fc.assert(
      fc.property(fc.oneof(validInterval.map((v) => v.text), invalidInterval, fc.string({ maxLength: 12 })), (text) => {
        const name = unique('d');
        const before = contents(db);
        const verdict = intervalOracle(text);
        fc.pre(verdict !== 'inexact'); // between two milliseconds: the rounding is the code's choice, not a rule
        const expected = verdict === 'invalid' ? undefined : verdict;
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
  // defineProperty: a key named __proto__ is data in JSON, not the prototype (plain assignment would drop it).
  for (const [k, v] of Object.entries(value)) if (v !== null) Object.defineProperty(out, k, { value: mergedOntoEmpty(v), enumerable: true, writable: true, configurable: true });
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
  it('DERIVED_STATE_SQL says what deriveState says, for any persisted state, timestamps and contract', async () => {
    const store = await openStore({ path: tempDb() });
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
      await store.close();
    }
  });
});
