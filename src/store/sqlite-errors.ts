import { AgentctlError, DatabaseBusyError, DatabaseUnusableError, OperationError } from '../errors.js';
import { isBusyError } from './retry.js';

/** Turns an SQLite error into the agentctl error a user can act on; AgentctlErrors pass through unchanged. */
export function describeSqliteError(err: unknown, path: string, attempts: number): Error {
  if (err instanceof AgentctlError) return err;
  const code = String((err as { code?: unknown } | null)?.code ?? '');
  const msg = (err as Error)?.message ?? String(err);
  if (isBusyError(err)) return new DatabaseBusyError(path, attempts, { cause: err });
  if (code === 'SQLITE_NOTADB') return new DatabaseUnusableError(path, 'it is not an SQLite database; it was left untouched', { cause: err });
  if (code.startsWith('SQLITE_CORRUPT')) return new DatabaseUnusableError(path, `it is corrupt (${msg}); run 'agentctl db-check' and restore from a backup`, { cause: err });
  if (code.startsWith('SQLITE_READONLY')) return new OperationError(`database ${path} is read-only (${msg}); check the permissions of the file and its directory`, { cause: err, code: 'E_READONLY' });
  if (code.startsWith('SQLITE_CANTOPEN')) return new OperationError(`cannot open database ${path} (${msg}); check that its directory exists and is writable`, { cause: err, code: 'E_CANTOPEN' });
  if (code === 'SQLITE_FULL') return new OperationError(`database ${path}: the disk is full; nothing was written`, { cause: err, code: 'E_FULL' });
  if (code.startsWith('SQLITE_IOERR')) return new OperationError(`database ${path}: I/O error (${msg})`, { cause: err, code: 'E_IO' });
  if (code.startsWith('SQLITE_CONSTRAINT')) return new OperationError(`database ${path} refused the write: ${msg}`, { cause: err, code: 'E_CONSTRAINT' });
  if (err instanceof Error) return err;
  return new OperationError(msg);
}
