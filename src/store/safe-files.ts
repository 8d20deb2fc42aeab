import { closeSync, constants, fstatSync, lstatSync, mkdirSync, openSync, readSync, renameSync, rmdirSync, statSync, unlinkSync, writeSync, type Stats } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { OperationError, UnsafePathError } from '../errors.js';

/**
 * The one way agentctl opens the files it keeps beside the database (lock owner files, health logs, backups, map and
 * metrics outputs, restart logs). The health loop often runs as root in a directory other users may write, so a path
 * there may have been planted: a symlink to /etc/shadow, a hard link to a root-owned file, a directory made by
 * someone else. Nothing here follows a symlink in the last component, new files are created with O_EXCL, every
 * opened file is checked on its descriptor (regular, one link, a trusted owner), and no mode grants group or other
 * write.
 */

const { O_WRONLY, O_RDONLY, O_CREAT, O_EXCL, O_APPEND, O_NOFOLLOW, O_DIRECTORY } = constants;

/** Modes for files and directories beside a database: its read bits and owner write, never group or other write. */
export interface BesideModes {
  file: number;
  dir: number;
}

/** The modes for what agentctl creates beside `dbPath`: as readable as the database, never more writable (0640 if it is missing). */
export function besideModes(dbPath: string): BesideModes {
  let mode = 0o640;
  try {
    mode = (statSync(dbPath).mode & 0o644) | 0o600;
  } catch {
    // not created yet: the default
  }
  return { file: mode, dir: mode | ((mode & 0o444) >> 2) };
}

/** The uids whose files beside `dbPath` are trusted: this process's, root's and the database file's owner's. */
export function trustedUids(dbPath: string): Set<number> {
  const uids = new Set<number>([0, euid()]);
  try {
    uids.add(statSync(dbPath).uid);
  } catch {
    // no database yet: only root and ourselves
  }
  return uids;
}

/** This process's effective uid (-1 where there are no uids). */
export function euid(): number {
  return process.geteuid?.() ?? -1;
}

function code(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code;
}

/**
 * Who may own an entry of the directory `dir` that agentctl uses: root, this process, and the owner of `dir` (who
 * could replace anything in it anyway).
 */
function ownersTrustedIn(dir: string): Set<number> {
  const ok = new Set([0, euid()]);
  try {
    ok.add(statSync(dir).uid);
  } catch {
    // no directory to ask
  }
  return ok;
}

/** A symlink's owner, for messages: "a symlink owned by uid 65534". */
function describeEntry(st: Stats): string {
  const kind = st.isSymbolicLink() ? 'a symlink' : st.isDirectory() ? 'a directory' : st.isFile() ? 'a file' : 'a special file';
  return `${kind} owned by uid ${st.uid}`;
}

/**
 * Checks an opened descriptor: a regular file with one link, owned by a trusted uid (this process, root, or the owner
 * of the directory it is in, who could replace it anyway). Closes `fd` and throws UnsafePathError otherwise.
 */
function checkOpenedFile(fd: number, path: string, shown = path): Stats {
  const st = fstatSync(fd);
  let why: string | null = null;
  if (!st.isFile()) why = 'it is not a regular file';
  else if (st.nlink > 1) why = `it has ${st.nlink} hard links (it may be another file's second name); remove it`;
  else if (!ownersTrustedIn(dirname(path)).has(st.uid)) why = `it is owned by uid ${st.uid}, which agentctl does not write for; remove it`;
  if (why) {
    closeSync(fd);
    throw new UnsafePathError(shown, why);
  }
  return st;
}

/**
 * Turns a failed open into a clear error: a symlink is refused as such (ELOOP from O_NOFOLLOW, or EACCES when the
 * kernel's protected_regular/protected_symlinks stopped it first in a sticky directory), the rest is said in words.
 */
function openFailed(err: unknown, path: string, shown = path): Error {
  const c = code(err);
  if (c === 'ELOOP' || c === 'EMLINK' || c === 'EACCES' || c === 'EPERM') {
    const st = lstatOrNull(path);
    if (st?.isSymbolicLink()) return new UnsafePathError(shown, `it is ${describeEntry(st)}; agentctl never writes through one: remove it`, { cause: err });
    if (st && st.uid !== euid()) return new UnsafePathError(shown, `it is ${describeEntry(st)}, and cannot be opened (${c}): remove it`, { cause: err });
  }
  return fileError(err, shown);
}

/** An fs error on `path` as one line saying what to do; ENOSPC is the full disk. */
export function fileError(err: unknown, path: string, doing = 'write'): Error {
  if (err instanceof OperationError) return err;
  const c = code(err);
  const why =
    c === 'ENOSPC' || c === 'EDQUOT' ? `the disk is full (${c}); free space on the filesystem of ${dirname(path)} and try again`
    : c === 'ENOENT' ? `its directory ${dirname(path)} does not exist`
    : c === 'EACCES' || c === 'EPERM' ? `no permission to ${doing} in ${dirname(path)}`
    : c === 'EISDIR' ? 'it is a directory'
    : c === 'EROFS' ? 'the filesystem is read-only'
    : (err as Error)?.message ?? String(err);
  return new OperationError(`cannot ${doing} ${path}: ${why}`, { cause: err, code: c === 'ENOSPC' || c === 'EDQUOT' ? 'E_FULL' : 'E_IO' });
}

/**
 * Makes sure `dir` is a directory agentctl may write in: created (with `mode`, parents included) if missing; an
 * existing one must be a real directory or a symlink owned by root or this process, and belong to root, this
 * process or the owner of its parent. A directory planted by another user is refused.
 */
