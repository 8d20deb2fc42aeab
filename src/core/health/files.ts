import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { OperationError } from '../../errors.js';

/**
 * Replaces `path` with `text` atomically: written to a temporary file in the same directory, then renamed over it,
 * so a reader (node_exporter's textfile collector, a dashboard) never sees half a file.
 */
export function writeFileAtomic(path: string, text: string): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`);
  try {
    writeFileSync(tmp, text);
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    // Name the file asked for, not the temporary one beside it that the system call saw.
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT' ? `its directory ${dirname(path)} does not exist`
      : code === 'EACCES' || code === 'EPERM' ? `no permission to write in ${dirname(path)}`
      : code === 'EISDIR' ? 'it is a directory'
      : code === 'ENOSPC' ? 'the disk is full'
      : (err as Error).message;
    throw new OperationError(`cannot write ${path}: ${why}`, { cause: err });
  }
}
