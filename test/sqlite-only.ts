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
];

/** Engine-independent files that still run on SQLite only, with the reason. */
export const SQLITE_ONLY_FILES: Record<string, string> = {
  'test/health.test.ts': 'drives the health pass with an injected clock (judgeTime/writeTime); on PostgreSQL the server stamps every write with its own clock, so the scenarios\' times cannot be set',
  'test/store.test.ts': 'opens, replaces and locks the SQLite file itself (WAL, application id, busy handling) and writes with an injected clock',
};

/** Single tests (file and full name: describe blocks and test, joined by a space) that run on SQLite only. */
export const SQLITE_ONLY_TESTS: { file: string; name: string; why: string }[] = [
  ...[
    'the command protocol claims with a fencing token and accepts only the completion that carries it',
    'the command protocol cancels executing commands when the agent goes offline, and rejects the presumed-dead process\'s completion',
    'the command protocol a new incarnation cancels what an earlier one was executing; the old token is refused',
    'the command protocol settles commands past their deadline: queued ones cancelled, executing ones failed',
  ].map((name) => ({ file: 'test/commands.test.ts', name, why: 'writes with an injected clock (T0); the server\'s clock stamps the writes on PostgreSQL' })),
  { file: 'test/commands.test.ts', name: 'the command protocol a poll with nothing to do takes no write lock, so it never waits behind a writer', why: 'holds SQLite\'s write lock from a second connection' },
  { file: 'test/cli.test.ts', name: 'register, heartbeat, status status of an unknown agent exits 3; of a missing database says how to start', why: 'a missing SQLite file; a missing PostgreSQL database is tested in test/pg/cli-postgres.test.ts' },
  { file: 'test/alert-delivery.test.ts', name: 'alert delivery deregistering an agent that is down ends its down spell: no recovery notice when the name comes back', why: 'writes with an injected clock (T0)' },
  { file: 'test/agent.test.ts', name: 'HeartbeatAgent as a process keeps its host process alive while another process holds the database locked, and recovers', why: 'holds SQLite\'s write lock' },
  { file: 'test/agent.test.ts', name: 'HeartbeatAgent as a process keeps its host process alive when the database is deleted, and recovers when it is recreated', why: 'deletes the SQLite file' },
  { file: 'test/monitor.test.ts', name: 'agentctl monitor only one health loop at a time: a second prints one line and exits 0; a SIGKILLed monitor’s lock is taken over once stale', why: 'the SQLite lock file and its owner file; the PostgreSQL lease is tested in test/pg/cli-postgres.test.ts' },
];
