import { Command } from 'commander';
import { TOKEN_ROLES, createToken, revokeToken, tokenJson, validateAgentPattern } from '../../core/tokens.js';
import { safeText } from '../../core/text.js';
import { validateName } from '../../core/validate.js';
import { UsageError } from '../../errors.js';
import { listTokens } from '../../store/tokens.js';
import { cliContext } from '../context.js';

export function define(program: Command): void {
  const token = program
    .command('token')
    .summary("create, list and revoke the access tokens of 'agentctl serve'")
    .description(
      "Access tokens for 'agentctl serve'. Roles: viewer (read API, live stream), operator (viewer plus controls),\n" +
        'agent (pings and heartbeats, optionally only for names matching --agents). A token is printed once, when it\n' +
        'is created; only its SHA-256 is stored.',
    );
  token
    .command('create')
    .description('create a token and print it (once: it cannot be shown again)')
    .argument('<name>', 'token name (the agent-name alphabet); events of its controls name it')
    .requiredOption('--role <role>', TOKEN_ROLES.join('|'))
    .option('--agents <pattern>', "agent role only: the names it may ping for, a glob like 'batch-*'")
    .addHelpText('after', "\nExamples:\n  agentctl token create ops --role operator\n  agentctl token create batch-hosts --role agent --agents 'batch-*'")
    .action(async (name: string, flags: { role: string; agents?: string }, cmd: Command) => {
      const ctx = cliContext(cmd);
      validateName(name, 'token name');
      if (!(TOKEN_ROLES as readonly string[]).includes(flags.role)) throw new UsageError(`invalid role '${flags.role}': use one of ${TOKEN_ROLES.join(', ')}`);
      if (flags.agents !== undefined) {
        if (flags.role !== 'agent') throw new UsageError('--agents applies only to tokens of the agent role');
        validateAgentPattern(flags.agents);
      }
      const store = await ctx.open('create');
      try {
        const r = await createToken(store, { name, role: flags.role, agents: flags.agents }, ctx.now());
        if (ctx.json) ctx.out(JSON.stringify({ ...tokenJson(r.record), token: r.token }, null, 2));
        else {
          ctx.out(r.token);
          ctx.err(`agentctl: created ${r.record.role} token ${safeText(name)}; it is shown only this once, store it now`);
        }
      } finally {
        await store.close();
      }
    });
  token
    .command('list')
    .description('list tokens (name, role, agents, created, state); never the tokens themselves')
    .option('--all', 'include revoked and used-up tokens')
    .action(async (flags: { all?: boolean }, cmd: Command) => {
      const ctx = cliContext(cmd);
      const store = await ctx.open('existing');
      try {
        const all = (await listTokens(store)).map(tokenJson);
        const shown = flags.all ? all : all.filter((t) => t.live);
        if (ctx.json) {
          ctx.out(JSON.stringify({ tokens: shown }, null, 2));
          return;
        }
        if (!shown.length) {
          ctx.out("No tokens. Create one with 'agentctl token create NAME --role viewer|operator|agent'.");
          return;
        }
        for (const t of shown) {
          const state = t.revokedAt !== null ? 'revoked' : t.once ? (t.usedAt !== null ? 'login link, used' : 'login link, unused') : 'live';
          ctx.out(`${safeText(t.name)}  ${t.role}${t.agents !== null ? ` (agents ${safeText(t.agents)})` : ''}  created ${t.createdAtIso}  ${state}`);
        }
      } finally {
        await store.close();
      }
    });
  token
    .command('revoke')
    .description('revoke a token: it stops working at once, browser sessions made with it included')
    .argument('<name>', 'token name')
    .action(async (name: string, _flags: unknown, cmd: Command) => {
      const ctx = cliContext(cmd);
      validateName(name, 'token name');
      const store = await ctx.open('existing');
      try {
        await revokeToken(store, name, ctx.now());
        if (ctx.json) ctx.out(JSON.stringify({ name, revoked: true }));
        else ctx.out(`revoked token ${safeText(name)}`);
      } finally {
        await store.close();
      }
    });
}
