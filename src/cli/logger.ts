import type { LogLevel } from '../config.js';
import type { Logger } from '../core/logger.js';

const ORDER: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** A logger that writes one line per message on stderr, from `level` up (AGENTCTL_LOG_LEVEL). */
export function stderrLogger(level: LogLevel): Logger {
  const line = (at: LogLevel) => (message: string) => {
    if (ORDER[at] >= ORDER[level]) process.stderr.write(`${message.startsWith('agentctl') ? '' : 'agentctl: '}${message}\n`);
  };
  return { debug: line('debug'), info: line('info'), warn: line('warn'), error: line('error') };
}
