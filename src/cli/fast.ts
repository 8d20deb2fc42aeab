import { type HeartbeatFlags, prepareCliHeartbeat, writeCliHeartbeat } from './commands/heartbeat.js';
import { type CliContext, contextFrom, type GlobalOptions } from './context.js';
import type { PreparedHeartbeat } from '../core/agents.js';
import { reportError } from './report.js';
import { AgentctlError, MigrationNeededError } from '../errors.js';

/**
 * The fast path for `agentctl heartbeat`, the command agents run every few seconds from shell loops. bin/agentctl
 * loads this as one CommonJS bundle, without commander or the ES module loader, so a heartbeat costs little more
 * than starting node. It handles only the plain form: anything else (help, an unknown or malformed flag, a database
 * to create or migrate, invalid input) returns null before any write, and the full CLI takes over and reports it.
 *
 * A PostgreSQL URL: this bundle carries only the SQLite engine, so it answers 'postgres', and bin/agentctl runs
 * the same function from a second bundle with the PostgreSQL engine (src/cli/fast-pg.ts), with `postgres: true`.
 */
export async function fastHeartbeat(args: string[], opts: { postgres?: boolean } = {}): Promise<number | null | 'postgres'> {
  const VALUE_FLAGS: Record<string, keyof HeartbeatFlags | 'db'> = {
    '--status': 'status', '--message': 'message', '--meta': 'meta', '--progress': 'progress',
    '--interval': 'interval', '--pid': 'pid', '--db': 'db',
  };
  const flags: HeartbeatFlags = {};
  const globals: GlobalOptions = {};
  const positional: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--json') globals.json = true;
    else if (arg === '--no-color') globals.color = false;
    else if (arg === '--debug') globals.debug = true;
    else if (arg.startsWith('-')) {
      const eq = arg.indexOf('=');
      const key = VALUE_FLAGS[eq > 0 ? arg.slice(0, eq) : arg];
      const value = eq > 0 ? arg.slice(eq + 1) : args[++i];
      if (!key || value === undefined || (eq < 0 && value.startsWith('--'))) return null;
      if (key === 'db') globals.db = value;
      else if (flags[key] !== undefined) return null;
      else flags[key] = value;
    } else positional.push(arg);
  }
  if (positional.length !== 2 || positional[0] !== 'heartbeat') return null;
  let ctx: CliContext;
  let prepared: PreparedHeartbeat;
  try {
    ctx = contextFrom(globals);
    prepared = prepareCliHeartbeat(positional[1]!, flags);
    // A PostgreSQL database: the second bundle's turn (this one carries only the SQLite engine).
    if (ctx.config.dbIsUrl && !opts.postgres) return 'postgres';
  } catch (err) {
    // Invalid input or configuration: the full CLI reports it, in its own words.
    if (err instanceof AgentctlError) return null;
    return reportError(err, Boolean(globals.debug));
  }
  try {
    await writeCliHeartbeat(prepared, ctx, { migrate: false });
    return 0;
  } catch (err) {
    if (err instanceof MigrationNeededError) return null;
    return reportError(err, Boolean(globals.debug));
  }
}
