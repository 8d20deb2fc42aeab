/**
 * What the PostgreSQL project (vitest.config.ts) does not run, and why: nothing is skipped silently. A whole file
 * here is not in that project at all; a test here is deselected by name in it (and counted as skipped).
 */

/** The test files that run on both engines (everything else in test/ is SQLite-only or engine-specific). */
export const BOTH_ENGINES = [
  'test/state.test.ts',
  'test/input.test.ts',
  'test/cli.test.ts',
  'test/commands.test.ts',
  'test/alerts.test.ts',
  'test/alert-delivery.test.ts',
  'test/cleanup.test.ts',
  'test/agent-lifecycle.test.ts',
  'test/agent.test.ts',
  'test/run.test.ts',
  'test/monitor.test.ts',
  'test/health.test.ts',
  'test/heartbeats.test.ts',
  'test/reads.test.ts',
  'test/status-output.test.ts',
  'test/map-metrics.test.ts',
  'test/options.test.ts',
  'test/live.test.ts',
  'test/supervision.test.ts',
  'test/monitor-restart.test.ts',
  'test/restart.test.ts',
  'test/outages.test.ts',
];

/** Engine-independent files that still run on SQLite only, with the reason. */
export const SQLITE_ONLY_FILES: Record<string, string> = {
  'test/store.test.ts': 'opens, replaces and locks the SQLite file itself (WAL, application id, the file deleted or replaced, busy handling); PostgreSQL\'s opening is tested in test/pg/open.test.ts and migrations.test.ts',
};

/** Single tests (file and full name: describe blocks and test, joined by a space) that run on SQLite only. */
export const SQLITE_ONLY_TESTS: { file: string; name: string; why: string }[] = [
  { file: 'test/commands.test.ts', name: 'the command protocol a poll with nothing to do takes no write lock, so it never waits behind a writer', why: 'holds SQLite\'s write lock from a second connection' },
  { file: 'test/live.test.ts', name: 'live views status --watch waits for a database that does not exist yet', why: 'a missing SQLite file; on PostgreSQL a missing database is an error at once (test/pg/cli-postgres.test.ts)' },
  { file: 'test/outages.test.ts', name: 'a host silent as a whole several monitors (real processes) passing at once over one database make each transition, outage and alert once', why: 'reads the SQLite file directly; three monitor processes on PostgreSQL are tested in test/pg/monitors.test.ts and multihost.test.ts' },
  { file: 'test/cli.test.ts', name: 'register, heartbeat, status status of an unknown agent exits 3; of a missing database says how to start', why: 'a missing SQLite file; a missing PostgreSQL database is tested in test/pg/cli-postgres.test.ts' },
  { file: 'test/agent.test.ts', name: 'HeartbeatAgent as a process keeps its host process alive while another process holds the database locked, and recovers', why: 'holds SQLite\'s write lock' },
  { file: 'test/agent.test.ts', name: 'HeartbeatAgent as a process keeps its host process alive when the database is deleted, and recovers when it is recreated', why: 'deletes the SQLite file' },
  { file: 'test/monitor.test.ts', name: 'agentctl monitor only one health loop at a time: a second prints one line and exits 0; a SIGKILLed monitor’s lock is taken over once stale', why: 'the SQLite lock file and its owner file; the PostgreSQL lease is tested in test/pg/cli-postgres.test.ts' },
];
