import { closeSync, fstatSync, mkdirSync, openSync, renameSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

/** Default size at which a log file is rotated, and how many rotated files are kept (FILE.1 … FILE.3). */
export const LOG_MAX_BYTES = 10 * 1024 * 1024;
export const LOG_KEEP = 3;

/**
 * An append-only log file rotated by size: when a write would take it past `maxBytes`, FILE becomes FILE.1 (FILE.1
 * becomes FILE.2, …, the oldest is dropped) and a new FILE starts. Writes are synchronous, so nothing is lost
 * when the process exits right after.
 */
export class RotatingLog {
  private fd: number;
  private size: number;

  constructor(readonly path: string, private readonly maxBytes = LOG_MAX_BYTES, private readonly keep = LOG_KEEP) {
    mkdirSync(dirname(path), { recursive: true });
    this.fd = openSync(path, 'a');
    this.size = fstatSync(this.fd).size;
    if (this.size >= this.maxBytes) this.rotate();
  }

  write(chunk: Buffer | string): void {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    if (this.size > 0 && this.size + buf.length > this.maxBytes) this.rotate();
    writeSync(this.fd, buf);
    this.size += buf.length;
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
    this.fd = openSync(this.path, this.keep > 0 ? 'a' : 'w');
    this.size = 0;
  }
}
