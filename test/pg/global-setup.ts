// Starts the run's PostgreSQL cluster once, before any test file, and hands its URL to every test worker in
// AGENTCTL_TEST_PG (AGENTCTL_TEST_PG_PASSWORD: the password of the role that must give one). A missing server
// fails the run here, with what to install: the PostgreSQL tests never skip. A server given in AGENTCTL_TEST_PG
// is used as it is (then it must have the roles of cluster.ts).
import { startCluster } from './cluster.js';

export async function setup(): Promise<(() => void) | undefined> {
  if (process.env.AGENTCTL_TEST_PG) return undefined;
  const cluster = await startCluster();
  process.env.AGENTCTL_TEST_PG = cluster.url;
  process.env.AGENTCTL_TEST_PG_PASSWORD = cluster.password;
  // Stopped and removed at the end whatever the tests did; also if the run itself is interrupted.
  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    cluster.stop();
  };
  process.once('exit', stop);
  return stop;
}
