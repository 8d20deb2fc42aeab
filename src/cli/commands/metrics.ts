import type { Command } from 'commander';
import { metricsText } from '../../core/health/metrics.js';
import { writeFileAtomic } from '../../core/health/files.js';
import { cliContext } from '../context.js';
import { writePieces } from '../output.js';

export function define(program: Command): void {
  program
    .command('metrics')
    .summary('Prometheus text exposition of the fleet and the health loop')
    .description(
      'Print metrics in the Prometheus text format: agents per state, per-agent up and heartbeat age, the health ' +
        "loop's counters (transitions, heartbeat timeouts, alerts sent and failed, held convictions) and its last pass. " +
        "--out writes the file atomically, for node_exporter's textfile collector.",
    )
    .option('--out <file>', 'write to FILE (temp file + rename) instead of stdout')
    .addHelpText('after', '\nExamples:\n  agentctl metrics\n  agentctl metrics --out /var/lib/node_exporter/textfile/agentctl.prom')
    .action(async (flags: { out?: string }, cmd: Command) => {
      const ctx = cliContext(cmd);
      const store = await ctx.open('read');
      try {
        // Written as it is read; a file (--out) is written whole, atomically.
        await writePieces(metricsText(store, ctx.now()), flags.out !== undefined ? (text) => writeFileAtomic(flags.out!, text) : undefined);
      } finally {
        await store.close();
      }
    });
}
