import { ExitCode } from './exit-codes.js';

/** Base of every error agentctl raises on purpose: a stable `code`, the process exit code, a message that says what to do next. */
export class AgentctlError extends Error {
  readonly code: string;
  readonly exitCode: number;
  constructor(code: string, exitCode: number, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.exitCode = exitCode;
  }
}

/** Bad input from the caller (flag, name, duration, JSON, status word). Raised before anything is written. */
export class UsageError extends AgentctlError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_USAGE', ExitCode.USAGE, message, options);
  }
}

/** Several problems found while validating one input, reported together. */
export class ValidationError extends UsageError {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(problems.length === 1 ? problems[0]! : `${problems.length} problems: ${problems.join('; ')}`);
    this.problems = problems;
  }
}

export class AgentNotFoundError extends AgentctlError {
  readonly agentName: string;
  constructor(name: string) {
    super('E_NOT_FOUND', ExitCode.NOT_FOUND, `no agent named '${name}' (see 'agentctl status' for the registered ones)`);
    this.agentName = name;
  }
}

/** The file is not usable as an agentctl database: not SQLite, corrupt, foreign, or too new. It is never written to. */
export class DatabaseUnusableError extends AgentctlError {
  readonly path: string;
  constructor(path: string, reason: string, options?: { cause?: unknown }) {
    super('E_DB_UNUSABLE', ExitCode.DB_UNUSABLE, `database ${path} is unusable: ${reason}`, options);
    this.path = path;
  }
}

/** The database file does not exist (for commands that only read). */
export class DatabaseMissingError extends AgentctlError {
  readonly path: string;
  constructor(path: string, opts: { empty?: boolean } = {}) {
    const what = opts.empty ? 'is empty: nothing has created its tables yet' : 'does not exist';
    super('E_DB_MISSING', ExitCode.FAILED, `database ${path} ${what} (create it with 'agentctl init --db ${path}'; the first 'agentctl register' or 'agentctl heartbeat' creates it too)`);
    this.path = path;
  }
}

/** An operation that could not be completed (I/O, permissions, disk full, busy past every retry). */
export class OperationError extends AgentctlError {
  constructor(message: string, options?: { cause?: unknown; code?: string }) {
    super(options?.code ?? 'E_FAILED', ExitCode.FAILED, message, options);
  }
}

/** A path beside the database (lock, owner file, log, backup, output) that agentctl refuses to use: a planted symlink, a file of another user. */
export class UnsafePathError extends OperationError {
  readonly path: string;
  constructor(path: string, why: string, options?: { cause?: unknown }) {
    super(`refusing to use ${path}: ${why}`, { ...options, code: 'E_UNSAFE_PATH' });
    this.path = path;
  }
}

/** The database stayed locked by other writers through every retry. */
export class DatabaseBusyError extends OperationError {
  constructor(path: string, attempts: number, options?: { cause?: unknown }) {
    super(`database ${path} stayed busy through ${attempts} attempt(s); another process holds a long write lock (raise AGENTCTL_LOCK_TIMEOUT or AGENTCTL_RETRY_ATTEMPTS)`, { ...options, code: 'E_BUSY' });
  }
}

/** An exclusive operation's lock is held by another live process. */
export class LockHeldError extends OperationError {
  constructor(what: string, lockPath: string, options?: { cause?: unknown }) {
    super(`another agentctl ${what} is running (lock ${lockPath})`, { ...options, code: 'E_LOCKED' });
  }
}

/** The exclusive lock was lost while the operation ran (its lock file was removed or taken over). */
export class LockCompromisedError extends OperationError {
  constructor(lockPath: string, options?: { cause?: unknown }) {
    super(`lost the exclusive lock ${lockPath} while working; the operation was stopped`, { ...options, code: 'E_LOCK_COMPROMISED' });
  }
}

/** The database needs creating or migrating and the caller asked not to (the heartbeat fast path hands over to the full CLI). */
export class MigrationNeededError extends AgentctlError {
  constructor(path: string, version: number) {
    super('E_MIGRATION_NEEDED', 1, `database ${path} is at schema version ${version} and needs migrating`);
  }
}

/** The database file was deleted or replaced by another file while this process had it open. Nothing was written. */
export class DatabaseReplacedError extends OperationError {
  readonly path: string;
  constructor(path: string, what: 'deleted' | 'replaced') {
    super(`database ${path} was ${what} while in use; nothing was written (open it again)`, { code: 'E_DB_REPLACED' });
    this.path = path;
  }
}

/** A command was refused because its agent is offline or failed (nobody would claim it); `--queue` sends it anyway. */
export class AgentUnavailableError extends AgentctlError {
  constructor(name: string, state: string) {
    super('E_AGENT_UNAVAILABLE', ExitCode.FAILED, `agent '${name}' is ${state}: nobody would run the command (send it with --queue to keep it for when the agent is back)`);
  }
}

export class CommandNotFoundError extends AgentctlError {
  constructor(id: number) {
    super('E_NOT_FOUND', ExitCode.NOT_FOUND, `no command with id ${id} (see 'agentctl commands')`);
  }
}
