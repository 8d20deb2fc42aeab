import { closeSync, fstatSync, mkdirSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { openAppend } from '../store/safe-files.js';

/** Default size at which a log file is rotated, and how many rotated files are kept (FILE.1 … FILE.3). */
export const LOG_MAX_BYTES = 10 * 1024 * 1024;
export const LOG_KEEP = 3;

/**
 * An append-only log file rotated by size: when it reaches `maxBytes`, FILE becomes FILE.1 (FILE.1
 * becomes FILE.2, …, the oldest is dropped) and a new FILE starts. Writes are synchronous, so nothing is lost
 * when the process exits right after. The file is never opened through a symlink (see safe-files' openAppend).
 */
export class RotatingLog {
  private fd: number;
  private size: number;

  constructor(readonly path: string, private readonly maxBytes = LOG_MAX_BYTES, private readonly keep = LOG_KEEP) {
    mkdirSync(dirname(path), { recursive: true });
    this.fd = openAppend(path, 0o640);
    this.size = fstatSync(this.fd).size;
    if (this.size >= this.maxBytes) this.rotate();
  }

  /** Appends `chunk`; a chunk that does not fit is split, so no file grows past `maxBytes`. */
  write(chunk: Buffer | string): void {
    let buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    while (buf.length) {
      if (this.size >= this.maxBytes) this.rotate();
      const n = Math.min(buf.length, this.maxBytes - this.size);
      writeSync(this.fd, buf, 0, n);
      this.size += n;
      buf = buf.subarray(n);
    }
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }

  private rotate(): void {
    closeSync(this.fd);
    for (let i = this.keep - 1; i >= 1; i--) {
      try {
        renameSync(`${this.path}.${i}`, `${this.path}.${i + 1}`);
      } catch {
        // that generation does not exist yet
      }
    }
    if (this.keep > 0) renameSync(this.path, `${this.path}.1`);
    if (this.keep <= 0) rmSync(this.path, { force: true });
    this.fd = openAppend(this.path, 0o640);
    this.size = 0;
  }
}
