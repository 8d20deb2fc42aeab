import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { cli, cliJson, fileHash, tempDb, tempDir } from '../helpers.js';
import { openStore } from '../../src/store/store.js';
import { createToken, findToken, revokeToken } from '../../src/core/tokens.js';
import { insertToken } from '../../src/store/tokens.js';

describe('agentctl token', () => {
  it('create prints the token once and stores only its SHA-256; list never shows it; revoke ends it', () => {
    const db = tempDb();
    const r = cli(['token', 'create', 'ops', '--role', 'operator'], { db });
    expect(r.code).toBe(0);
    const token = r.stdout.trim();
    expect(token).toMatch(/^agentctl_[A-Za-z0-9_-]{43}$/);
    expect(r.stderr).toBe('agentctl: created operator token ops; it is shown only this once, store it now\n');
    const created = cliJson(['token', 'create', 'cron', '--role', 'agent', '--agents', 'backup-*'], { db });
    expect(created).toMatchObject({ name: 'cron', role: 'agent', agents: 'backup-*', live: true, token: expect.stringMatching(/^agentctl_/) });
    const rows = new Database(db, { readonly: true }).prepare('SELECT name, hash FROM tokens ORDER BY id').all() as { name: string; hash: string }[];
    expect(rows).toEqual([
      { name: 'ops', hash: createHash('sha256').update(token).digest('hex') },
      { name: 'cron', hash: createHash('sha256').update(created.token).digest('hex') },
    ]);
    const listed = cliJson(['token', 'list'], { db });
    expect(listed.tokens.map((t: any) => [t.name, t.role, t.agents, t.live])).toEqual([['ops', 'operator', null, true], ['cron', 'agent', 'backup-*', true]]);
    expect(JSON.stringify(listed)).not.toContain(token);
    expect(JSON.stringify(listed)).not.toContain(rows[0]!.hash);
    expect(cli(['token', 'list'], { db }).stdout).not.toContain(token);
    expect(cli(['token', 'revoke', 'cron'], { db }).stdout).toBe('revoked token cron\n');
    expect(cliJson(['token', 'list'], { db }).tokens.map((t: any) => t.name)).toEqual(['ops']);
    expect(cliJson(['token', 'list', '--all'], { db }).tokens.map((t: any) => [t.name, t.live])).toEqual([['ops', true], ['cron', false]]);
  });

  it('bad input: one line, exit 2 (3 for an unknown token), the database untouched', () => {
    const db = tempDb();
    expect(cli(['token', 'create', 'ops', '--role', 'operator'], { db }).code).toBe(0);
    const before = fileHash(db);
    const cases: [string[], number, RegExp][] = [
      [['token', 'create', 'x', '--role', 'admin'], 2, /^agentctl: invalid role 'admin': use one of viewer, operator, agent\n$/],
      [['token', 'create', 'x'], 2, /required option '--role <role>'/],
      [['token', 'create', 'bad name', '--role', 'viewer'], 2, /^agentctl: invalid token name "bad name"/],
      [['token', 'create', 'x', '--role', 'viewer', '--agents', 'a*'], 2, /^agentctl: --agents applies only to tokens of the agent role\n$/],
      [['token', 'create', 'x', '--role', 'agent', '--agents', 'a b'], 2, /^agentctl: invalid --agents pattern "a b"/],
      [['token', 'create', 'ops', '--role', 'viewer'], 2, /^agentctl: a token named 'ops' exists already/],
      [['token', 'revoke', 'nobody'], 3, /^agentctl: no live token named 'nobody'/],
    ];
    for (const [args, code, stderr] of cases) {
      const r = cli(args, { db });
      expect({ args, code: r.code }).toEqual({ args, code });
      expect(r.stderr).toMatch(stderr);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    }
    expect(fileHash(db)).toBe(before);
  });

  it('serve refuses a file that is not an agentctl database (exit 4) and leaves it as it was', () => {
    const file = join(tempDir(), 'notes.db');
    writeFileSync(file, 'not a database at all, just text\n'.repeat(100));
    const before = fileHash(file);
    const r = cli(['serve', '--listen', '127.0.0.1:0'], { db: file });
    expect(r.code).toBe(4);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(fileHash(file)).toBe(before);
  });

  it('the server keeps live tokens in memory, yet sees every change to them at once: its own, another connection\'s, another process\'s', async () => {
    const db = tempDb();
    const server = await openStore({ path: db });
    const other = await openStore({ path: db, mode: 'existing' });
    try {
      const a = await createToken(server, { name: 'a', role: 'agent' }, 1);
      const b = await createToken(server, { name: 'b', role: 'agent' }, 1);
      expect((await findToken(server, a.token))?.name).toBe('a');
      expect(await findToken(server, 'agentctl_wrong')).toBeUndefined();
      // Revoked through another connection (a commit this connection did not make): refused on the next lookup.
      await revokeToken(other, 'a', 2);
      expect(await findToken(server, a.token)).toBeUndefined();
      expect((await findToken(server, b.token))?.name).toBe('b');
      // Revoked by another process.
      expect(cli(['token', 'revoke', 'b'], { db }).code).toBe(0);
      expect(await findToken(server, b.token)).toBeUndefined();
      // Created elsewhere: found at once.
      const c = cliJson(['token', 'create', 'c', '--role', 'viewer'], { db }).token as string;
      expect((await findToken(server, c))?.role).toBe('viewer');
      // Written by this very connection, whose own commits leave its data_version alone.
      const d = await createToken(server, { name: 'd', role: 'agent' }, 3);
      expect((await findToken(server, d.token))?.name).toBe('d');
      await revokeToken(server, 'd', 4);
      expect(await findToken(server, d.token)).toBeUndefined();
      // Inside this connection's transaction, a lookup waits for it: it never answers from the transaction's snapshot.
      const e = await createToken(server, { name: 'e', role: 'agent' }, 5);
      expect((await findToken(server, e.token))?.name).toBe('e');
      let lookup: Promise<unknown> | undefined;
      await server.tx(async (s) => {
        await insertToken(s, { name: 'f', role: 'agent', agents: null, hash: 'f'.repeat(64) }, 6);
        lookup = findToken(server, e.token);
        await revokeToken(s, 'e', 6);
      });
      expect(await lookup).toBeUndefined();
    } finally {
      await other.close();
      await server.close();
    }
  });
});
