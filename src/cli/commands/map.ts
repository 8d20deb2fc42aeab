import type { Command } from 'commander';
import { heartbeatMapText } from '../../core/health/map.js';
import { writeFileAtomic } from '../../core/health/files.js';
import { cliContext } from '../context.js';
import { writePieces } from '../output.js';

export function define(program: Command): void {
  program
    .command('map')
    .summary('the heartbeat map as JSON: every agent online, offline or unknown, with its state')
    .description(
      'Print the heartbeat map: every agent keyed by name with its status (online, offline or unknown), its state, last heartbeat, ' +
        'seconds since, and metadata; the alerts standing for agents that are down; summary counts. States are ' +
        'computed now, so the map is right even when no health loop runs. --out writes the file atomically instead.',
    )
    .option('--out <file>', 'write the map to FILE (temp file + rename) instead of stdout')
    .addHelpText('after', "\nExamples:\n  agentctl map | jq '.summary'\n  agentctl map --out /srv/www/agent_heartbeat.json")
    .action(async (flags: { out?: string }, cmd: Command) => {
      const ctx = cliContext(cmd);
      const store = await ctx.open('read');
      try {
        // Written as it is read; a file (--out) is written whole, atomically.
        await writePieces(heartbeatMapText(store, ctx.now()), flags.out !== undefined ? (text) => writeFileAtomic(flags.out!, text) : undefined);
      } finally {
        await store.close();
      }
    });
}
