import { defineConfig } from 'vitest/config';

/**
 * The tests that do not depend on the engine run a second time against PostgreSQL (the project 'postgres', with
 * AGENTCTL_TEST_ENGINE=postgres: test/helpers.ts's tempDb() then gives a fresh database of the run's cluster and
 * cli() passes its URL as --db). Every other test file is SQLite-only, for the reason given in SQLITE_ONLY: a file
 * is in the PostgreSQL project or it is not, nothing in it is skipped.
 */
export const BOTH_ENGINES = [
  'test/state.test.ts',
  'test/health.test.ts',
  'test/alerts.test.ts',
  'test/alert-delivery.test.ts',
  'test/commands.test.ts',
  'test/cleanup.test.ts',
  'test/input.test.ts',
  'test/cli.test.ts',
  'test/agent-lifecycle.test.ts',
  'test/store.test.ts',
  'test/agent.test.ts',
  'test/run.test.ts',
  'test/monitor.test.ts',
];

export default defineConfig({
  test: {
    // The run's PostgreSQL cluster, started once (test/pg/global-setup.ts: a missing server fails the run), then the
    // leak check: it marks every process the tests start and fails the run if one is left behind (see
    // test/processes.ts). Teardowns run in reverse: the leak check first, then the cluster stops.
    globalSetup: ['test/pg/global-setup.ts', 'test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 30_000,
    pool: 'forks',
    // Two cores: more parallel files only add noise to the multi-process tests.
    maxWorkers: 2,
    // CI reads the counts from the JSON report (.ci/run prints "N passed, N failed").
    reporters: process.env.CI ? ['default', 'json'] : ['default'],
    outputFile: { json: '.ci/test-results.json' },
    projects: [
      { extends: true, test: { name: 'sqlite', include: ['test/**/*.test.ts'] } },
      { extends: true, test: { name: 'postgres', include: BOTH_ENGINES, env: { AGENTCTL_TEST_ENGINE: 'postgres' } } },
    ],
  },
});
