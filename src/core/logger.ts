/** What the library logs through: any object with these methods (console, pino, winston all fit). Quiet by default. */
export interface Logger {
  debug?(message: string, data?: Record<string, unknown>): void;
  info?(message: string, data?: Record<string, unknown>): void;
  warn?(message: string, data?: Record<string, unknown>): void;
  error?(message: string, data?: Record<string, unknown>): void;
}

/** A logger that says nothing. */
export const SILENT: Logger = {};