export function ensureDir(dir: string, mode = 0o750): void {
  try {
    mkdirSync(dir, { recursive: true, mode });
  } catch (err) {
    if (code(err) !== 'EEXIST') throw fileError(err, dir, 'create the directory');
  }
  let st = lstatSync(dir);
  if (st.isSymbolicLink()) {
    if (st.uid !== 0 && st.uid !== euid()) throw new UnsafePathError(dir, `it is ${describeEntry(st)}; agentctl follows only its own or root's: remove it`);
    st = statSync(dir);
  }
  if (!st.isDirectory()) throw new UnsafePathError(dir, `it is ${describeEntry(st)}, not a directory`);
  if (!ownersTrustedIn(dirname(dir)).has(st.uid)) throw new UnsafePathError(dir, `the directory belongs to uid ${st.uid}, not to root, this user or the owner of ${dirname(dir)}: remove it or choose another directory`);
}

/**
 * Opens `path` for appending without following a symlink, creating it with `mode` if missing. The file must be a
 * regular file with one link and a trusted owner (see checkOpenedFile); its descriptor is returned. `shown` is the
 * path named in errors (when `path` goes through a pinned directory).
 */
export function openAppend(path: string, mode = 0o640, shown = path): number {
  let fd: number;
  try {
    fd = openSync(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW, mode);
  } catch (err) {
    throw openFailed(err, path, shown);
  }
  checkOpenedFile(fd, path, shown);
  return fd;
}

/** A directory held open, so that the files in it are found in that directory even if its path is swapped later. */
export interface PinnedDir {
  path: string;
  fd: number;
  /** The path by which `name` in this very directory is opened: through /proc/self/fd where there is one. */
  entry(name: string): string;
  close(): void;
}

/**
 * ensureDir, then holds the directory open. A name opened through `entry()` resolves in the directory that was
 * checked, not in whatever the path names by then: a directory swapped for a symlink between the check and the
 * open (by someone who can write its parent) does not redirect the write.
 */
export function pinDir(dir: string, mode = 0o750): PinnedDir {
  ensureDir(dir, mode);
  let fd: number;
  try {
    fd = openSync(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  } catch (err) {
    // A symlink ensureDir accepted (root's or our own): follow it once, then check what it led to.
    if (code(err) !== 'ELOOP' && code(err) !== 'ENOTDIR') throw fileError(err, dir, 'open the directory');
    fd = openSync(dir, O_RDONLY | O_DIRECTORY);
  }
  const st = fstatSync(fd);
  if (!st.isDirectory() || !ownersTrustedIn(dirname(dir)).has(st.uid)) {
    closeSync(fd);
    throw new UnsafePathError(dir, `it changed while it was checked (now owned by uid ${st.uid}): remove it or choose another directory`);
  }
  const viaProc = lstatOrNull(`/proc/self/fd/${fd}`) !== null;
  return {
    path: dir,
    fd,
    entry: (name) => (viaProc ? `/proc/self/fd/${fd}/${name}` : join(dir, name)),
    close: () => closeSync(fd),
  };
}

/**
 * Replaces `path` with `data` atomically: written to a new temporary file beside it (O_EXCL), then renamed over it.
 * A reader never sees half a file, and a symlink planted at `path` is replaced, never written through.
 */
export function replaceFile(path: string, data: string | Buffer, mode = 0o644): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let fd: number | null = null;
  try {
    fd = openSync(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode);
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off, buf.length - off);
    closeSync(fd);
    fd = null;
    renameSync(tmp, path);
  } catch (err) {
    if (fd !== null) closeSync(fd);
    removeEntry(tmp);
    // Name the file asked for, not the temporary one beside it that the system call saw.
    throw fileError(err, path);
  }
}

/** A file read without following a symlink: its text and owner, or why it could not be trusted. */
export type NoFollowRead = { text: string; uid: number; mtimeMs: number } | { refused: string } | null;

/** Reads a small file without following a symlink; null if it is missing, `{ refused }` if it is not a plain file. */
export function readNoFollow(path: string, maxBytes = 64 * 1024): NoFollowRead {
  let fd: number;
  try {
    fd = openSync(path, O_RDONLY | O_NOFOLLOW);
  } catch (err) {
    const c = code(err);
    if (c === 'ENOENT') return null;
    if (c === 'ELOOP' || c === 'EMLINK') {
      let who = 'a symlink';
      try {
        who = describeEntry(lstatSync(path));
      } catch {
        // gone meanwhile
      }
      return { refused: `${path} is ${who}; agentctl never follows one` };
    }
    return { refused: `${path} cannot be read (${(err as Error).message})` };
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return { refused: `${path} is not a regular file` };
    const buf = Buffer.alloc(Math.min(st.size, maxBytes));
    const n = readSync(fd, buf, 0, buf.length, 0);
    return { text: buf.subarray(0, n).toString('utf8'), uid: st.uid, mtimeMs: st.mtimeMs };
  } finally {
    closeSync(fd);
  }
}

/**
 * Removes one entry without following it: a symlink or file is unlinked, a directory removed only if empty (never
 * recursively: a tree another user controls could be swapped under a recursive removal). Missing is fine.
 * Returns false when a directory was not empty.
 */
export function removeEntry(path: string): boolean {
  let st: Stats;
  try {
    st = lstatSync(path);
  } catch {
    return true;
  }
  try {
    if (st.isDirectory()) rmdirSync(path);
    else unlinkSync(path);
    return true;
  } catch (err) {
    const c = code(err);
    if (c === 'ENOENT') return true;
    if (c === 'ENOTEMPTY' || c === 'EEXIST') return false;
    throw fileError(err, path, 'remove');
  }
}

/** lstat, or null when the path does not exist. */
export function lstatOrNull(path: string): Stats | null {
  try {
    return lstatSync(path);
  } catch {
    return null;
  }
}
