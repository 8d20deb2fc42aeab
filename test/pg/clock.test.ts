// Time comes from the database: a writer whose clock is off changes nothing that is stored or judged; its own
// clock is kept beside the server's so that skewed hosts can be reported.
import { describe, expect, it } from 'vitest';
import { PG_CLOCK_SKEW_SQL } from '../../src/store/postgres/protocol.js';
import { postgresEngine } from './engines.js';

describe("the server's clock", () => {
  it("stamps heartbeats by the server's clock whatever the writer says, and keeps the writer's offset", async () => {
    const e = await postgresEngine();
    try {
      const identity = { pid: 77, pid_start_time: 1234, boot_id: 'b' };
      await e.step('register', { name: 'ahead', host: 'fast-host', interval_ms: 1000, ...identity });
      await e.step('register', { name: 'behind', host: 'slow-host', interval_ms: 1000, ...identity });
      await e.step('register', { name: 'honest', host: 'good-host', interval_ms: 1000, ...identity });
      const [{ now: before }] = (await e.all('SELECT agentctl_now_ms() AS now')) as [{ now: number }];
      // One writer an hour ahead, one a day behind (which would read as long offline), one right.
      await e.step('heartbeat', { name: 'ahead', status: 'ok', writer_clock: before + 3_600_000 });
      await e.step('heartbeat', { name: 'behind', status: 'ok', writer_clock: before - 86_400_000 });
      await e.step('heartbeat', { name: 'honest', status: 'ok', writer_clock: before });
      // A writer that sets last_heartbeat_at itself, from its own (wrong) clock, is stamped all the same.
      await e.all(`UPDATE agents SET heartbeat_seq = heartbeat_seq + 1, last_heartbeat_at = 32503679999999, updated_at = agentctl_now_ms() WHERE name = 'honest' RETURNING id`);
      const [{ now: after }] = (await e.all('SELECT agentctl_now_ms() AS now')) as [{ now: number }];
      const rows = (await e.all('SELECT name, state, last_heartbeat_at, clock_offset_ms FROM agents ORDER BY name')) as { name: string; state: string; last_heartbeat_at: number; clock_offset_ms: number | null }[];
      for (const r of rows) {
        expect({ name: r.name, state: r.state }).toEqual({ name: r.name, state: 'active' });
        expect(r.last_heartbeat_at).toBeGreaterThanOrEqual(before);
        expect(r.last_heartbeat_at).toBeLessThanOrEqual(after);
      }
      const offset = Object.fromEntries(rows.map((r) => [r.name, r.clock_offset_ms]));
      expect(offset.ahead).toBeGreaterThan(3_600_000 - (after - before) - 1);
      expect(offset.ahead).toBeLessThanOrEqual(3_600_000);
      expect(offset.behind).toBeLessThan(-86_400_000 + 1);
      // The last beat of 'honest' reported no clock of its own: no offset.
      expect(offset.honest).toBeNull();
      // Every event of the heartbeats is at the server's time too.
      const events = (await e.all(`SELECT agent_name, at FROM events WHERE to_state = 'active'`)) as { at: number }[];
      for (const ev of events) expect(ev.at).toBeGreaterThanOrEqual(before);
      expect(await e.all(PG_CLOCK_SKEW_SQL.replace(/CAST\(:max_offset_ms AS bigint\)/, '1000'))).toEqual([
        { host: 'fast-host', max_offset_ms: expect.any(Number), agents: 1 },
        { host: 'slow-host', max_offset_ms: expect.any(Number), agents: 1 },
      ]);
    } finally {
      await e.close();
    }
  });
});
