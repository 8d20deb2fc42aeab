import { cli, exited, startCli, waitFor } from '../helpers.js';

export interface Serving {
  child: ReturnType<typeof startCli>;
  /** http://127.0.0.1:PORT */
  base: string;
  /** The one-time login token printed when no token existed, else null. */
  login: string | null;
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Starts the real `agentctl serve` on a free loopback port (`--listen 127.0.0.1:0`) and waits, with a generous
 * deadline, for the address it prints on stderr. The child is killed after the test if still running.
 */
export async function serve(db: string, args: string[] = [], env: Record<string, string | undefined> = {}): Promise<Serving> {
  const child = startCli(['serve', '--listen', '127.0.0.1:0', ...args], { db, env });
  let base = '';
  await waitFor(() => {
    if (child.exitCode !== null) throw new Error(`serve exited ${child.exitCode}: ${child.errors()}`);
    const m = /serving (http:\/\/127\.0\.0\.1:\d+)/.exec(child.errors());
    if (m) base = m[1]!;
    return Boolean(m);
  }, 'agentctl serve to print its address', 60_000);
  await waitFor(async () => (await fetch(`${base}/healthz`).catch(() => null))?.status === 200, 'serve to answer /healthz', 60_000);
  const login = /login\?token=(\S+)/.exec(child.errors())?.[1] ?? null;
  return {
    child,
    base,
    login,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited(child);
    },
  };
}

/** Creates a token with the CLI and returns it (what `token create` prints on stdout). */
export function createToken(db: string, name: string, role: string, agents?: string): string {
  const r = cli(['token', 'create', name, '--role', role, ...(agents !== undefined ? ['--agents', agents] : [])], { db });
  if (r.code !== 0) throw new Error(`token create ${name} exited ${r.code}: ${r.stderr}`);
  return r.stdout.trim();
}

export function bearer(token: string, extra: Record<string, string> = {}): Record<string, string> {
  return { Authorization: `Bearer ${token}`, ...extra };
}

/** The agent row as stored, read through the CLI (status --json --all). */
export function agentOf(db: string, name: string): any {
  const r = cli(['status', '--all', '--json'], { db });
  if (r.code !== 0) throw new Error(`status exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout).agents.find((a: any) => a.name === name);
}

/** The events of one agent, through the CLI (history --json). */
export function historyJson(db: string, name: string): any[] {
  const r = cli(['history', name, '--json', '--limit', '1000'], { db });
  if (r.code !== 0) throw new Error(`history exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

export interface SseEvent {
  id: string | undefined;
  data: any;
}

/** A Server-Sent Events client over fetch: collects events and comments until closed or the server ends it. */
export async function openStream(url: string, headers: Record<string, string>) {
  const abort = new AbortController();
  const res = await fetch(url, { headers, signal: abort.signal });
  const events: SseEvent[] = [];
  const comments: string[] = [];
  let ended = false;
  const done = (async () => {
    if (!res.body) return;
    const decoder = new TextDecoder();
    let buf = '';
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buf += decoder.decode(chunk, { stream: true });
        let at: number;
        while ((at = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, at);
          buf = buf.slice(at + 2);
          let id: string | undefined;
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) comments.push(line.slice(1).trim());
            else if (line.startsWith('id: ')) id = line.slice(4);
            else if (line.startsWith('data: ')) data.push(line.slice(6));
          }
          if (data.length) events.push({ id, data: JSON.parse(data.join('\n')) });
        }
      }
    } catch {
      // aborted by close()
    }
    ended = true;
  })();
  return {
    res,
    events,
    comments,
    get ended() {
      return ended;
    },
    done,
    close: () => abort.abort(),
  };
}
