import type { Command } from 'commander';
import { type AgentView, getRegisteredAgents } from '../../core/agents.js';
import { formatDuration } from '../../core/duration.js';
import { stateSeverity } from '../../core/state.js';
import { validateGroup } from '../../core/validate.js';
import { AgentctlError, AgentNotFoundError } from '../../errors.js';
import { CheckCode } from '../../exit-codes.js';
import { cliContext } from '../context.js';
import { countStates } from '../../core/state.js';
import { summaryLine } from '../render.js';
import { healthLoopStatus } from '../../core/health/loop-status.js';

const LABELS = ['OK', 'WARNING', 'CRITICAL', 'UNKNOWN'] as const;

/** The check verdict over a set of agents: the worst state decides; problems are named first. */
export function verdict(agents: AgentView[]): { code: 0 | 1 | 2 | 3; line: string } {
  if (!agents.length) return { code: CheckCode.UNKNOWN, line: 'no agents registered' };
  const worst = Math.max(...agents.map((a) => stateSeverity(a.state))) as 0 | 1 | 2;
  const problems = agents
    .filter((a) => stateSeverity(a.state) > 0)
    .sort((x, y) => stateSeverity(y.state) - stateSeverity(x.state) || x.name.localeCompare(y.name))
    .map((a) => {
      const seen = a.heartbeatAgeMs === null ? 'never beat' : `last heartbeat ${formatDuration(a.heartbeatAgeMs)} ago`;
      return `${a.name} ${a.state} (${a.state === 'error' && a.message ? a.message : seen})`;
    });
  const shown = problems.slice(0, 5).join(', ') + (problems.length > 5 ? `, and ${problems.length - 5} more` : '');
  const perf = Object.entries(countStates(agents)).map(([s, n]) => `${s}=${n}`).join(' ');
  return { code: worst, line: `${shown ? `${shown}; ` : ''}${summaryLine(agents)} | total=${agents.length} ${perf}` };
}

export function define(program: Command): void {
  program
    .command('check')
    .summary('one line and a monitoring-plugin exit code')
    .description(
      'Check agents (all registered ones, or those named) and print one line, Nagios/Icinga style.\n' +
        'Exit 0 OK; 1 WARNING (stale, error, stuck initializing); 2 CRITICAL (offline, failed);\n' +
        '3 UNKNOWN (unknown name, no agents, unusable database, bad arguments). Maintenance counts as OK.',
    )
    .argument('[names...]', 'only these agents')
    .option('--group <group>', 'only agents of this group')
    .addHelpText('after', '\nExamples:\n  agentctl check                      # every agent\n  agentctl check db-writer backup     # just these\n  */1 * * * * agentctl check --group batch || notify-me')
    .action((names: string[], flags: { group?: string }, cmd: Command) => {
      const ctx = cliContext(cmd);
      let result: { code: number; line: string; agents?: AgentView[] };
      try {
        if (flags.group !== undefined) validateGroup(flags.group);
        const store = ctx.open('read');
        try {
          const agents = getRegisteredAgents(store, ctx.now(), { names, ...(flags.group !== undefined ? { group: flags.group } : {}) });
          result = { ...verdict(agents), agents };
          // A health loop that has run here and then stopped is a problem of its own; a site without one is not warned.
          const loop = healthLoopStatus(store, ctx.now());
          if (loop.ran && loop.warning && result.code < CheckCode.WARNING) result = { ...result, code: CheckCode.WARNING };
          if (loop.ran && loop.warning && result.code !== CheckCode.UNKNOWN) result = { ...result, line: `${loop.warning}; ${result.line}` };
        } finally {
          store.close();
        }
      } catch (err) {
        if (!(err instanceof AgentctlError)) throw err;
        result = { code: CheckCode.UNKNOWN, line: err instanceof AgentNotFoundError ? `no agent named '${err.agentName}'` : err.message };
      }
      if (ctx.json) {
        ctx.out(
          JSON.stringify({
            status: LABELS[result.code],
            code: result.code,
            message: result.line,
            agents: (result.agents ?? []).map((a) => ({ name: a.name, state: a.state, severity: LABELS[stateSeverity(a.state)], heartbeatAgeMs: a.heartbeatAgeMs })),
          }),
        );
      } else {
        ctx.out(`${LABELS[result.code]}: ${result.line}`);
      }
      process.exitCode = result.code;
    });
}
