/** What the library logs through: any object with these methods (console, pino, winston all fit). Quiet by default. */
export interface Logger {
  debug?(message: string, data?: Record<string, unknown>): void;
  info?(message: string, data?: Record<string, unknown>): void;
  warn?(message: string, data?: Record<string, unknown>): void;
  error?(message: string, data?: Record<string, unknown>): void;
}

/** A logger that says nothing. */
export const SILENT: Logger = {};

/** The logger with every method present (missing ones do nothing), for code that logs without checking. */
export function fullLogger(l: Logger = SILENT): Required<Logger> {
  const noop = () => undefined;
  return {
    debug: l.debug?.bind(l) ?? noop,
    info: l.info?.bind(l) ?? noop,
    warn: l.warn?.bind(l) ?? noop,
    error: l.error?.bind(l) ?? noop,
  };
}
