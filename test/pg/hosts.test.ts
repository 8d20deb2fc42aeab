// The multi-host harness itself (./hosts.ts): hosts in namespaces of their own on this machine, what their processes
// see, freezing and resuming a host as a whole, and closing one without leaving anything behind.
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { BIN, WORKER_MARK, cli, cliJson, tempDb, waitFor } from '../helpers.js';
import { listProcs } from '../processes.js';
import { procStat } from '../../src/core/host.js';
import { type Host, startHost } from './hosts.js';
import { clusterUrl } from './pg-helpers.js';

const MACHINE_BOOT_ID = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
const OUR_NS = readlinkSync('/proc/self/ns/pid');
const node = (script: string) => [process.execPath, '-e', script];
const stateOf = (pid: number) => procStat(pid)?.[0];

// What a process on a host reports about itself, then it waits to be killed.
const SELF_REPORT = `
  const fs = require('node:fs');
  const os = require('node:os');
  console.log(JSON.stringify({
    hostname: os.hostname(),
    ns: fs.readlinkSync('/proc/self/ns/pid'),
    pid: process.pid,
    bootId: fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(),
    procs: fs.readdirSync('/proc').filter((e) => /^\\d+$/.test(e)).map(Number).sort((a, b) => a - b),
  }));
  setInterval(() => {}, 60000);
`;

