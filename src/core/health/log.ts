import { closeSync, readdirSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { type LogLevel, logsAt } from '../../config.js';
import type { Logger as BaseLogger } from '../logger.js';
import { safeText } from '../text.js';
import { type PinnedDir, openAppend, pinDir } from '../../store/safe-files.js';

/** The logger the health loop writes to: the library's Logger with every method present. */
export type Logger = Required<BaseLogger>;

export interface DailyLogOptions {
  /** Directory of the daily files `health-YYYY-MM-DD.log` (UTC dates); created if missing. */
  dir: string;
  level?: LogLevel;
  /** Files older than this many days are removed when a new day's file starts (default 14). */
  keepDays?: number;
  /** The clock (default Date.now). */
  now?: () => number;
  /** Also hand each line (with its newline) to this sink: the CLI passes stderr. */
  echo?: (line: string) => void;
  /** Mode of new log files (default 0640; the directory gets the matching 0750): never group or other write. */
  mode?: number;
}

/**
 * A logger that appends each line to the day's file (seed 002's daily logs) and removes files past the retention.
 * A log file that cannot be written never stops the loop: the line still goes to `echo`. Each message goes through
 * safeText: the names, reasons and messages in it come from rows anyone could have written, and one line is one entry.
 * The directory and the file are opened the safe way (see safe-files): a symlink or another user's file planted
 * there is refused, not written.
 */
export function dailyFileLogger(opts: DailyLogOptions): Logger {
  const level = opts.level ?? 'info';
  const keepDays = opts.keepDays ?? 14;
  const now = opts.now ?? Date.now;
  let day = '';
  let broken = false;
  let dir: PinnedDir | null = null;
  const fileMode = (opts.mode ?? 0o640) & 0o755;
  const dirMode = fileMode | ((fileMode & 0o444) >> 2);
  const write = (lvl: LogLevel, message: string) => {
    if (!logsAt(lvl, level)) return;
    const t = now();
    const stamp = new Date(t).toISOString();
    const line = `${stamp} ${lvl.toUpperCase().padEnd(5)} ${safeText(message)}\n`;
    opts.echo?.(line);
    if (broken) return;
    try {
      if (stamp.slice(0, 10) !== day) {
        day = stamp.slice(0, 10);
        dir?.close();
        dir = null;
        dir = pinDir(opts.dir, dirMode);
        pruneLogs(dir.entry('.'), t, keepDays);
      }
      const name = `health-${day}.log`;
      const fd = openAppend(dir!.entry(name), fileMode, join(opts.dir, name));
      try {
        writeSync(fd, line);
      } finally {
        closeSync(fd);
      }
    } catch (err) {
      broken = true;
      opts.echo?.(`${stamp} WARN  cannot write the log file in ${safeText(opts.dir)}: ${safeText((err as Error).message)}; logging to stderr only\n`);
    }
  };
  return {
    debug: (m) => write('debug', m),
    info: (m) => write('info', m),
    warn: (m) => write('warn', m),
    error: (m) => write('error', m),
  };
}

/** Removes `health-YYYY-MM-DD.log` files whose day is more than `keepDays` before `now`. */
export function pruneLogs(dir: string, now: number, keepDays: number): void {
  const cutoff = new Date(now - keepDays * 86_400_000).toISOString().slice(0, 10);
  for (const f of readdirSync(dir)) {
    const m = /^health-(\d{4}-\d{2}-\d{2})\.log$/.exec(f);
    if (m && m[1]! < cutoff) rmSync(join(dir, f), { force: true });
  }
}
