import { safeText } from './text.js';

/** What the library logs through: any object with these methods (console, pino, winston all fit). Quiet by default. */
export interface Logger {
  debug?(message: string, data?: Record<string, unknown>): void;
  info?(message: string, data?: Record<string, unknown>): void;
  warn?(message: string, data?: Record<string, unknown>): void;
  error?(message: string, data?: Record<string, unknown>): void;
}

/** A logger that says nothing. */
export const SILENT: Logger = {};

/**
 * The logger with every method present (missing ones do nothing), for code that logs without checking. Messages
 * reach `l` through safeText: they quote agent names, reasons and errors from rows anyone could have written, and
 * whatever prints them (a terminal, a log file) must get one line with no escape sequences. `data` stays exact.
 */
export function fullLogger(l: Logger = SILENT): Required<Logger> {
  const noop = () => undefined;
  const safe = (f: ((m: string, d?: Record<string, unknown>) => void) | undefined) =>
    f ? (m: string, d?: Record<string, unknown>) => (d === undefined ? f.call(l, safeText(m)) : f.call(l, safeText(m), d)) : noop;
  return { debug: safe(l.debug), info: safe(l.info), warn: safe(l.warn), error: safe(l.error) };
}
