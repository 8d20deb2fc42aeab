import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BIN, ROOT, cli, tempDir } from './helpers.js';

const UNITS = ['agentctl-monitor.service', 'agentctl-serve.service'];
const HAS_SYSTEMD_ANALYZE = spawnSync('systemd-analyze', ['--version']).status === 0;

/** The unit's lines as [section, key, value], continuation lines joined; comments and blank lines dropped. */
function parseUnit(text: string): [string, string, string][] {
  const out: [string, string, string][] = [];
  let section = '';
  const lines = text.replace(/\\\n\s*/g, ' ').split('\n');
  for (const line of lines) {
    if (line.trim() === '' || /^[#;]/.test(line)) continue;
    const s = /^\[([A-Za-z]+)\]$/.exec(line);
    if (s) {
      section = s[1]!;
      continue;
    }
    const kv = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (!kv || !section) throw new Error(`not a unit line: ${line}`);
    out.push([section, kv[1]!, kv[2]!]);
  }
  return out;
}

/** The agentctl arguments of ExecStart (the command's own flags, split as systemd does for unquoted words). */
function execArgs(unit: [string, string, string][]): string[] {
  const exec = unit.find(([s, k]) => s === 'Service' && k === 'ExecStart')![2];
  const words = exec.match(/'[^']*'|"[^"]*"|\S+/g)!;
  expect(words[0]).toBe('/usr/local/bin/agentctl');
  return words.slice(1).map((w) => w.replace(/^'(.*)'$|^"(.*)"$/, '$1$2'));
}

describe('the systemd units in scripts/', () => {
  for (const name of UNITS) {
    it(`${name} parses, runs agentctl with options it has, and ${HAS_SYSTEMD_ANALYZE ? 'passes systemd-analyze verify' : 'has the sections systemd needs'}`, () => {
      const text = readFileSync(join(ROOT, 'scripts', name), 'utf8');
      const unit = parseUnit(text);
      const keys = (section: string) => unit.filter(([s]) => s === section).map(([, k]) => k);
      expect(keys('Unit')).toContain('Description');
      expect(keys('Service')).toEqual(expect.arrayContaining(['Type', 'User', 'Group', 'ExecStart', 'KillSignal', 'Restart']));
      expect(keys('Install')).toContain('WantedBy');
      // Every flag of ExecStart is one the subcommand has (its --help lists it).
      const args = execArgs(unit);
      const help = cli([args[0]!, '--help']).stdout;
      for (const flag of args.filter((a) => a.startsWith('--'))) expect({ flag, listed: help.includes(flag) }).toEqual({ flag, listed: true });
      if (!HAS_SYSTEMD_ANALYZE) return;
      // systemd checks every directive and that ExecStart is executable: point it at this checkout's agentctl.
      const dir = tempDir();
      writeFileSync(join(dir, name), text.replaceAll('/usr/local/bin/agentctl', BIN));
      const r = spawnSync('systemd-analyze', ['verify', join(dir, name)], { encoding: 'utf8', cwd: dir });
      expect({ code: r.status, stderr: r.stderr.split('\n').filter((l) => l.includes(name)).join('\n') }).toEqual({ code: 0, stderr: '' });
    });
  }

  it('the serve unit has the monitor unit\'s user, stop handling and restart policy, and is hardened beyond it', () => {
    const monitor = parseUnit(readFileSync(join(ROOT, 'scripts', 'agentctl-monitor.service'), 'utf8'));
    const serve = parseUnit(readFileSync(join(ROOT, 'scripts', 'agentctl-serve.service'), 'utf8'));
    const value = (u: typeof serve, k: string) => u.find(([s, key]) => s === 'Service' && key === k)?.[2];
    for (const k of ['User', 'Group', 'KillSignal', 'TimeoutStopSec', 'Restart', 'RestartSec']) expect({ k, v: value(serve, k) }).toEqual({ k, v: value(monitor, k) });
    expect(value(serve, 'Environment')).toBe(value(monitor, 'Environment'));
    expect(execArgs(serve)).toEqual(expect.arrayContaining(['serve', '--listen', '127.0.0.1:8080']));
    expect(value(serve, 'NoNewPrivileges')).toBe('yes');
    expect(value(serve, 'ProtectSystem')).toBe('strict');
    expect(value(serve, 'ReadWritePaths')).toBe('/var/lib/agents');
  });
});
