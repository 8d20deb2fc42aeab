import { describe, expect, it } from 'vitest';
import { cli, tempDb } from '../helpers.js';
import { createToken, serve } from './serve-helpers.js';

describe('serve under load', () => {
  it('a thousand concurrent pings are all answered OK and all counted in the database', async () => {
    const db = tempDb();
    const key = await createToken(db, 'agent', 'agent');
    const names = Array.from({ length: 10 }, (_, i) => `load-${i}`);
    for (const n of names) expect(cli(['register', n], { db }).code).toBe(0);
    const s = await serve(db);
    const answers = await Promise.all(
      Array.from({ length: 1000 }, async (_, i) => {
        const r = await fetch(`${s.base}/ping/${key}/${names[i % names.length]}${i % 3 === 0 ? '/start' : ''}`, { method: i % 2 ? 'POST' : 'GET', ...(i % 2 ? { body: `run ${i}` } : {}) });
        return `${r.status} ${await r.text()}`;
      }),
    );
    expect(answers.filter((a) => a !== '200 OK')).toEqual([]);
    const agents = JSON.parse(cli(['status', '--json'], { db }).stdout).agents;
    expect(agents.map((a: any) => a.heartbeatSeq)).toEqual(names.map(() => 100));
    expect(await s.stop()).toEqual({ code: 0, signal: null });
  });
});
