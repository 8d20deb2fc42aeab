import { AgentctlError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';

/** Writes one line on stderr for an error (its stack too with --debug) and returns its exit code. */
export function reportError(err: unknown, debug: boolean): number {
  if (err instanceof AgentctlError) {
    process.stderr.write(`agentctl: ${err.message}\n`);
    if (debug && err.stack) process.stderr.write(`${err.stack}\n`);
    return err.exitCode;
  }
  const e = err as Error;
  process.stderr.write(`agentctl: unexpected error: ${e?.message ?? String(err)}${debug ? '' : ' (run with --debug for details)'}\n`);
  if (debug && e?.stack) process.stderr.write(`${e.stack}\n`);
  return ExitCode.FAILED;
}
