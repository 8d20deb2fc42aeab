/** A running throwaway cluster (see pg-cluster.mjs). */
export interface Cluster {
  /** postgres://agentctl_test@127.0.0.1:PORT/postgres */
  url: string;
  port: number;
  /** The password of PASSWORD_ROLE. */
  password: string;
  dir: string;
  /** Stops the server and removes its directory. */
  stop(): void;
  /** Stops the server as a crash or power cut would (immediate), keeping its data. */
  halt(): void;
  /** Starts a halted server again on the same port and data; resolves once it accepts connections. */
  resume(): Promise<void>;
}
/** The superuser the tests connect as (trust on loopback). */
export const TEST_SUPERUSER: string;
/** A role that must give a password (scram-sha-256), to test refused credentials. */
export const PASSWORD_ROLE: string;
/** The directory with initdb, pg_ctl and pg_isready: AGENTCTL_PG_BINDIR, `pg_config --bindir`, or the newest /usr/lib/postgresql/N/bin. */
export function findBindir(): string | undefined;
/** Starts a cluster; throws with a clear message (and the server's log) when it cannot. */
export function startCluster(): Promise<Cluster>;
