/**
 * The SQL fragments in which SQLite and PostgreSQL differ, one small function per difference: the store modules are
 * written once and ask here for the engine's spelling. Arguments are SQL expressions (column names, placeholders).
 */
import type { Dialect } from './sql.js';
import { CLAIM_SQL, COMPLETE_SQL, EXPIRE_SQL, SEND_SQL, START_SQL } from './protocol.js';
import { PG_CLAIM_SQL, PG_COMPLETE_SQL, PG_EXPIRE_SQL, PG_SEND_SQL, PG_START_SQL } from './postgres/protocol.js';

/** Whether the text `needle` occurs in `haystack` (plain text, never a LIKE pattern). */
export function containsText(d: Dialect, haystack: string, needle: string): string {
  return d === 'postgres' ? `strpos(${haystack}, ${needle}) > 0` : `instr(${haystack}, ${needle}) > 0`;
}

/** The elements of a JSON array given as text (a bound parameter), as rows of one column `value`. */
export function jsonArrayValues(d: Dialect, json: string): string {
  return d === 'postgres' ? `SELECT value::bigint AS value FROM jsonb_array_elements_text(CAST(${json} AS jsonb))` : `SELECT value FROM json_each(${json})`;
}

/** The text of the top-level key `key` (an identifier) of the JSON object in the text column `column`. */
export function jsonField(d: Dialect, column: string, key: string): string {
  return d === 'postgres' ? `(CAST(${column} AS jsonb) ->> '${key}')` : `json_extract(${column}, '$.${key}')`;
}

/** `a` equals `b`, NULL equal to NULL. */
export function isSame(d: Dialect, a: string, b: string): string {
  return d === 'postgres' ? `${a} IS NOT DISTINCT FROM ${b}` : `${a} IS ${b}`;
}

/** The larger of two values (SQLite's two-argument max, PostgreSQL's GREATEST). */
export function greatest(d: Dialect, a: string, b: string): string {
  return d === 'postgres' ? `GREATEST(${a}, ${b})` : `MAX(${a}, ${b})`;
}

/** The protocol statements every writer runs (protocol.ts for SQLite, postgres/protocol.ts), in the engine's dialect. */
export function protocol(d: Dialect): { send: string; expire: string; claim: string; complete: string; start: string } {
  return d === 'postgres'
    ? { send: PG_SEND_SQL, expire: PG_EXPIRE_SQL, claim: PG_CLAIM_SQL, complete: PG_COMPLETE_SQL, start: PG_START_SQL }
    : { send: SEND_SQL, expire: EXPIRE_SQL, claim: CLAIM_SQL, complete: COMPLETE_SQL, start: START_SQL };
}

/** An integer column times a real one, truncated to an integer as SQLite's CAST truncates (PostgreSQL's rounds). */
export function truncInt(d: Dialect, expr: string): string {
  return d === 'postgres' ? `CAST(trunc(${expr}) AS BIGINT)` : `CAST(${expr} AS INTEGER)`;
}
