import { Command, CommanderError, type Option } from 'commander';
import { reportError } from './report.js';
import { safeText } from '../core/text.js';
import { ExitCode, EXIT_CODES_HELP } from '../exit-codes.js';
import { VERSION } from '../version.js';

/** A command module: adds its subcommand (options, help, action) to the program. */
export interface CommandModule {
  define(program: Command): void;
}

/**
 * Every command, loaded only when it runs (so `agentctl heartbeat` does not pay for the table renderer). The help
 * text, summary included, is each module's own; `agentctl --help` loads them all.
 */
const COMMANDS: Record<string, () => Promise<CommandModule>> = {
  init: () => import('./commands/init.js'),
  status: () => import('./commands/status.js'),
  check: () => import('./commands/check.js'),
  register: () => import('./commands/register.js'),
  heartbeat: () => import('./commands/heartbeat.js'),
  'set-status': () => import('./commands/set-status.js'),
  deregister: () => import('./commands/deregister.js'),
  history: () => import('./commands/history.js'),
  cleanup: () => import('./commands/cleanup.js'),
  'db-check': () => import('./commands/db-check.js'),
  run: () => import('./commands/run.js'),
  restart: () => import('./commands/restart.js'),
  send: () => import('./commands/send.js'),
  commands: () => import('./commands/commands.js'),
  monitor: () => import('./commands/monitor.js'),
  map: () => import('./commands/map.js'),
  metrics: () => import('./commands/metrics.js'),
  demo: () => import('./commands/demo.js'),
  serve: () => import('./commands/serve.js'),
  token: () => import('./commands/token.js'),
};

const ENV_HELP = `Environment:
  AGENTCTL_DB (DATABASE_PATH)              database file or postgres:// URL (default: $XDG_STATE_HOME/agentctl/agentctl.db,
                                           else ~/.local/state/agentctl/agentctl.db)
  AGENTCTL_LOCK_TIMEOUT (LOCK_TIMEOUT)     SQLite busy timeout per statement (default: 5s)
  AGENTCTL_LOCK_STALE                      an exclusive lock not refreshed for this long is abandoned (default: 30s)
  AGENTCTL_RETRY_ATTEMPTS (RETRY_ATTEMPTS) tries per transaction when the database is busy (default: 3)
  AGENTCTL_BACKOFF_FACTOR (BACKOFF_FACTOR) growth of the delay between tries (default: 1.5)
  AGENTCTL_HEARTBEAT_INTERVAL (HEARTBEAT_INTERVAL)  default heartbeat interval (default: 30s)
  AGENTCTL_STALE_MULTIPLIER (STALE_THRESHOLD in seconds)  default stale multiplier (default: 3)
  AGENTCTL_OFFLINE_AFTER                   default offline threshold (default: 300s)
  AGENTCTL_LOG_DIR                         monitor's daily log files (default: logs/ beside the database)
  AGENTCTL_LOG_LEVEL (LOG_LEVEL)           debug, info, warn, error (default: info)
  AGENTCTL_ALLOW_SHARED_DB                 1: root restarts and signals even for a database others may write
  NO_COLOR                                 no colours
Durations: 250ms, 30s, 5m, 1h, 2d; a bare number means seconds.`;

/**
 * An option's help line, with its default written as every hand-written one is: `(default: 2s)`. Commander's own
 * would quote it as JSON (`(default: "2s")`), which reads like a different notation beside the others.
 */
function optionDescription(option: Option): string {
  const shown = option.defaultValue !== undefined && (option.required || option.optional) && option.defaultValueDescription !== '';
  if (!shown) return option.description;
  const value = option.defaultValueDescription ?? String(option.defaultValue);
  return `${option.description} (default: ${value})`;
}

/** Finds the command name in argv (the first word that is not an option or an option's value). */
function commandName(args: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') return undefined;
    if (a === '--db') {
      i++;
      continue;
    }
    if (!a.startsWith('-')) return a;
  }
  return undefined;
}

function buildProgram(): Command {
  const program = new Command('agentctl')
    .description('Liveness for a fleet of agent processes kept in one shared SQLite file.')
    .option('--db <path>', 'database file, or a postgres:// URL (else AGENTCTL_DB, DATABASE_PATH, or the per-user default)')
    .option('--json', 'machine-readable output where the output is data')
    .option('--no-color', 'no colours (also NO_COLOR, or when stdout is not a terminal)')
    .option('--debug', 'print stack traces of errors')
    .showSuggestionAfterError(true)
    // Descriptions carry their own line breaks; wrapping them again at 80 columns would leave ragged lines.
    .configureHelp({ helpWidth: Math.max(120, process.stdout.columns ?? 0), optionDescription })
    .exitOverride()
    .configureOutput({
      // One line, whatever commander says: its suggestion ("Did you mean …?") joins the message. It quotes the
      // argument it refused, shown through safeText like every other error.
      outputError: (str, write) => write(`agentctl: ${safeText(str.replace(/^error: /, '').trim().replace(/\s*\n\s*/g, ' '))}\n`),
    })
    .addHelpText('after', `\n${EXIT_CODES_HELP}\n\n${ENV_HELP}`);
  // Not npm_package_version: under `npm run` that is the version of whichever package runs the script.
  program.version(VERSION, '-V, --version');
  return program;
}

/** Runs the CLI on `argv` (process.argv form) and returns the exit code; never calls process.exit itself. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  const args = argv.slice(2);
  const name = commandName(args);
  const wanted = name && COMMANDS[name] ? [name] : Object.keys(COMMANDS);
  for (const mod of await Promise.all(wanted.map((n) => COMMANDS[n]!()))) mod.define(program);
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : ExitCode.OK;
  } catch (err) {
    return exitCodeFor(err, args.includes('--debug'));
  }
}

/** Commander's own errors (already printed) map to exit 0 for help/version and 2 otherwise; the rest to reportError. */
function exitCodeFor(err: unknown, debug: boolean): number {
  if (err instanceof CommanderError) {
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return ExitCode.OK;
    return ExitCode.USAGE;
  }
  return reportError(err, debug);
}
