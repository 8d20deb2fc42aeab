// Several "hosts" on this machine for the multi-host tests: each is a UTS and pid namespace of its own
// (`unshare --uts --pid --fork --mount-proc`) with its own hostname, so that what runs there records another host
// name and sees only its own processes (its pids, its /proc), while sharing this kernel (the same boot id) and
// this machine's loopback (the run's PostgreSQL). Inside, a shell is the namespace's pid 1 (it reaps orphans, as a
// host's init does) and runs ./host-controller.mjs, which starts processes on request.
//
// Everything a host runs inherits the test worker's leak mark (see ../processes.ts), so the leak check sees it from
// outside like any other process; close() kills the namespace's pid 1, which kills everything in it.
import { type ChildProcess, spawn as spawnChild } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import { ROOT, cleanEnv, killGroupAfter } from '../helpers.js';

const CONTROLLER = join(ROOT, 'test', 'pg', 'host-controller.mjs');

// pid 1 of the namespace. Stdin is passed on through fd 3: a background command of a non-interactive shell would
// otherwise read /dev/null. `wait` reaps every child, orphans included, until the controller exits.
const INIT = 'hostname "$1" || exit 97; exec 3<&0; "$2" "$3" <&3 3<&- & wait $!';

/** A process in a host's pid namespace, as this machine's /proc shows it. */
export interface Member {
  /** Its pid here (outside), for process.kill and /proc. */
  pid: number;
  /** Its pid inside the host. */
  innerPid: number;
  /** The state letter of /proc/PID/stat: R, S, D, T (stopped), Z (zombie)... */
  state: string;
}

/** A process started on a host. */
export interface HostProcess {
  /** Its pid outside (this machine's view). */
  pid: number;
  /** Its pid inside the host: what it sees as process.pid, and records as its own. */
  innerPid: number;
  output(): string;
  errors(): string;
  /** Settles when it has exited and all its output has arrived; a process the host's close() killed: SIGKILL. */
  exited(): Promise<{ code: number | null; signal: string | null }>;
}

