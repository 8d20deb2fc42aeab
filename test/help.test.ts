import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, cli, tempDb } from './helpers.js';

/** Every command `agentctl --help` lists (but `help` itself). */
function commandNames(): string[] {
  const top = cli(['--help']).stdout;
  const section = top.slice(top.indexOf('Commands:'), top.indexOf('Exit codes:'));
  return [...section.matchAll(/^ {2}([a-z][a-z-]*)\b/gm)].map((m) => m[1]!).filter((n) => n !== 'help');
}

/** A source document's number as the user would meet it: "seed 000", "Seed 003's", "the seed-002 map". */
const SEED_NUMBER = /\bseeds?[\s-]*0\d\d/i;

describe('help and messages a newcomer reads', () => {
  const names = commandNames();

  it('lists every command', () => {
    expect(names).toEqual(expect.arrayContaining(['status', 'check', 'run', 'set-status', 'monitor', 'map', 'metrics', 'demo']));
  });

  it('never names a source document, and writes every default one way: (default: VALUE)', () => {
    for (const args of [['--help'], ...names.map((n) => [n, '--help'])]) {
      const r = cli(args);
      expect(r.code, args.join(' ')).toBe(0);
      const text = r.stdout;
      expect(text, args.join(' ')).not.toMatch(SEED_NUMBER);
      expect(text, args.join(' ')).not.toMatch(/\bseeds?\b/i);
      // Commander's own style quotes the value as JSON; hand-written ones once said "(default 30s)".
      expect(text, args.join(' ')).not.toMatch(/default: "/);
      expect(text, args.join(' ')).not.toMatch(/\(default [^:]/);
      // Two defaults in a row, "(…) (default: …)", read as one broken sentence.
      expect(text.replace(/\n\s+/g, ' '), args.join(' ')).not.toMatch(/\) \(default:/);
    }
  });

  it('run --help says where the agent name comes from', () => {
    const text = cli(['run', '--help']).stdout;
    expect(text).not.toMatch(/as agent NAME/);
    expect(text).toMatch(/named by --name \(default: the command's file name\)/);
  });

  it('the README never names a source document by its number', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    expect(readme.match(new RegExp(SEED_NUMBER, 'gi')) ?? []).toEqual([]);
    expect(readme.match(/\bseeds?\b[^\n]*/gi) ?? []).toEqual([]);
  });
});

describe('set-status says what it did, in words', () => {
  it('an agent that reports an error is available, and the error still stands', () => {
    const db = tempDb();
    cli(['heartbeat', 'worker-1', '--status', 'error', '--message', 'queue unreachable'], { db });
    const r = cli(['set-status', 'worker-1', 'available'], { db });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('worker-1 is now available; it still reports an error ("queue unreachable") until a heartbeat with status ok');
  });

  it('maintenance, its end, offline and a repeat are each said plainly', () => {
    const db = tempDb();
    cli(['heartbeat', 'w'], { db });
    expect(cli(['set-status', 'w', 'maintenance'], { db }).stdout.trim()).toBe('w is in maintenance until it is set available or busy (no alerts meanwhile)');
    expect(cli(['set-status', 'w', 'busy'], { db }).stdout.trim()).toBe('w is now busy, and its maintenance window has ended');
    expect(cli(['set-status', 'w', 'offline'], { db }).stdout.trim()).toBe(
      'w is now offline (it was active); its executing commands are cancelled, and its next heartbeat brings it back',
    );
    expect(cli(['set-status', 'w', 'offline'], { db }).stdout.trim()).toBe('w was already offline; nothing changed');
    expect(cli(['set-status', 'w', 'available'], { db }).stdout.trim()).toBe('w is now available; it shows offline until its next heartbeat');
  });
});
