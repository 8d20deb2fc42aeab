import { AgentctlError, DatabaseBusyError, DatabaseUnusableError, OperationError } from '../../errors.js';
import { statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import { isBusyError } from '../retry.js';

/**
 * True when the filesystem holding `path` has (next to) no room left. SQLite reports some writes that failed with
 * ENOSPC as I/O errors (growing the -shm file, for one) and does not say which errno it saw; an I/O error on a
 * filesystem with less than a page or two free is taken for the full disk it almost surely is.
 */
export function filesystemIsFull(path: string): boolean {
  try {
    const fs = statfsSync(dirname(path));
    return fs.bavail * fs.bsize < 64 * 1024;
  } catch {
    return false;
  }
}

/**
 * The full disk, said as such with what to do. A delete needs room too: SQLite writes the change to its WAL (or
 * journal) before any page is freed, so rows cannot be deleted to make room on a disk that is already full.
 */
export function diskFullError(path: string, err?: unknown): OperationError {
  return new OperationError(
    `database ${path}: the disk is full; nothing was written. Free space on the filesystem of ${dirname(path)} and try again (deleting rows needs free space too: SQLite writes every change, deletes included, to its WAL first)`,
    { cause: err, code: 'E_FULL' },
  );
}

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
  if (code === 'SQLITE_FULL' || (code.startsWith('SQLITE_IOERR') && filesystemIsFull(path))) return diskFullError(path, err);
  if (code.startsWith('SQLITE_IOERR')) return new OperationError(`database ${path}: I/O error (${msg})`, { cause: err, code: 'E_IO' });
  if (code.startsWith('SQLITE_CONSTRAINT')) return new OperationError(`database ${path} refused the write: ${msg}`, { cause: err, code: 'E_CONSTRAINT' });
  if (err instanceof Error) return err;
  return new OperationError(msg);
}
