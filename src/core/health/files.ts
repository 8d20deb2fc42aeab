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
    throw new OperationError(`cannot write ${path}: ${(err as Error).message}`, { cause: err });
  }
}
