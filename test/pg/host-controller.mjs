// The controller of one test "host" (see ./hosts.ts): runs inside the host's UTS and pid namespaces and starts
// processes there on request. It speaks JSON lines: requests on stdin, replies and events on stdout.
//   in:  {"t":"spawn","id":N,"argv":[...],"env":{...},"cwd":"..."}
//   out: {"t":"ready","pid":P,"hostname":H,"ns":"pid:[...]","bootId":B}   once, at start
//        {"t":"spawned","id":N,"pid":P}                                     P as seen inside the host
//        {"t":"out","id":N,"fd":1|2,"data":"..."}                           the process's output, as it comes
//        {"t":"exit","id":N,"code":C,"signal":S}
//        {"t":"error","id":N,"message":"..."}
// Each process starts stopped (it sends itself SIGSTOP before exec'ing the command), so that the harness can find
// its pid as seen from outside before it can exit; the harness resumes it with SIGCONT. Stdin closed: exit.
import { spawn } from 'node:child_process';
import { readFileSync, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import { createInterface } from 'node:readline';

const send = (msg) => process.stdout.write(`${JSON.stringify(msg)}\n`);

function spawnOne(req) {
  let child;
  try {
    child = spawn('/bin/sh', ['-c', 'kill -STOP $$ && exec "$@"', 'sh', ...req.argv], {
      env: req.env,
      cwd: req.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (err) {
    send({ t: 'error', id: req.id, message: String(err?.message ?? err) });
    return;
  }
  child.once('error', (err) => send({ t: 'error', id: req.id, message: String(err?.message ?? err) }));
  if (child.pid === undefined) return;
  send({ t: 'spawned', id: req.id, pid: child.pid });
  child.stdout.setEncoding('utf8').on('data', (data) => send({ t: 'out', id: req.id, fd: 1, data }));
  child.stderr.setEncoding('utf8').on('data', (data) => send({ t: 'out', id: req.id, fd: 2, data }));
  // 'close', not 'exit': every byte it wrote has been forwarded first.
  child.once('close', (code, signal) => send({ t: 'exit', id: req.id, code, signal }));
}

createInterface({ input: process.stdin }).on('line', (line) => {
  if (!line.trim()) return;
  const req = JSON.parse(line);
  if (req.t === 'spawn') spawnOne(req);
  else send({ t: 'error', id: req.id ?? null, message: `unknown request ${JSON.stringify(req.t)}` });
}).once('close', () => process.exit(0));

send({
  t: 'ready',
  pid: process.pid,
  hostname: hostname(),
  ns: readlinkSync('/proc/self/ns/pid'),
  bootId: readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(),
});