export interface Host {
  name: string;
  /** The host's pid namespace, as readlink /proc/PID/ns/pid names it ('pid:[4026532…]'). */
  ns: string;
  /** The boot id the host's controller read inside (the machine's: one kernel). */
  bootId: string;
  /** The namespace's pid 1, outside. */
  initPid: number;
  /**
   * Starts `argv` on the host, with the test environment (cleanEnv: the leak mark, no AGENTCTL_*) plus `env`;
   * resolves once it runs. On a stopped host it starts when the host is resumed (the controller is stopped too).
   */
  spawn(argv: string[], env?: Record<string, string | undefined>, opts?: { cwd?: string }): Promise<HostProcess>;
  /** Every process in the host's pid namespace (zombies included), found from outside by /proc/PID/ns/pid. */
  members(): Member[];
  /** SIGSTOP to every process of the host; resolves once all are stopped (state T), with their outside pids. */
  stopAll(): Promise<number[]>;
  /** SIGCONT to every process of the host; resolves once none is stopped. */
  contAll(): Promise<number[]>;
  /** Sends `signal` to the process the host knows as `innerPid` (works while the host is stopped). */
  kill(innerPid: number, signal: NodeJS.Signals): void;
  /** Outside pid of the host's process `innerPid`, or null if there is none. */
  outerPid(innerPid: number): number | null;
  /** Kills everything on the host (SIGKILL to its pid 1) and waits until none of it is left. */
  close(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every 5 ms for at most `ms`; throws `what` after. */
async function until(cond: () => boolean, what: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms}ms waiting for ${what}`);
    await sleep(5);
  }
}

/** The processes of pid namespace `ns` (a readlink of /proc/PID/ns/pid), with both pids and their state. */
export function namespaceMembers(ns: string): Member[] {
  const out: Member[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readlinkSync(`/proc/${entry}/ns/pid`) !== ns) continue;
      const status = readFileSync(`/proc/${entry}/status`, 'utf8');
      // NSpid lists its pid in each namespace from ours down to its own: the last is the pid inside.
      const nspid = /^NSpid:\s*(.+)$/m.exec(status)?.[1].trim().split(/\s+/).map(Number);
      const state = /^State:\s*(\S)/m.exec(status)?.[1];
      if (!nspid || !state) continue;
      out.push({ pid: Number(entry), innerPid: nspid[nspid.length - 1], state });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

const open = new Set<Host>();

// Before the leak check of ../helpers.ts (after-hooks run in reverse order, and this one is registered after it):
// a host a test left open is closed here, so that its processes are gone, not reported as leaks.
afterEach(async () => {
  const left = [...open];
  await Promise.all(left.map((h) => h.close()));
});

/** Starts a host named `name` (its hostname inside). Fails with unshare's own message if the namespaces cannot be made. */
export async function startHost(name: string): Promise<Host> {
  const child = spawnChild('unshare', ['--uts', '--pid', '--fork', '--mount-proc', '--', '/bin/sh', '-c', INIT, 'sh', name, process.execPath, CONTROLLER], {
    env: cleanEnv(),
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'pipe'],
    // A group of its own, killed after the test whatever happens (pid 1 inside is in it too).
    detached: true,
  });
  killGroupAfter(child.pid);
  const procs = new Map<number, Proc>();
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  let ready: (msg: Ready) => void;
  const readyMsg = new Promise<Ready>((r) => (ready = r));
  const closed = new Promise<void>((r) => child.once('close', () => r()));
  let buf = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const msg = JSON.parse(buf.slice(0, nl)) as Message;
      buf = buf.slice(nl + 1);
      if (msg.t === 'ready') ready(msg);
      else if (msg.id !== null && procs.has(msg.id)) procs.get(msg.id)!.on(msg);
    }
  });
  const gone = closed.then(() => null);
  const first = await Promise.race([readyMsg, gone]);
  if (first === null) throw new Error(`host ${name} did not start (unshare exited ${child.exitCode ?? child.signalCode}): ${stderr.trim()}`);
  const host = makeHost(name, first, child, procs, closed);
  open.add(host);
  return host;
}

interface Ready {
  t: 'ready';
  pid: number;
  hostname: string;
  ns: string;
  bootId: string;
}
type Message =
  | Ready
  | { t: 'spawned'; id: number; pid: number }
  | { t: 'out'; id: number; fd: 1 | 2; data: string }
  | { t: 'exit'; id: number; code: number | null; signal: string | null }
  | { t: 'error'; id: number | null; message: string };

interface Proc {
  on(msg: Message): void;
}

function makeHost(name: string, ready: Ready, child: ChildProcess, procs: Map<number, Proc>, closed: Promise<void>): Host {
  const ns = ready.ns;
  let nextId = 1;
  let closing: Promise<void> | undefined;
  const members = () => namespaceMembers(ns);
  const outerPid = (innerPid: number) => members().find((m) => m.innerPid === innerPid)?.pid ?? null;
  const initPid = outerPid(1);
  if (initPid === null) throw new Error(`host ${name}: no pid 1 in its namespace ${ns}`);
  const live = () => members().filter((m) => m.state !== 'Z' && m.state !== 'X');
  const signal = (pid: number, sig: NodeJS.Signals) => {
    try {
      process.kill(pid, sig);
    } catch {
      // exited meanwhile
    }
  };

  const host: Host = {
    name,
    ns,
    bootId: ready.bootId,
    initPid,
    members,
    outerPid,

    spawn(argv, env = {}, opts = {}) {
      if (closing) return Promise.reject(new Error(`host ${name} is closed`));
      const id = nextId++;
      let out = '';
      let err = '';
      let done: (r: { code: number | null; signal: string | null }) => void;
      const exit = new Promise<{ code: number | null; signal: string | null }>((r) => (done = r));
      return new Promise<HostProcess>((resolve, reject) => {
        procs.set(id, {
          on(msg) {
            if (msg.t === 'spawned') {
              // It stops itself before exec'ing argv: find it from outside while it cannot exit, then resume it.
              const innerPid = msg.pid;
              let pid: number | null = null;
              void until(() => {
                pid = outerPid(innerPid);
                return pid !== null && members().find((m) => m.pid === pid)?.state === 'T';
              }, `the process ${innerPid} on host ${name} to stop before its exec`)
                .then(() => {
                  signal(pid!, 'SIGCONT');
                  resolve({ pid: pid!, innerPid, output: () => out, errors: () => err, exited: () => exit });
                })
                .catch(reject);
            } else if (msg.t === 'out') {
              if (msg.fd === 1) out += msg.data;
              else err += msg.data;
            } else if (msg.t === 'exit') {
              procs.delete(id);
              done({ code: msg.code, signal: msg.signal });
            } else if (msg.t === 'error') {
              procs.delete(id);
              reject(new Error(`host ${name} could not start ${argv.join(' ')}: ${msg.message}`));
            }
          },
        });
        void closed.then(() => {
          reject(new Error(`host ${name} closed before ${argv.join(' ')} started`));
          done({ code: null, signal: 'SIGKILL' });
        });
        child.stdin!.write(`${JSON.stringify({ t: 'spawn', id, argv, env: cleanEnv(env), cwd: opts.cwd ?? ROOT })}\n`);
      });
    },

    async stopAll() {
      // Until every process is stopped: one still running may have forked meanwhile; a stopped one cannot fork.
      for (;;) {
        const procsNow = live();
        const running = procsNow.filter((m) => m.state !== 'T');
        if (running.length === 0) return procsNow.map((m) => m.pid);
        for (const m of running) signal(m.pid, 'SIGSTOP');
        await until(() => {
          const states = new Map(live().map((m) => [m.pid, m.state]));
          return running.every((m) => !states.has(m.pid) || states.get(m.pid) === 'T');
        }, `host ${name}'s processes to stop`);
      }
    },

    async contAll() {
      const procsNow = live();
      for (const m of procsNow) signal(m.pid, 'SIGCONT');
      await until(() => live().every((m) => m.state !== 'T'), `host ${name}'s processes to resume`);
      return procsNow.map((m) => m.pid);
    },

    kill(innerPid, sig) {
      const pid = outerPid(innerPid);
      if (pid === null) throw new Error(`host ${name} has no process ${innerPid}`);
      process.kill(pid, sig);
    },

    close() {
      closing ??= (async () => {
        // Killing pid 1 of a pid namespace kills every process in it; unshare then exits.
        signal(initPid, 'SIGKILL');
        child.stdin!.destroy();
        await closed;
        await until(() => members().length === 0, `host ${name}'s processes to be gone`);
        open.delete(host);
      })();
      return closing;
    },
  };
  return host;
}
