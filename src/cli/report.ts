import { AgentctlError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import { safeText } from '../core/text.js';

/**
 * Writes one line on stderr for an error (its stack too with --debug) and returns its exit code. Messages quote
 * names, paths, payloads and text read from the database, which anyone with write access could have written: they
 * are shown through safeText, so an escape sequence or a newline in them can neither drive the terminal nor forge a line.
 */
export function reportError(err: unknown, debug: boolean): number {
  if (err instanceof AgentctlError) {
    process.stderr.write(`agentctl: ${safeText(err.message)}\n`);
    if (debug && err.stack) process.stderr.write(`${safeStack(err)}\n`);
    return err.exitCode;
  }
  const e = err as Error;
  process.stderr.write(`agentctl: unexpected error: ${safeText(e?.message ?? String(err))}${debug ? '' : ' (run with --debug for details)'}\n`);
  if (debug && e?.stack) process.stderr.write(`${safeStack(e)}\n`);
  return ExitCode.FAILED;
}

/** The stack, line by line through safeText, with the message in it escaped whole (its newlines too). */
function safeStack(e: Error): string {
  const stack = e.message ? e.stack!.replace(e.message, () => safeText(e.message)) : e.stack!;
  return stack.split('\n').map(safeText).join('\n');
}
