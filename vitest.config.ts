import { defineConfig } from 'vitest/config';
import { BOTH_ENGINES, SQLITE_ONLY_FILES, SQLITE_ONLY_TESTS } from './test/sqlite-only.js';

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/** Every test name except the SQLite-only ones of test/sqlite-only.ts. */
const notSqliteOnly = new RegExp(`^(?!(?:${SQLITE_ONLY_TESTS.map((t) => escape(t.name)).join('|')})$)`);

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
    // Every test runs on SQLite; the engine-independent ones run a second time on PostgreSQL (AGENTCTL_TEST_ENGINE:
    // test/helpers.ts's tempDb() then makes a fresh database of the run's cluster and cli() passes its URL as --db).
    // What does not run there, and why: test/sqlite-only.ts.
    projects: [
      { extends: true, test: { name: 'sqlite', include: ['test/**/*.test.ts'] } },
      {
        extends: true,
        test: {
          name: 'postgres',
          include: BOTH_ENGINES.filter((f) => !(f in SQLITE_ONLY_FILES)),
          env: { AGENTCTL_TEST_ENGINE: 'postgres' },
          testNamePattern: notSqliteOnly,
        },
      },
    ],
  },
});
