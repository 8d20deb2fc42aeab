import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { parseDuration, formatDuration } from '../src/core/duration.js';
import { resolveConfig, defaultDbPath } from '../src/config.js';
import { UsageError, ValidationError } from '../src/errors.js';

describe('parseDuration', () => {
  it.each([
    ['250ms', 250],
    ['30s', 30_000],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['2d', 172_800_000],
    ['90', 90_000],
    ['1.5s', 1500],
    [' 10s ', 10_000],
  ])('%s → %d ms', (text, ms) => expect(parseDuration(text)).toBe(ms));

  it.each(['', 'abc', '5 m', '-1s', '1w', '1e3', '0', '0s', 's', '11000d'])('rejects %j', (text) => {
    expect(() => parseDuration(text, '--interval')).toThrow(UsageError);
  });

  it('names the flag in the message', () => {
    expect(() => parseDuration('soon', '--interval')).toThrow(/--interval 'soon'/);
  });

  it('accepts zero only when asked', () => expect(parseDuration('0s', 'x', { allowZero: true })).toBe(0));

  it.each([
    [850, '850ms'],
    [42_000, '42s'],
    [300_000, '5m'],
    [301_000, '5m 1s'],
    [3_900_000, '1h 5m'],
    [93_600_000, '1d 2h'],
  ])('formats %d as %s', (ms, text) => expect(formatDuration(ms)).toBe(text));
});

describe('resolveConfig', () => {
  const cwd = '/work/here';
  const home = '/home/u';

  it('uses the documented per-user default', () => {
    const c = resolveConfig({}, {}, cwd, home);
    expect(c.dbPath).toBe(join(home, '.local/state/agentctl/agentctl.db'));
    expect(c.dbPathSource).toBe('default');
    expect(c.busyTimeoutMs).toBe(5000);
    expect(c.lockStaleMs).toBe(30_000);
    expect(c.retryAttempts).toBe(3);
    expect(c.backoffFactor).toBe(1.5);
    expect(c.contract).toEqual({ intervalMs: 30_000, staleMultiplier: 3, offlineAfterMs: 300_000 });
    expect(c.logDir).toBe(join(home, '.local/state/agentctl/logs'));
    expect(c.allowSharedDb).toBe(false);
  });

  it('honours XDG_STATE_HOME', () => expect(defaultDbPath({ XDG_STATE_HOME: '/xdg' }, home)).toBe('/xdg/agentctl/agentctl.db'));

  it.each([
    [{ db: 'x.db' }, { AGENTCTL_DB: '/a.db', DATABASE_PATH: '/b.db' }, '/work/here/x.db', 'flag'],
    [{}, { AGENTCTL_DB: '/a.db', DATABASE_PATH: '/b.db' }, '/a.db', 'AGENTCTL_DB'],
    [{}, { DATABASE_PATH: 'shared_state.db' }, '/work/here/shared_state.db', 'DATABASE_PATH'],
    [{}, { AGENTCTL_DB: '  ' }, join(home, '.local/state/agentctl/agentctl.db'), 'default'],
  ])('db path: flags %j env %j → %s', (flags, env, path, source) => {
    const c = resolveConfig(flags, env, cwd, home);
    expect(c.dbPath).toBe(path);
    expect(c.dbPathSource).toBe(source);
  });

  it('takes AGENTCTL_* over the seed names, and the seed names as fallbacks', () => {
    const seed = resolveConfig({}, { LOCK_TIMEOUT: '10', RETRY_ATTEMPTS: '5', BACKOFF_FACTOR: '2', HEARTBEAT_INTERVAL: '10', LOG_LEVEL: 'DEBUG' }, cwd, home);
    expect(seed.busyTimeoutMs).toBe(10_000);
    expect(seed.retryAttempts).toBe(5);
    expect(seed.backoffFactor).toBe(2);
    expect(seed.contract.intervalMs).toBe(10_000);
    expect(seed.logLevel).toBe('debug');
    const ours = resolveConfig({}, { LOCK_TIMEOUT: '10', AGENTCTL_LOCK_TIMEOUT: '250ms', RETRY_ATTEMPTS: '5', AGENTCTL_RETRY_ATTEMPTS: '1' }, cwd, home);
    expect(ours.busyTimeoutMs).toBe(250);
    expect(ours.retryAttempts).toBe(1);
  });

  it('turns seed 002 STALE_THRESHOLD seconds into a multiplier of the interval', () => {
    expect(resolveConfig({}, { HEARTBEAT_INTERVAL: '30', STALE_THRESHOLD: '120' }, cwd, home).contract.staleMultiplier).toBe(4);
    expect(resolveConfig({}, { STALE_THRESHOLD: '120', AGENTCTL_STALE_MULTIPLIER: '2' }, cwd, home).contract.staleMultiplier).toBe(2);
  });

  it('reports every bad value at once', () => {
    let err: unknown;
    try {
      resolveConfig({}, { AGENTCTL_LOCK_TIMEOUT: 'soon', AGENTCTL_RETRY_ATTEMPTS: '0', BACKOFF_FACTOR: 'x', LOG_LEVEL: 'loud' }, cwd, home);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).problems).toHaveLength(4);
    expect((err as ValidationError).exitCode).toBe(2);
  });

  it('takes the lock stale period from AGENTCTL_LOCK_STALE, at least 2s', () => {
    expect(resolveConfig({}, { AGENTCTL_LOCK_STALE: '10s' }, cwd, home).lockStaleMs).toBe(10_000);
    expect(() => resolveConfig({}, { AGENTCTL_LOCK_STALE: '500ms' }, cwd, home)).toThrow(/at least 2s/);
  });

  it.each([
    [{}, {}, false],
    [{}, { AGENTCTL_ALLOW_SHARED_DB: '1' }, true],
    [{}, { AGENTCTL_ALLOW_SHARED_DB: 'yes' }, true],
    [{}, { AGENTCTL_ALLOW_SHARED_DB: '0' }, false],
    [{}, { AGENTCTL_ALLOW_SHARED_DB: ' ' }, false],
    [{ allowSharedDb: true }, { AGENTCTL_ALLOW_SHARED_DB: '0' }, true],
    [{ allowSharedDb: false }, {}, false],
  ])('strict mode override: flags %j env %j → allowSharedDb %s', (flags, env, allowed) => {
    expect(resolveConfig(flags, env, cwd, home).allowSharedDb).toBe(allowed);
  });

  it('refuses an AGENTCTL_ALLOW_SHARED_DB that is neither yes nor no', () => {
    expect(() => resolveConfig({}, { AGENTCTL_ALLOW_SHARED_DB: 'maybe' }, cwd, home)).toThrow(/invalid AGENTCTL_ALLOW_SHARED_DB 'maybe': use 1 or 0/);
  });

  it('puts logs beside the database unless told otherwise', () => {
    expect(resolveConfig({ db: '/d/x.db' }, {}, cwd, home).logDir).toBe('/d/logs');
    expect(resolveConfig({ db: '/d/x.db' }, { AGENTCTL_LOG_DIR: '/var/log/a' }, cwd, home).logDir).toBe('/var/log/a');
    expect(resolveConfig({ db: '/d/x.db', logDir: 'l' }, { AGENTCTL_LOG_DIR: '/var/log/a' }, cwd, home).logDir).toBe('/work/here/l');
  });
});
