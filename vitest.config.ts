import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
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
  },
});
