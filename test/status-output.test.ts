import { describe, expect, it } from 'vitest';
import { cli, tempDb } from './helpers.js';

describe('status: only data on stdout, only what it uses loaded', () => {
  it('the health-loop warning goes to stderr, so the summary is the last line of stdout', () => {
    const db = tempDb();
    cli(['heartbeat', 'w1'], { db });
    const r = cli(['status'], { db });
    expect(r.code).toBe(0);
    expect(r.stdout.trimEnd().split('\n').pop()).toBe('1 agent: 1 active');
    expect(r.stdout).not.toMatch(/warning/);
    expect(r.stderr).toMatch(/^warning: no health loop has run on this database/);
  });

  it('--refresh without --watch is a usage error (exit 2, one line, nothing on stdout)', () => {
    const db = tempDb();
    cli(['heartbeat', 'w1'], { db });
    const r = cli(['status', '--refresh', '1s'], { db });
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/--refresh applies only to --watch/);
  });

  it('status --json loads neither the colour library nor a table renderer; the table loads the colours it paints with', () => {
    const db = tempDb();
    cli(['heartbeat', 'w1'], { db });
    // NODE_DEBUG=esm makes Node's module loader name every module it loads, on stderr.
    const loaded = (args: string[]) => cli(args, { db, env: { NODE_DEBUG: 'esm' } }).stderr;
    const json = loaded(['status', '--json']);
    expect(json).toMatch(/dist\/cli\/commands\/status\.js/); // the check sees what it loads
    expect(json).not.toMatch(/node_modules\/(chalk|cli-table3)\//);
    expect(loaded(['status'])).toMatch(/node_modules\/chalk\//);
    for (const args of [['check'], ['map'], ['metrics'], ['history', '--json']]) expect(loaded(args), args.join(' ')).not.toMatch(/node_modules\/(chalk|cli-table3)\//);
  });
});
