import type { Writable } from 'node:stream';
import { type Pieces, joinPieces } from '../core/json-text.js';

/**
 * Output written as it is produced, in chunks of about 64 KiB: a command that prints a large fleet holds one chunk,
 * not the whole document. `write` returns a promise only when the stream asks the writer to wait (backpressure:
 * a pipe whose reader is slower than us); await it before producing more.
 */
export class ChunkedWriter {
  private parts: string[] = [];
  private size = 0;

  constructor(
    private readonly stream: Writable = process.stdout,
    private readonly chunkChars = 1 << 16,
  ) {}

  write(text: string): Promise<void> | undefined {
    this.parts.push(text);
    this.size += text.length;
    return this.size >= this.chunkChars ? this.flush() : undefined;
  }

  /** Writes what is buffered; resolves when the stream can take more (at once unless it is full). */
  flush(): Promise<void> | undefined {
    if (!this.size) return undefined;
    const text = this.parts.join('');
    this.parts = [];
    this.size = 0;
    if (this.stream.write(text)) return undefined;
    return new Promise((resolve, reject) => {
      const done = (err?: Error) => {
        this.stream.off('drain', done);
        this.stream.off('close', done);
        this.stream.off('error', done);
        if (err) reject(err);
        else resolve();
      };
      this.stream.on('drain', done).on('close', done).on('error', done);
    });
  }
}

/**
 * Writes each piece of `pieces` through a ChunkedWriter to stdout, or, with `out`, hands the whole text to it
 * (a file written atomically needs all of it).
 */
export async function writePieces(pieces: Iterable<string> | Pieces, out?: (text: string) => void): Promise<void> {
  if (out) {
    out(await joinPieces(pieces));
    return;
  }
  const w = new ChunkedWriter();
  for await (const p of pieces) {
    if (typeof p === 'string') {
      const wait = w.write(p);
      if (wait) await wait;
    } else {
      for (const one of p) {
        const wait = w.write(one);
        if (wait) await wait;
      }
    }
  }
  await w.flush();
}
