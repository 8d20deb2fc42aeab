// The throwaway PostgreSQL cluster of the test run: its logic lives in scripts/pg-cluster.mjs, which the bench
// (scripts/bench-pg.mjs) starts too.
export { PASSWORD_ROLE, TEST_SUPERUSER, findBindir, startCluster, type Cluster } from '../../scripts/pg-cluster.mjs';
