import type { Command } from 'commander';
import type { Diagnosis } from '../../core/diagnosis.js';
import { diagnose } from '../../store/sqlite/diagnose.js';
import { repairDatabase } from '../../store/sqlite/repair.js';
import { safeText } from '../../core/text.js';
import { ExitCode } from '../../exit-codes.js';
import { UsageError } from '../../errors.js';
import { type CliContext, cliContext } from '../context.js';
import { painter, plural } from '../render.js';

/** Loaded only for a PostgreSQL URL. */
const PG_DIAGNOSE = '../../store/postgres/diagnose.js';

const EXIT: Record<Diagnosis['verdict'], number> = { healthy: ExitCode.OK, problems: ExitCode.FAILED, unusable: ExitCode.DB_UNUSABLE };

export function define(program: Command): void {
  program
    .command('db-check')
    .summary('check the database file, and repair what is safe')
    .description(
      'Open the database read-only and report: header and application id, schema version, quick_check\n' +
        '(integrity_check with --full), foreign keys, journal mode, WAL size, pages, the lock files, clock skew and\n' +
        'rows that break the state model. Exit 0 healthy, 1 problems found, 4 unusable (not SQLite, corrupt, too new).\n' +
        '--fix takes the exclusive lock, writes a backup (VACUUM INTO, checked with quick_check before it gets its\n' +
        'name) beside the database, then does what is safe:\n' +
        'checkpoint and truncate the WAL, remove stale or planted locks, repair rows. A corrupt file is never written to:\n' +
        '--fix copies its readable rows into a new file beside it.',
    )
    .option('--full', 'integrity_check instead of the faster quick_check')
    .option('--fix', 'repair what is safe (after a backup)')
    .addHelpText('after', '\nExamples:\n  agentctl db-check\n  agentctl db-check --full --json\n  agentctl db-check --fix')
    .action(async (flags: { full?: boolean; fix?: boolean }, cmd: Command) => {
      const ctx = cliContext(cmd);
      const now = ctx.now();
      if (ctx.config.dbIsUrl) {
        // The file checks and repairs (integrity, WAL, backups, lock files) are SQLite's: a server keeps its own.
        if (flags.fix) throw new UsageError('db-check --fix repairs SQLite database files; on PostgreSQL use its own tools (VACUUM, pg_dump)');
        const store = await ctx.open('read');
        try {
          const { diagnosePg } = await import(PG_DIAGNOSE) as typeof import('../../store/postgres/diagnose.js');
          const d = await diagnosePg(store, await store.now());
          if (ctx.json) ctx.out(JSON.stringify(d, null, 2));
          else printDiagnosis(ctx, d);
          process.exitCode = EXIT[d.verdict];
        } finally {
          await store.close();
        }
        return;
      }
      if (!flags.fix) {
        const d = diagnose(ctx.config.dbPath, now, { full: Boolean(flags.full), lockStaleMs: ctx.config.lockStaleMs });
        if (ctx.json) ctx.out(JSON.stringify(d, null, 2));
        else printDiagnosis(ctx, d);
        process.exitCode = EXIT[d.verdict];
        return;
      }
      const r = await repairDatabase(ctx.config.dbPath, now, {
        lockStaleMs: ctx.config.lockStaleMs,
        onWait: (_owner, waitMs) => ctx.err(`agentctl: the maintenance lock has no owner that can be asked; taking it over once stale (up to ${Math.ceil(waitMs / 1000)}s)`),
        onWarning: (message) => ctx.err(`agentctl: ${safeText(message)}`),
      });
      if (ctx.json) {
        ctx.out(JSON.stringify(r, null, 2));
      } else {
        for (const a of r.actions) ctx.out(`fixed: ${safeText(a)}`);
        if (r.recovered) {
          ctx.out(`the database is unusable and was left untouched; readable rows are in ${safeText(r.recovered)}`);
          ctx.out(`check it with 'agentctl db-check --db ${safeText(r.recovered)}', then move it into place while no agentctl runs`);
        } else {
          printDiagnosis(ctx, r.after);
        }
      }
      process.exitCode = r.recovered ? ExitCode.DB_UNUSABLE : EXIT[r.after.verdict];
    });
}

/** The report for people: details quote names and text from rows anyone could have written, so they go through safeText. */
function printDiagnosis(ctx: CliContext, d: Diagnosis): void {
  const c = painter(ctx.color);
  ctx.out(c.bold(`db-check ${safeText(d.path)}`));
  for (const f of d.findings) {
    ctx.out(`  ${f.ok ? c.green('ok  ') : c.red('FAIL')}  ${safeText(f.check)}: ${safeText(f.detail)}${f.fix ? c.dim(`  (--fix: ${safeText(f.fix)})`) : ''}`);
  }
  const problems = d.findings.filter((f) => !f.ok).length;
  if (d.verdict === 'healthy') ctx.out(c.green('healthy'));
  else if (d.verdict === 'unusable' && d.findings.some((f) => f.check === 'application_id' && !f.ok)) ctx.out(c.red('not an agentctl database: nothing was written to it (is --db, or AGENTCTL_DB, the right file?)'));
  else if (d.verdict === 'unusable') ctx.out(c.red("unusable: nothing was written to it. Restore a backup, or run 'agentctl db-check --fix' to copy what is readable into a new file."));
  // Only suggest --fix for what it can fix: a permission problem is the owner's to change (the finding says how).
  else if (d.findings.some((f) => !f.ok && f.fix)) ctx.out(c.yellow(`${plural(problems, 'problem')} found; 'agentctl db-check --fix' repairs what is safe`));
  else ctx.out(c.yellow(`${plural(problems, 'problem')} found; see above for what to do`));
}
