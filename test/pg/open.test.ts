import { describe, expect, it } from 'vitest';
import { isPostgresUrl, openPostgres } from '../../src/store/postgres/open.js';
import { freshDatabase, query } from './pg-helpers.js';

describe('openPostgres', () => {
  it('tells a PostgreSQL URL from an SQLite path', () => {
    for (const s of ['postgres://u@h/db', 'postgresql://h:5432/db?sslmode=verify-full', 'POSTGRES://h/db']) expect({ s, pg: isPostgresUrl(s) }).toEqual({ s, pg: true });
    for (const s of ['agents.db', '/var/lib/agentctl/agents.db', './postgres://x', 'file:agents.db']) expect({ s, pg: isPostgresUrl(s) }).toEqual({ s, pg: false });
  });

  it('a writer migrates a new database once; a reader of an empty one says what to do in one line and creates nothing', async () => {
    const url = await freshDatabase();
    const err = await openPostgres(url, { mode: 'read' }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'E_DB_MISSING', exitCode: 1 });
    expect((err as Error).message).toMatch(/has no agentctl tables yet \(create them with 'agentctl init --db URL'/);
    expect(await query(url, `SELECT to_regclass('agents') IS NULL AS none`)).toEqual([{ none: true }]);

    const w = await openPostgres(url, { mode: 'create' });
    expect(w.migrated?.applied).toEqual(['0006_postgres', '0007_hosts']);
    await w.close();
    const again = await openPostgres(url, { mode: 'existing' });
    expect(again.migrated?.applied).toEqual([]);
    await again.close();
    const r = await openPostgres(url, { mode: 'read' });
    expect(r.migrated).toBeNull();
    expect(await r.get('SELECT count(*) AS n FROM agents')).toEqual({ n: 0 });
    await r.close();
  });
});
