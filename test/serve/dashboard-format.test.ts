import { describe, expect, it } from 'vitest';
import { formatDuration as cliDuration } from '../../src/core/duration.js';
import { lastSeen as cliLastSeen } from '../../src/cli/format.js';
import { formatDuration, lastSeen } from '../../src/web/format.js';

describe("the dashboard's words for time", () => {
  it('say what agentctl status says: "Online now", "42s ago", "never", and the same durations', () => {
    const now = 1_800_000_000_000;
    const cases: [number | null, string, number][] = [
      [null, 'active', 30_000],
      [now - 500, 'active', 30_000],
      [now - 500, 'error', 30_000],
      [now - 500, 'stale', 30_000],
      [now - 42_000, 'active', 30_000],
      [now - 3_725_000, 'offline', 30_000],
      [now - 90_061_000, 'offline', 30_000],
      [now + 2_000, 'active', 1_000], // a beat stamped by a clock slightly ahead
    ];
    for (const [at, state, intervalMs] of cases) {
      const cli = cliLastSeen({ lastHeartbeatAt: at, heartbeatAgeMs: at === null ? null : now - at, state: state as any, intervalMs });
      expect(lastSeen({ lastHeartbeatAt: at, state, intervalMs }, now), `${at} ${state}`).toBe(cli);
    }
    for (const ms of [0, 250, 999, 1000, 42_000, 60_000, 61_000, 3_600_000, 3_660_000, 86_400_000, 90_000_000]) expect(formatDuration(ms), String(ms)).toBe(cliDuration(ms));
  });
});
