import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { BIN, ROOT, cleanEnv, cli, tempDb, tempDir } from './helpers.js';

const README = readFileSync(join(ROOT, 'README.md'), 'utf8');

/**
 * The README's ```sh blocks, in order. Set-up for a real host (groups, users, directories under /var, crontab lines)
 * is written in ```console blocks, which never run here: the suite runs as root and must not change the machine. So
 * are the requests to a running `agentctl serve` (test/serve/ tests every ping form and API route over HTTP).
 */
function shellBlocks(text: string): string[] {
  return [...text.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}

/**
 * Lines the test leaves out, each with the reason; every other line of every ```sh block runs. Keep this short: an
 * example that cannot run here should say so in the README too.
 */
const NOT_RUN: [string, string][] = [
  ['npm ', 'installs, builds or runs the suite: test/install.test.ts installs a packed copy with npm install -g'],
  ['agentctl demo', 'a screen until Ctrl-C: test/demo.test.ts runs it'],
  ['agentctl serve', 'serves until Ctrl-C: test/serve/ runs it'],
  ['agentctl status --watch', 'redraws until Ctrl-C'],
  ['agentctl history --follow', 'follows until Ctrl-C'],
  ['agentctl run --name crawler', 'runs ./crawler, a program of yours'],
  ['agentctl history crawler', 'the history of that run'],
  ['agentctl restart worker-1', "starts worker-1's launch command, python3 worker.py, a program of yours"],
  ['agentctl send worker-1 --wait', 'waits for an agent that takes commands (agent.onCommand), which this example has not'],
];

const hasJq = spawnSync('jq', ['--version']).status === 0;

/** A block as it runs: without the lines in NOT_RUN (and jq pipelines where jq is missing). */
function runnable(block: string): { script: string; left: string[] } {
  const left: string[] = [];
  const lines = block.split('\n').filter((line) => {
    const t = line.trim();
    const skip = NOT_RUN.some(([start]) => t.startsWith(start)) || (!hasJq && /\|\s*jq\b/.test(t));
    if (skip) left.push(t);
    return !skip;
  });
  return { script: lines.join('\n'), left };
}

describe('the README', () => {
  it('says how to put agentctl on the PATH before it uses it bare', () => {
    const quick = README.slice(README.indexOf('## Quick start'));
    const install = quick.indexOf('npm install -g .');
    expect(install).toBeGreaterThan(0);
    expect(quick.indexOf('npm link')).toBeGreaterThan(0);
    expect(quick.indexOf('npx agentctl')).toBeGreaterThan(0);
    // The first bare `agentctl` command comes after the install line.
    expect(quick.search(/^agentctl /m)).toBeGreaterThan(install);
  });

  it('runs every sh example as written, in order, against one fresh database, with agentctl on the PATH', () => {
    const bin = tempDir('agentctl-path-');
    symlinkSync(BIN, join(bin, 'agentctl'));
    const cwd = tempDir('agentctl-readme-');
    const db = tempDb();
    const env = cleanEnv({ AGENTCTL_DB: db, HOME: cwd, PATH: `${bin}${delimiter}${process.env.PATH ?? ''}` });
    const blocks = shellBlocks(README);
    expect(blocks.length).toBeGreaterThan(5);
    const skipped: string[] = [];
    for (const block of blocks) {
      const { script, left } = runnable(block);
      skipped.push(...left);
      if (!script.trim().replace(/^\s*#.*$/gm, '').trim()) continue;
      const r = spawnSync('bash', ['-e', '-o', 'pipefail', '-c', script], { cwd, env, encoding: 'utf8', timeout: 120_000 });
      expect(r.status, `this README block failed (exit ${r.status}):\n${script}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`).toBe(0);
    }
    // Every entry of NOT_RUN still matches a line: a stale entry would hide nothing, or hide a new example.
    for (const [start] of NOT_RUN) expect(skipped.some((l) => l.startsWith(start)), start).toBe(true);
  }, 300_000);

  it('lists every metric agentctl metrics prints, with its labels, and no other', () => {
    const db = tempDb();
    cli(['register', 'worker-1', '--group', 'batch'], { db });
    cli(['heartbeat', 'worker-1'], { db });
    const r = cli(['metrics'], { db });
    expect(r.code, r.stderr).toBe(0);
    const emitted = new Map<string, Set<string>>();
    for (const m of r.stdout.matchAll(/^# TYPE (\w+) /gm)) emitted.set(m[1]!, new Set());
    for (const m of r.stdout.matchAll(/^(\w+)\{([^}]*)\}/gm)) for (const l of m[2]!.matchAll(/(\w+)="/g)) emitted.get(m[1]!)?.add(l[1]!);
    const shown = (n: string, labels: Set<string>) => (labels.size ? `${n}{${[...labels].sort().join(',')}}` : n);

    const paragraph = README.slice(README.indexOf('`agentctl metrics` prints the Prometheus text format:'));
    const listed = paragraph.slice(0, paragraph.indexOf('\n\n'));
    const documented = [...listed.matchAll(/`(agentctl_\w+)(?:\{([\w,]*)\})?`/g)].map((m) => shown(m[1]!, new Set((m[2] ?? '').split(',').filter(Boolean))));
    expect(documented.sort()).toEqual([...emitted].map(([n, labels]) => shown(n, labels)).sort());
  });

  it("the webhook example's agent.id is a number and the map's id is the name, as the code writes them", () => {
    const db = tempDb();
    cli(['heartbeat', 'worker-2'], { db });
    const map = JSON.parse(cli(['map'], { db }).stdout);
    expect(map.agents['worker-2'].id).toBe('worker-2');
    expect(README).toMatch(/keyed by name: `id` and `name`, both the agent's name/);
    const example = JSON.parse(/^```json\n([\s\S]*?)^```$/m.exec(README)![1]!);
    expect(typeof example.agent.id).toBe('number');
    expect(README).toMatch(/`agent.id` is the agent's\s+row number in the database/);
  });
});

describe("the README's TypeScript examples", () => {
  it('type-check as written against the built library, imported as agentctl', () => {
    const dir = tempDir('agentctl-readme-ts-');
    mkdirSync(join(dir, 'node_modules'));
    symlinkSync(ROOT, join(dir, 'node_modules', 'agentctl'));
    writeFileSync(join(dir, 'package.json'), '{"type":"module"}\n');
    const blocks = [...README.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
    expect(blocks.length).toBeGreaterThan(2);
    const files = blocks.map((b, i) => {
      writeFileSync(join(dir, `example-${i}.ts`), b);
      return `example-${i}.ts`;
    });
    const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    const flags = ['--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--skipLibCheck'];
    const types = ['--types', 'node', '--typeRoots', join(ROOT, 'node_modules', '@types')];
    const r = spawnSync(process.execPath, [tsc, ...flags, ...types, ...files], { cwd: dir, encoding: 'utf8', timeout: 300_000 });
    expect(r.status, r.stdout + r.stderr).toBe(0);
  }, 300_000);
});
