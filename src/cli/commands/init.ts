import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { SCHEMA_VERSION } from '../../store/sqlite/migrations.js';
import { cliContext } from '../context.js';
import { safeText } from '../../core/text.js';

export function define(program: Command): void {
  program
    .command('init')
    .summary('create and migrate the database (for agents that write it in SQL)')
    .description(
      'Create the database file if it is missing and bring its schema to this build\'s version, then exit.\n' +
        'Idempotent: on a current database it changes nothing. Run it (or the first register or heartbeat) before an\n' +
        'agent written from state_database.md opens the file, and after upgrading agentctl, so that read-only\n' +
        'monitoring users can read it. Refuses a file that is not an agentctl database (exit 4, file untouched).',
    )
    .addHelpText('after', '\nExamples:\n  agentctl init --db /var/lib/agents/agentctl.db\n  agentctl init --json')
    .action(async (_flags: unknown, cmd: Command) => {
      const ctx = cliContext(cmd);
      const path = ctx.config.dbLabel;
      const existed = ctx.config.dbIsUrl || existsSync(ctx.config.dbPath);
      const store = await ctx.open('create');
      try {
        // PostgreSQL: the database exists (agentctl cannot create one); its tables are made by the migrations.
        const version = store.isSqlite
          ? (store.db.pragma('user_version', { simple: true }) as number)
          : Number((await store.sql.get<{ version: number }>('SELECT version FROM agentctl_schema'))!.version);
        if (ctx.json) ctx.out(JSON.stringify({ path, created: !existed, schemaVersion: version }));
        else ctx.out(`${existed ? 'database' : 'created database'} ${safeText(path)}: schema version ${version}${version === SCHEMA_VERSION ? ' (current)' : ''}`);
      } finally {
        await store.close();
      }
    });
}
