import { type LogLevel, logsAt } from '../config.js';
import type { Logger } from '../core/logger.js';
import { safeText } from '../core/text.js';

/** A logger that writes one line per message on stderr, from `level` up (AGENTCTL_LOG_LEVEL); agent text in it escaped by safeText. */
export function stderrLogger(level: LogLevel): Logger {
  const line = (at: LogLevel) => (message: string) => {
    if (logsAt(at, level)) process.stderr.write(`${message.startsWith('agentctl') ? '' : 'agentctl: '}${safeText(message)}\n`);
  };
  return { debug: line('debug'), info: line('info'), warn: line('warn'), error: line('error') };
}
