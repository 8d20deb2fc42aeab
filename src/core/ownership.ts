import { spawnSync } from 'node:child_process';
import { isPostgresUrl } from '../store/engine.js';
import { redactUrl } from './redact.js';
import { type Stats, lstatSync, realpathSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { AgentctlError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';

/**
 * Who may act for a database. A row is data that anyone who can write the file could have written, so agentctl
 * never does more than the file's owner could: running as root on a database owned by another uid, it runs launch
 * commands as that owner (uid, primary gid, the owner's supplementary groups) and signals only that owner's
 * processes. Not root, it acts as itself and signals only its own processes. Strict mode (like sshd's StrictModes):
 * root refuses to act at all for a database that anyone but its owner may write.
 */
export interface Ownership {
  /** The database file as given, and the real file it names. */
  path: string;
  realPath: string;
  /** The owner of the database file. */
  owner: { uid: number; gid: number };
  /** Whether this process runs as root (effective uid 0). */
  root: boolean;
  /** The uid whose processes may be signalled: the owner's when root, else our own. */
  uid: number;
  /** Whom launch commands run as, when that is not ourselves (root on a database owned by another uid); else null. */
  runAs: RunAs | null;
  /** Who besides the owner may change the file or its directory, one phrase each (empty: nobody). */
  writableBy: string[];
}

/** A user to run a command as: uid, primary gid, and (when the uid has an entry in the user database) its name and home. */
export interface RunAs {
  uid: number;
  gid: number;
  user: string | null;
  home: string | null;
  shell: string | null;
}

/** Root refused to act for a database that others may write (strict mode); the message says how to fix it. */
export class SharedDatabaseError extends AgentctlError {
  readonly path: string;
  readonly writableBy: string[];
  constructor(o: Ownership, what: string) {
    const dir = dirname(o.realPath);
    const fix = isPostgresUrl(o.realPath)
      ? 'run it as the agents\' own user instead of root'
      : `give it a directory of its own that only its owner may write (chown OWNER ${dir} ${o.realPath}; chmod go-w ${dir} ${o.realPath})`;
    super(
      'E_SHARED_DB',
      ExitCode.FAILED,
      `refusing to ${what} as root for database ${o.path}: ${o.writableBy[0]}, so anyone who can write it could have written its rows; ` +
        `${fix}, or pass --allow-shared-db (AGENTCTL_ALLOW_SHARED_DB=1) to accept that risk`,
    );
    this.path = o.path;
    this.writableBy = o.writableBy;
  }
}

/** Reads who owns the database at `path` (which must exist) and who else may write it. */
export function databaseOwnership(path: string): Ownership {
  if (isPostgresUrl(path)) {
    // No file: whoever has the database's credentials writes its rows, so root treats it as shared (strict mode).
    const root = process.geteuid?.() === 0;
    const self = process.getuid?.() ?? -1;
    return {
      path: redactUrl(path),
      realPath: redactUrl(path),
      owner: { uid: self, gid: process.getgid?.() ?? -1 },
      root,
      uid: self,
      runAs: null,
      writableBy: root ? ['it is a PostgreSQL database, written by anyone with its credentials'] : [],
    };
  }
  const realPath = realpathSync(path);
  const st = statSync(realPath);
  const owner = { uid: st.uid, gid: st.gid };
  const root = process.geteuid?.() === 0;
  const self = process.getuid?.() ?? -1;
  const uid = root ? owner.uid : self;
  return {
    path,
    realPath,
    owner,
    root,
    uid,
    runAs: root && owner.uid !== 0 ? userOf(owner.uid, owner.gid) : null,
    writableBy: writers(path, realPath, st),
  };
}

/**
 * Throws SharedDatabaseError when root may not `what` (run launch commands, signal processes) for this database:
 * strict mode, unless `allowShared` (--allow-shared-db, AGENTCTL_ALLOW_SHARED_DB). Not root: never throws.
 */
export function assertMayAct(o: Ownership, what: string, allowShared: boolean): void {
  if (o.root && o.writableBy.length && !allowShared) throw new SharedDatabaseError(o, what);
}

/**
 * Who besides the owner may write the database file, replace it in its directory, or replace a directory above it.
 * The file and its directory: no group or other write bit, sticky or not (in a sticky directory others may still
 * plant the files beside the database), owned by the owner or root. Directories above: owned by root or the owner,
 * writable by others only when sticky (then nobody else may rename what is in them). A symlink given as the path
 * counts with its own directory.
 */
function writers(path: string, realPath: string, st: Stats): string[] {
  const found: string[] = [];
  const owners = new Set([0, st.uid]);
  const check = (p: string, s: Stats, what: string, stickyOk: boolean) => {
    const mode = s.mode & 0o7777;
    const shown = `${what} ${p} (mode ${mode.toString(8).padStart(4, '0')})`;
    if (!owners.has(s.uid)) found.push(`${shown} is owned by uid ${s.uid}, not by the database's owner or root`);
    else if (mode & 0o022 && !(stickyOk && mode & 0o1000)) found.push(`${shown} is writable by ${mode & 0o002 ? 'others' : `its group (gid ${s.gid})`}`);
  };
  check(realPath, st, 'the database file', false);
  const dirs = [dirname(realPath)];
  const given = resolve(path);
  if (given !== realPath && lstatSafe(given)?.isSymbolicLink()) dirs.push(realpathSafe(dirname(given)));
  for (const d of dirs) {
    const s = statSafe(d);
    if (s) check(d, s, 'its directory', false);
    for (let up = dirname(d); ; up = dirname(up)) {
      const u = statSafe(up);
      if (u) check(up, u, 'the directory', true);
      if (up === dirname(up)) break;
    }
  }
  return [...new Set(found)];
}

/**
 * The user database entry of `uid` (through NSS, as `getent passwd` reads it), or just the ids when there is none.
 * Read once per command, before anything is launched.
 */
function userOf(uid: number, gid: number): RunAs {
  const r = spawnSync('getent', ['passwd', String(uid)], { encoding: 'utf8', timeout: 10_000 });
  const f = r.status === 0 ? r.stdout.trim().split('\n')[0]!.split(':') : [];
  return f.length >= 7 ? { uid, gid, user: f[0]!, home: f[5]!, shell: f[6]! } : { uid, gid, user: null, home: null, shell: null };
}

/**
 * What of root's environment a command run as the owner gets: the path, locale, time zone and terminal, and
 * agentctl's own settings. Nothing else: root's environment may hold secrets the owner has no right to.
 */
const PASSED_ON = /^(PATH|LANG|LANGUAGE|LC_[A-Z_]+|TZ|TERM|NO_COLOR|AGENTCTL_[A-Z_]+|DATABASE_PATH|LOCK_TIMEOUT|RETRY_ATTEMPTS|BACKOFF_FACTOR|HEARTBEAT_INTERVAL|STALE_THRESHOLD|LOG_LEVEL)$/;

/**
 * The command line that runs `argv` as `who`, with its output appended to `logFile` (and `logDir` made) by that user,
 * never by root: `setpriv` (util-linux) sets the real, effective and saved uid and gid and the user's supplementary
 * groups (initgroups; none but the primary group for a uid without an entry), then a shell opens the log as the user
 * and executes the command, with the owner's HOME, USER, LOGNAME and SHELL and only PASSED_ON of our environment.
 * Node's own spawn({ uid, gid }) cannot set supplementary groups, and root opening a file
 * in the owner's directory could be led through a symlink the owner planted.
 */
export function commandAs(who: RunAs, argv: string[], logDir: string, logFile: string): { file: string; args: string[]; env: NodeJS.ProcessEnv } {
  const groups = who.user !== null ? '--init-groups' : '--clear-groups';
  const shell = 'mkdir -p -- "$1" && exec >>"$2" 2>&1 && shift 2 && exec "$@"';
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (PASSED_ON.test(k)) env[k] = v;
  Object.assign(env, { HOME: who.home ?? '/', LOGNAME: who.user ?? String(who.uid), USER: who.user ?? String(who.uid) });
  if (who.shell) env.SHELL = who.shell;
  return { file: 'setpriv', args: [`--reuid=${who.uid}`, `--regid=${who.gid}`, groups, '--', '/bin/sh', '-c', shell, 'sh', logDir, logFile, ...argv], env };
}

function statSafe(p: string): Stats | undefined {
  try {
    return statSync(p);
  } catch {
    return undefined;
  }
}

function lstatSafe(p: string): Stats | undefined {
  try {
    return lstatSync(p);
  } catch {
    return undefined;
  }
}

function realpathSafe(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}
