import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, realpathSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { ROOT, cleanEnv, tempDir } from './helpers.js';

/** Runs npm (the one beside this node) and returns what it did; never throws. */
function npm(args: string[], cwd: string) {
  return spawnSync('npm', args, { cwd, encoding: 'utf8', env: cleanEnv(), timeout: 300_000 });
}

/**
 * What a newcomer does after cloning: `npm install -g .` puts `agentctl` on the PATH. Here the package is packed as
 * npm would publish it (so a file missing from "files" fails the test) and installed into a temporary prefix.
 *
 * Offline where it can be: the dependencies' tarballs are in npm's cache from `npm ci`; if the cache lacks their
 * registry documents, npm asks the registry for them (and nothing else). better-sqlite3's own install step would
 * fetch a prebuilt binary or compile for minutes, so it is skipped and the binary `npm ci` built for this same
 * pinned version and this same node is reused.
 */
describe('a packed copy installed with npm install -g', () => {
  it('puts agentctl on the PATH, and --help and a heartbeat work from anywhere', () => {
    const packDir = tempDir('agentctl-pack-');
    const pack = npm(['pack', '--ignore-scripts', '--pack-destination', packDir, '--json'], ROOT);
    expect(pack.status, pack.stderr).toBe(0);
    const [{ filename, files }] = JSON.parse(pack.stdout) as [{ filename: string; files: { path: string }[] }];
    const paths = files.map((f) => f.path);
    for (const p of ['bin/agentctl', 'dist/cli/main.js', 'dist/fast-heartbeat.cjs', 'dist/fast-heartbeat-pg.cjs', 'state_database.md', 'README.md']) expect(paths, p).toContain(p);

    const prefix = tempDir('agentctl-prefix-');
    const tarball = join(packDir, filename);
    const flags = ['install', '-g', '--prefix', prefix, '--ignore-scripts', '--no-audit', '--no-fund', tarball];
    let install = npm([...flags, '--offline'], packDir);
    if (install.status !== 0 && /ENOTCACHED/.test(install.stderr)) install = npm([...flags, '--prefer-offline'], packDir);
    expect(install.status, `npm install -g: ${install.stderr}`).toBe(0);

    const installed = join(prefix, 'lib', 'node_modules', 'agentctl');
    const addon = join('node_modules', 'better-sqlite3', 'build', 'Release', 'better_sqlite3.node');
    expect(existsSync(join(ROOT, addon)), 'better-sqlite3 built by npm ci').toBe(true);
    mkdirSync(join(installed, addon, '..'), { recursive: true });
    copyFileSync(join(ROOT, addon), join(installed, addon));

    // By name, from a directory outside the clone, with only the prefix's bin added to the PATH.
    const home = tempDir('agentctl-home-');
    const env = cleanEnv({ PATH: `${join(prefix, 'bin')}${delimiter}${process.env.PATH ?? ''}`, HOME: home, XDG_STATE_HOME: undefined });
    const run = (args: string[]) => spawnSync('agentctl', args, { cwd: home, env, encoding: 'utf8', timeout: 60_000 });

    const help = run(['--help']);
    expect(help.status, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/^Usage: agentctl /);
    const version = run(['--version']);
    expect(version.stdout.trim()).toBe(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version);

    const db = join(home, 'first.db');
    const beat = run(['--db', db, 'heartbeat', 'hello', '--message', 'first beat']);
    expect(beat.status, beat.stderr).toBe(0);
    const status = run(['--db', db, 'status', '--json']);
    expect(status.status, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout).agents).toMatchObject([{ name: 'hello', state: 'active', message: 'first beat' }]);

    // Without --db: the per-user default under HOME, created on first use.
    expect(run(['heartbeat', 'hello']).status).toBe(0);
    expect(existsSync(join(home, '.local', 'state', 'agentctl', 'agentctl.db'))).toBe(true);
  }, 600_000);

  it('npm install -g . from the clone links it, as the quick start says', () => {
    const prefix = tempDir('agentctl-prefix-');
    // --ignore-scripts: the clone is built already, and a rebuild here would pull dist/ from under other tests.
    const flags = ['install', '-g', '--prefix', prefix, '--ignore-scripts', '--no-audit', '--no-fund', '.'];
    let install = npm([...flags, '--offline'], ROOT);
    if (install.status !== 0 && /ENOTCACHED/.test(install.stderr)) install = npm([...flags, '--prefer-offline'], ROOT);
    expect(install.status, `npm install -g .: ${install.stderr}`).toBe(0);
    expect(realpathSync(join(prefix, 'lib', 'node_modules', 'agentctl'))).toBe(realpathSync(ROOT));
    const home = tempDir('agentctl-home-');
    const env = cleanEnv({ PATH: `${join(prefix, 'bin')}${delimiter}${process.env.PATH ?? ''}`, HOME: home });
    const beat = spawnSync('agentctl', ['--db', join(home, 'x.db'), 'heartbeat', 'hello'], { cwd: home, env, encoding: 'utf8', timeout: 60_000 });
    expect(beat.status, beat.stderr).toBe(0);
  }, 600_000);
});
