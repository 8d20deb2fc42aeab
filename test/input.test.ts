import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { cli, fileHash, tempDb } from './helpers.js';
import { nestingDepth, validateMetadata } from '../src/core/validate.js';

/** `{"a":{"a":…1…}}` nested `levels` objects deep. */
const nested = (levels: number) => `${'{"a":'.repeat(levels)}1${'}'.repeat(levels)}`;

/** Exit 2, one line on stderr, nothing on stdout, and the database as it was. */
function refused(args: string[], db: string, reason: RegExp): void {
  const before = fileHash(db);
  const r = cli(args, { db });
  expect({ code: r.code, stdout: r.stdout, lines: r.stderr.trim().split('\n').length }).toEqual({ code: 2, stdout: '', lines: 1 });
  expect(r.stderr).toMatch(reason);
  expect(fileHash(db)).toBe(before);
}

describe('bad input is exit 2 with one line, the database untouched', () => {
  it('metadata nested past 32 levels is refused by its documented limit, even 10,000 deep (no stack overflow)', () => {
    const db = tempDb();
    expect(cli(['heartbeat', 'm'], { db }).code).toBe(0);
    expect(cli(['heartbeat', 'm', '--meta', nested(32)], { db }).code).toBe(0);
    for (const levels of [33, 1_500, 10_000]) {
      refused(['heartbeat', 'm', '--meta', nested(levels)], db, /--meta nested too deeply: more than 32 levels .*the limit is 32/);
      refused(['register', 'm', '--meta', nested(levels)], db, /--meta nested too deeply/);
    }
    // Arrays count as levels too.
    refused(['heartbeat', 'm', '--meta', `{"a":${'['.repeat(40)}${']'.repeat(40)}}`], db, /nested too deeply/);
  });

  it('the library counts nesting without recursion, and stops at a cycle', () => {
    let deep: Record<string, unknown> = {};
    for (let i = 0; i < 100_000; i++) deep = { a: deep };
    expect(() => validateMetadata(deep)).toThrow(/nested too deeply/);
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    expect(nestingDepth(cycle, 32)).toBe(33);
    expect(nestingDepth({ a: [1, { b: {} }] }, 32)).toBe(4);
  });

  it('--progress past the largest exact integer says it is too large, not that it must be at least 0', () => {
    const db = tempDb();
    expect(cli(['heartbeat', 'p', '--progress', '9007199254740991'], { db }).code).toBe(0);
    refused(['heartbeat', 'p', '--progress', '9007199254740993'], db, /invalid --progress '9007199254740993': too large, at most 9007199254740991/);
    refused(['heartbeat', 'p', '--progress', '-1'], db, /must be at least 0/);
  });

  it('--interval below the documented 100 ms minimum is refused, for register, heartbeat and run', () => {
    const db = tempDb();
    expect(cli(['register', 'i', '--interval', '100ms'], { db }).code).toBe(0);
    for (const args of [['register', 'i', '--interval', '1ms'], ['heartbeat', 'i', '--interval', '99ms'], ['run', '--name', 'i', '--interval', '1ms', '--', 'true']]) {
      refused(args, db, /--interval: \d+ms is shorter than the 100ms minimum/);
    }
  });

  it('a bad flag on a missing database creates nothing', () => {
    const db = tempDb();
    expect(cli(['heartbeat', 'x', '--interval', '1ms'], { db }).code).toBe(2);
    expect(existsSync(db)).toBe(false);
  });
});
