import type { Command } from 'commander';
import { type Config, resolveConfig } from '../config.js';
import { type Store, openStore } from '../store/store.js';

/** Options every command accepts (defined on the program, usable before or after the command name). */
export interface GlobalOptions {
  db?: string;
  json?: boolean;
  color?: boolean;
  debug?: boolean;
}

export interface CliContext {
  config: Config;
  json: boolean;
  color: boolean;
  debug: boolean;
  /**
   * Opens the database: 'create' for commands that may make it, 'existing' for ones that write to an existing one,
   * 'read' for ones that only read (read-only, never created or migrated: a missing file is DatabaseMissingError).
   */
  open(mode?: 'create' | 'existing' | 'read', opts?: { migrate?: boolean }): Promise<Store>;
  now(): number;
  out(text: string): void;
  err(text: string): void;
}

/** Whether to colour stdout: never for non-TTYs, NO_COLOR, --no-color or --json. */
export function colorEnabled(g: GlobalOptions, env: NodeJS.ProcessEnv, isTTY: boolean): boolean {
  if (g.color === false || g.json) return false;
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '0') return true;
  return isTTY && env.TERM !== 'dumb';
}

/**
 * Whether the command line had a `--` (after which commander passes everything on as arguments). Read from the
 * arguments the program parsed, not process.argv, so that it holds for any caller of main().
 */
export function hadDoubleDash(cmd: Command): boolean {
  let root = cmd;
  while (root.parent) root = root.parent;
  // commander keeps the argv it parsed as rawArgs (public in its JavaScript, absent from its typings).
  return (root as Command & { rawArgs: string[] }).rawArgs.includes('--');
}

/** Builds the context of one CLI invocation from the command's options (with the program's). */
export function cliContext(cmd: Command, extra: { logDir?: string; allowSharedDb?: boolean } = {}): CliContext {
  return contextFrom(cmd.optsWithGlobals() as GlobalOptions, extra);
}

/** Builds the context from parsed global options (used directly by the heartbeat fast path). */
export function contextFrom(g: GlobalOptions, extra: { logDir?: string; allowSharedDb?: boolean } = {}): CliContext {
  const config = resolveConfig({ db: g.db, logDir: extra.logDir, allowSharedDb: extra.allowSharedDb }, process.env);
  const ctx: CliContext = {
    config,
    json: Boolean(g.json),
    color: colorEnabled(g, process.env, Boolean(process.stdout.isTTY)),
    debug: Boolean(g.debug),
    async open(mode = 'create', opts = {}) {
      const store = await openStore({
        migrate: opts.migrate ?? true,
        path: config.dbPath,
        busyTimeoutMs: config.busyTimeoutMs,
        retryAttempts: config.retryAttempts,
        backoffFactor: config.backoffFactor,
        contract: config.contract,
        mode,
        // The per-user default location is ours to create; a path the user chose must already have its directory.
        createDir: config.dbPathSource === 'default' && !config.dbIsUrl,
      });
      // On a database server its clock judges: this command's "now" follows it (one query), so a host whose clock
      // is off shows the same states as every other host.
      if (!store.isSqlite) {
        const offset = (await store.now()) - Date.now();
        ctx.now = () => Date.now() + offset;
      }
      return store;
    },
    now: () => Date.now(),
    out: (text) => void process.stdout.write(text.endsWith('\n') ? text : `${text}\n`),
    err: (text) => void process.stderr.write(text.endsWith('\n') ? text : `${text}\n`),
  };
  return ctx;
}

/** Collects the values of a repeatable flag (commander's argParser for --alert-webhook, --alert-exec). */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
