/**
 * Pieces of JSON text for documents written one row at a time (status --json, the heartbeat map): each value as
 * JSON.stringify would write it, so a document built from them is the one JSON.stringify(…, null, 2) gives.
 */

/** A number column (Number() of what is stored); a value that is not a finite number is null, as in JSON. */
export const jsonNumber = (v: unknown): string => {
  const n = Number(v);
  return Number.isFinite(n) ? String(n) : 'null';
};

/** A nullable number column. */
export const jsonNumberOrNull = (v: unknown): string => (v === null || v === undefined ? 'null' : jsonNumber(v));

// Printable ASCII without a quote or a backslash: written as it is, the same text JSON.stringify gives.
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

/** A string as JSON text. */
export const jsonString = (s: string): string => (PLAIN.test(s) ? `"${s}"` : JSON.stringify(s));

/** A nullable text column. */
export const jsonStringOrNull = (v: unknown): string => (v === null || v === undefined ? 'null' : jsonString(String(v)));

/** A time in ms as an ISO string, or null. */
export const jsonIso = (ms: number | null): string => (ms === null ? 'null' : `"${new Date(ms).toISOString()}"`);

/** `value` as JSON.stringify(value, null, 2) writes it nested at `pad` (the indent of the line it starts on). */
export const nestedJson = (value: unknown, pad: string): string => JSON.stringify(value, null, 2).replace(/\n/g, `\n${pad}`);

/**
 * A document written as it is read: text pieces, or batches of them (one per row of a batch read from the
 * database), so that producing a piece costs no await per row and writing it no large joined string.
 */
export type Pieces = AsyncIterable<string | readonly string[]>;

/** The whole text of `pieces`. */
export async function joinPieces(pieces: Pieces | Iterable<string>): Promise<string> {
  const all: string[] = [];
  for await (const p of pieces) {
    if (typeof p === 'string') all.push(p);
    else all.push(...p);
  }
  return all.join('');
}
