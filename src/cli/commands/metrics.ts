import type { Command } from 'commander';
import { renderMetrics } from '../../core/health/metrics.js';
import { writeFileAtomic } from '../../core/health/files.js';
import { cliContext } from '../context.js';

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
    .action((flags: { out?: string }, cmd: Command) => {
      const ctx = cliContext(cmd);
      const store = ctx.open('read');
      try {
        const text = renderMetrics(store, ctx.now());
        if (flags.out !== undefined) writeFileAtomic(flags.out, text);
        else process.stdout.write(text);
      } finally {
        store.close();
      }
    });
}
