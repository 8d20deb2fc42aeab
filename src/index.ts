/**
 * agentctl as a library: the shared state database and the calls the CLI itself uses.
 * `openStore` opens (creating and migrating) the database; the functions below read and write agents through it.
 */
export { Store } from './store/store.js';
export { openStore } from './store/open-store.js';
export type { Sql, SqlArgs, RunResult, Dialect } from './store/sql.js';
export type { StoreOptions, RegisterParams, HeartbeatParams, TransitionParams, EventQuery } from './store/store.js';
export type { AgentRecord, AgentState, EventRecord, Availability } from './store/rows.js';
export { AGENT_STATES } from './store/rows.js';
export {
  getRegisteredAgents,
  updateAgentState,
  updateHeartbeat,
  registerAgent,
  deregisterAgent,
  viewAgent,
  processIdentity,
} from './core/agents.js';
export type { AgentView, AgentQuery, RegisterInput, HeartbeatInput, StatusTarget, UpdateStateOptions } from './core/agents.js';
export { deriveState, isOverdue, staleAfterMs, heartbeatAgeMs, clockStart, hasBeatenSinceStart, seedStatus, stateSeverity } from './core/state.js';
export { parseDuration, formatDuration } from './core/duration.js';
export { resolveConfig, defaultDbPath, DEFAULTS } from './config.js';
export type { Config } from './config.js';
export { withExclusiveLock, inspectLock, lockPaths } from './store/sqlite/lock.js';
export type { LockOptions, LockHandle, LockOwner } from './store/sqlite/lock.js';
export { SCHEMA_VERSION, APPLICATION_ID } from './store/sqlite/migrations.js';
export { HeartbeatAgent } from './core/heartbeat-agent.js';
export type { ConnectionHealth } from './core/heartbeat-agent.js';
export type { HeartbeatAgentOptions } from './core/agent-options.js';
export { MIN_INTERVAL_MS } from './core/agent-options.js';
export type { AgentCommand, CommandHandler } from './core/command-runner.js';
export type { Logger } from './core/logger.js';
export { sendCommand, listCommands, cancelCommand, waitForCommand } from './core/commands.js';
export type { SendOptions } from './core/commands.js';
export type { CommandRecord, CommandState, RestartPolicy } from './store/rows.js';
export { restartAgent, restartAgents, NoLaunchCommandError, SignalRefusedError } from './core/restart.js';
export { databaseOwnership, assertMayAct, SharedDatabaseError } from './core/ownership.js';
export type { Ownership, RunAs } from './core/ownership.js';
export type { RestartOptions, RestartResult } from './core/restart.js';
export { supervise, CommandNotStartedError } from './core/supervisor.js';
export type { SuperviseOptions, SuperviseResult } from './core/supervisor.js';
export { RESTART_BACKOFF, restartDelay, nextRestart, policyRestarts } from './core/backoff.js';
export { REGISTER_SQL, HEARTBEAT_SQL, GOODBYE_SQL, START_SQL, SEND_SQL, EXPIRE_SQL, CLAIM_SQL, COMPLETE_SQL } from './store/protocol.js';
export * from './errors.js';
export { ExitCode, CheckCode } from './exit-codes.js';
// The health loop (seed 002's HeartbeatHealthAgent) and its parts.
export { HeartbeatHealthAgent, systemClock } from './core/health/agent.js';
export type { HealthAgentOptions, Clock, PassOutcome } from './core/health/agent.js';
export { checkHealth } from './core/health/pass.js';
export type { HealthPolicy, HealthReport } from './core/health/pass.js';
export { convict, findVerdicts, DEFAULT_HOLD } from './core/health/convict.js';
export type { ConvictOptions, ConvictResult, AppliedTransition, HeldGroup, HoldRule } from './core/health/convict.js';
export { judgeAgent, checkPid, thisHost } from './core/health/judge.js';
export type { LocalHost, Verdict, PidCheck } from './core/health/judge.js';
export { webhookTarget, execTarget, deliverAlerts, splitCommand } from './core/health/deliver.js';
export type { AlertTarget, DeliveryOptions, DeliveryResult } from './core/health/deliver.js';
export { buildHeartbeatMap } from './core/health/map.js';
export { renderMetrics } from './core/health/metrics.js';
export { healthLoopStatus } from './core/health/loop-status.js';
export type { HealthLoopStatus } from './core/health/loop-status.js';
export { dailyFileLogger } from './core/health/log.js';
export { recentAlerts } from './store/alerts.js';
export { readCounters, readMonitor } from './store/monitor.js';