describe('hosts on one machine', () => {
  it('a process on a host sees its hostname, its own pid namespace with only its processes, and the machine boot id', async () => {
    const host = await startHost('agentctl-host-a');
    expect(host.ns).not.toBe(OUR_NS);
    expect(host.bootId).toBe(MACHINE_BOOT_ID);
    const p = await host.spawn(node(SELF_REPORT));
    await waitFor(() => p.output().includes('\n'), 'the self-report');
    const seen = JSON.parse(p.output());
    expect(seen.hostname).toBe('agentctl-host-a');
    expect(seen.ns).toBe(host.ns);
    expect(seen.bootId).toBe(MACHINE_BOOT_ID);
    expect(seen.pid).toBe(p.innerPid);
    // The two views of one process: its pid here, its pid there.
    expect(readFileSync(`/proc/${p.pid}/status`, 'utf8')).toMatch(new RegExp(`^NSpid:\\s+${p.pid}\\s+${p.innerPid}$`, 'm'));
    // Its /proc holds the host's processes only: pid 1, the controller, itself.
    expect(seen.procs).toEqual(host.members().map((m) => m.innerPid).sort((a, b) => a - b));
    expect(seen.procs).toHaveLength(3);
    expect(seen.procs[0]).toBe(1);
    host.kill(p.innerPid, 'SIGTERM');
    expect(await p.exited()).toEqual({ code: null, signal: 'SIGTERM' });
    await host.close();
  });

  it('three hosts have three hostnames and three pid namespaces on one kernel', async () => {
    const names = ['agentctl-a', 'agentctl-b', 'agentctl-c'];
    const hosts = await Promise.all(names.map((n) => startHost(n)));
    expect(new Set(hosts.map((h) => h.ns)).size).toBe(3);
    for (const h of hosts) expect(h.bootId).toBe(MACHINE_BOOT_ID);
    const seen = await Promise.all(
      hosts.map(async (h) => {
        const p = await h.spawn(['hostname']);
        expect(await p.exited()).toEqual({ code: 0, signal: null });
        return p.output().trim();
      }),
    );
    expect(seen).toEqual(names);
    // Renaming one host leaves the machine's name alone.
    expect(readFileSync('/proc/sys/kernel/hostname', 'utf8').trim()).not.toMatch(/^agentctl-[abc]$/);
    await Promise.all(hosts.map((h) => h.close()));
  });

  it("a host shares this machine's loopback: it reaches the run's PostgreSQL", async () => {
    const host = await startHost('agentctl-host-db');
    const p = await host.spawn(['psql', '-X', '-At', '-c', "SELECT 'connected ' || current_user", clusterUrl()]);
    expect(await p.exited(), p.errors()).toEqual({ code: 0, signal: null });
    expect(p.output().trim()).toMatch(/^connected agentctl_test$/);
    await host.close();
  });

  it('a process that exits at once is still found, with its output and exit code; a missing command exits 127', async () => {
    const host = await startHost('agentctl-quick');
    const p = await host.spawn(node('console.log(process.pid); console.error("bye"); process.exit(3)'));
    expect(await p.exited()).toEqual({ code: 3, signal: null });
    expect(p.output()).toBe(`${p.innerPid}\n`);
    expect(p.errors()).toBe('bye\n');
    expect(p.pid).not.toBe(p.innerPid);
    const missing = await host.spawn(['agentctl-no-such-command']);
    expect((await missing.exited()).code).toBe(127);
    await host.close();
  });

  it('stopAll freezes every process of the host (one forking meanwhile too) and contAll resumes them; other hosts run on', async () => {
    const [a, b] = await Promise.all([startHost('agentctl-frozen'), startHost('agentctl-awake')]);
    const ticker = await a.spawn(node('setInterval(() => process.stdout.write("."), 10)'));
    await a.spawn(['/bin/sh', '-c', 'while :; do sleep 0.01; done']);
    await a.spawn(['sleep', '1000']);
    const other = await b.spawn(['sleep', '1000']);
    await waitFor(() => ticker.output().length > 0, 'the ticker to tick');

    const stopped = await a.stopAll();
    // pid 1, the controller, the ticker, the loop (and its current sleep, if any), the sleep.
    expect(stopped.length).toBeGreaterThanOrEqual(5);
    expect(stopped).toContain(a.initPid);
    expect(stopped).toContain(ticker.pid);
    for (const pid of stopped) expect(stateOf(pid)).toBe('T');
    expect(a.members().filter((m) => m.state !== 'Z').every((m) => m.state === 'T')).toBe(true);
    expect(stateOf(other.pid)).not.toBe('T');
    expect(b.members().some((m) => m.state === 'T')).toBe(false);

    const resumed = await a.contAll();
    expect(resumed).toEqual(expect.arrayContaining(stopped));
    for (const m of a.members()) expect(m.state).not.toBe('T');
    const ticks = ticker.output().length;
    await waitFor(() => ticker.output().length > ticks, 'the ticker to tick again after SIGCONT');
    await Promise.all([a.close(), b.close()]);
  });

  it('what a host runs carries the leak mark; close kills all of it, an orphan in a session of its own too', async () => {
    const host = await startHost('agentctl-closing');
    const sleeper = await host.spawn(['sleep', '1000']);
    // An orphan: its parent starts it in a new session and exits, so the host's pid 1 adopts it.
    const parent = await host.spawn(
      node(`const c = require('node:child_process').spawn('sleep', ['1000'], { detached: true, stdio: 'ignore' }); console.log(c.pid); c.unref();`),
    );
    expect((await parent.exited()).code).toBe(0);
    const orphanInner = Number(parent.output().trim());
    const orphan = host.outerPid(orphanInner)!;
    expect(orphan).not.toBeNull();
    expect(Number(readFileSync(`/proc/${orphan}/status`, 'utf8').match(/^PPid:\s+(\d+)/m)![1])).toBe(host.initPid);

    // The leak check (listProcs with marks) sees every process on the host as this worker's.
    const members = host.members().map((m) => m.pid);
    expect(members).toEqual(expect.arrayContaining([host.initPid, sleeper.pid, orphan]));
    const marks = new Map(listProcs(true).map((p) => [p.pid, p.mark]));
    for (const pid of members) expect(marks.get(pid)).toBe(WORKER_MARK);

    await host.close();
    expect(host.members()).toEqual([]);
    for (const pid of [...members, host.initPid]) expect(existsSync(`/proc/${pid}`)).toBe(false);
    expect(await sleeper.exited()).toEqual({ code: null, signal: 'SIGKILL' });
    expect(listProcs(true).filter((p) => members.includes(p.pid))).toEqual([]);
  });

  it("the host's pid 1 reaps what it adopted: a killed orphan leaves no zombie", async () => {
    const host = await startHost('agentctl-reaper');
    const parent = await host.spawn(node(`const c = require('node:child_process').spawn('sleep', ['1000'], { detached: true, stdio: 'ignore' }); console.log(c.pid); c.unref();`));
    await parent.exited();
    const inner = Number(parent.output().trim());
    const outer = host.outerPid(inner)!;
    host.kill(inner, 'SIGKILL');
    await waitFor(() => !existsSync(`/proc/${outer}`), 'the killed orphan to be reaped');
    expect(host.members().map((m) => m.innerPid)).not.toContain(inner);
    await host.close();
  });

  it("agentctl on a host records the host's name and pids as the host sees them; only a health loop there proves a crash", async () => {
    const db = tempDb();
    const host = await startHost('agentctl-host-x');
    const sleeper = await host.spawn(['sleep', '1000']);
    const beat = await host.spawn([process.execPath, BIN, '--db', db, 'heartbeat', 'w1', '--pid', String(sleeper.innerPid)]);
    expect(await beat.exited(), beat.errors()).toEqual({ code: 0, signal: null });
    const agentOf = () => cliJson<{ agents: any[] }>(['status'], { db }).agents.find((a) => a.name === 'w1');
    const a = agentOf();
    expect(a).toMatchObject({ host: 'agentctl-host-x', pid: sleeper.innerPid, bootId: MACHINE_BOOT_ID, state: 'active' });
    // One kernel, one boot clock: the start time read inside is the one this machine reads.
    expect(a.pidStartTime).toBe(Number(procStat(sleeper.pid)![19]));

    host.kill(sleeper.innerPid, 'SIGKILL');
    await sleeper.exited();
    // Here the agent is on another host: its pid says nothing, only its 30 s clock could convict it.
    expect(cli(['monitor', '--once'], { db }).code).toBe(0);
    expect(agentOf()).toMatchObject({ state: 'active' });
    // On its own host, a health loop proves the crash in one pass.
    const monitor = await host.spawn([process.execPath, BIN, '--db', db, 'monitor', '--once']);
    expect(await monitor.exited(), monitor.errors()).toEqual({ code: 0, signal: null });
    expect(agentOf()).toMatchObject({ state: 'offline', stateReason: 'process gone' });
    await host.close();
  });

  it('a host left open by a test is closed after it', async () => {
    // The next test checks; this one only leaves the host open, with a process in a session of its own.
    left = await startHost('agentctl-left-open');
    await left.spawn(['setsid', 'sleep', '1000']);
    leftMembers = left.members().map((m) => m.pid);
  });

  it('(its check) nothing of the host left open remains', () => {
    expect(leftMembers.length).toBeGreaterThanOrEqual(3);
    expect(left!.members()).toEqual([]);
    for (const pid of leftMembers) expect(existsSync(`/proc/${pid}`)).toBe(false);
  });
});

let left: Host | undefined;
let leftMembers: number[] = [];
