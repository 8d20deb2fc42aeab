import { UsageError } from '../errors.js';

/** Agent and group names: 1–128 characters from letters, digits and `. _ - : @`, starting with a letter or digit. The schema's CHECK enforces the same. */
export const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;
export const GROUP_MAX = 64;
/** Longest status message, in characters. */
export const MESSAGE_MAX = 1024;
/** Largest metadata object, as stored JSON text, in bytes. */
export const METADATA_MAX = 16_384;
/** Deepest nesting of objects and arrays in metadata (the object itself is level 1). */
export const METADATA_DEPTH_MAX = 32;
/** Shortest heartbeat interval a command line accepts (`--interval`), in ms. */
export const CLI_INTERVAL_MIN_MS = 100;
/** Largest command payload, in bytes. */
export const PAYLOAD_MAX = 65_536;

export const REPORTED_STATUSES = ['ok', 'busy', 'error'] as const;
export type ReportedStatus = (typeof REPORTED_STATUSES)[number];

/** Throws UsageError unless `name` is a valid agent name. */
export function validateName(name: unknown, what = 'agent name'): string {
  if (typeof name !== 'string' || !NAME_RE.test(name)) {
    const shown = typeof name === 'string' ? JSON.stringify(name.length > 40 ? `${name.slice(0, 40)}…` : name) : String(name);
    throw new UsageError(`invalid ${what} ${shown}: use 1-128 letters, digits, '.', '_', '-', ':' or '@', starting with a letter or digit`);
  }
  return name;
}

/** Throws UsageError unless `group` is a valid group name (the agent-name alphabet, at most 64 characters). */
export function validateGroup(group: string): string {
  validateName(group, 'group');
  if (group.length > GROUP_MAX) throw new UsageError(`invalid group '${group.slice(0, 40)}…': at most ${GROUP_MAX} characters`);
  return group;
}

export function validateMessage(message: string): string {
  if (message.length > MESSAGE_MAX) throw new UsageError(`message too long: ${message.length} characters, the limit is ${MESSAGE_MAX}`);
  return message;
}

export function validateReportedStatus(status: string): ReportedStatus {
  if (!(REPORTED_STATUSES as readonly string[]).includes(status)) {
    throw new UsageError(`invalid status '${status}': use one of ${REPORTED_STATUSES.join(', ')}`);
  }
  return status as ReportedStatus;
}

/** Parses metadata given as JSON text: must be a JSON object within METADATA_MAX bytes. Returns the compact JSON text. */
export function parseMetadata(text: string, what = '--meta'): string {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`invalid JSON in ${what}: ${(err as Error).message}`);
  }
  return validateMetadata(value, what);
}

/** Checks a metadata value (a plain JSON object within METADATA_MAX bytes) and returns its compact JSON text. */
export function validateMetadata(value: unknown, what = 'metadata'): string {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new UsageError(`invalid ${what}: must be a JSON object, like '{"region":"eu"}'`);
  }
  const depth = nestingDepth(value, METADATA_DEPTH_MAX);
  if (depth > METADATA_DEPTH_MAX) throw new UsageError(`${what} nested too deeply: more than ${METADATA_DEPTH_MAX} levels of objects and arrays, the limit is ${METADATA_DEPTH_MAX}`);
  const json = JSON.stringify(value);
  const bytes = Buffer.byteLength(json);
  if (bytes > METADATA_MAX) throw new UsageError(`${what} too large: ${bytes} bytes, the limit is ${METADATA_MAX}`);
  return json;
}

/** The largest pid Linux hands out (pid_max can be raised to 2^22). */
export const PID_MAX = 4_194_304;

/**
 * Throws UsageError unless `pid` can name one agent process: a whole number above 1 (kill(2) reads 0 and 1, as
 * groups, as "my own group" and "every process"). With `self` (a CLI, whose own process is gone in a moment), also
 * not that process and not the leader of its own process group. Returns the pid.
 */
export function validatePid(pid: number, what = 'pid', self?: { pid: number; group: number | null }): number {
  if (!Number.isSafeInteger(pid) || pid < 0 || pid > PID_MAX) throw new UsageError(`invalid ${what} ${pid}: must be a whole number between 2 and ${PID_MAX}`);
  if (pid <= 1) throw new UsageError(`invalid ${what} ${pid}: ${pid === 1 ? 'pid 1 is init, and as a group it means every process' : 'pid 0 means the caller\'s own process group'}; give the agent's own pid`);
  if (self && pid === self.pid) throw new UsageError(`invalid ${what} ${pid}: that is this agentctl process; give the agent's own pid`);
  if (self && pid === self.group) throw new UsageError(`invalid ${what} ${pid}: it leads agentctl's own process group; give the agent's own pid, or start the agent with 'agentctl run'`);
  return pid;
}

/**
 * How deeply `value` nests objects and arrays (a scalar is 0, `{}` is 1), counted without recursion so that no input
 * can overflow the stack; stops counting once past `limit` (so a cycle, or a 10,000-deep value, costs little).
 */
export function nestingDepth(value: unknown, limit: number): number {
  let deepest = 0;
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    deepest = Math.max(deepest, depth);
    if (depth > limit) return deepest;
    for (const child of Array.isArray(v) ? v : Object.values(v)) if (child !== null && typeof child === 'object') stack.push([child, depth + 1]);
  }
  return deepest;
}

/** Parses a non-negative integer flag (progress counters, limits). */
export function parseCount(text: string, what: string, opts: { min?: number; max?: number } = {}): number {
  const min = opts.min ?? 0;
  const max = opts.max ?? Number.MAX_SAFE_INTEGER;
  if (!/^-?\d+$/.test(String(text).trim())) throw new UsageError(`invalid ${what} '${text}': must be a whole number`);
  const n = Number(text);
  if (!Number.isSafeInteger(n) && n > 0) {
    throw new UsageError(`invalid ${what} '${text}': too large, at most ${max === Number.MAX_SAFE_INTEGER ? `${max} (the largest integer kept exactly)` : max}`);
  }
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`invalid ${what} '${text}': must be ${max === Number.MAX_SAFE_INTEGER ? `at least ${min}` : `between ${min} and ${max}`}`);
  }
  return n;
}

/** Checks a heartbeat interval given on the command line: at least CLI_INTERVAL_MIN_MS. */
export function validateCliInterval(ms: number, what = '--interval'): number {
  if (ms < CLI_INTERVAL_MIN_MS) throw new UsageError(`invalid ${what}: ${ms}ms is shorter than the ${CLI_INTERVAL_MIN_MS}ms minimum (a heartbeat that often would spend the agent on writes)`);
  return ms;
}

/** Parses a positive number (multipliers, factors). */
export function parsePositiveNumber(text: string, what: string, min = 0): number {
  const n = Number(String(text).trim());
  if (String(text).trim() === '' || !Number.isFinite(n) || n < min || (min === 0 && n === 0)) {
    throw new UsageError(`invalid ${what} '${text}': must be a number ${min === 0 ? 'above 0' : `of at least ${min}`}`);
  }
  return n;
}

/** Parses a comma-separated flag value whose words must come from `allowed`; at least one. Errors name `flag`. */
export function parseList<T extends string>(text: string, allowed: readonly T[], flag: string, what = 'state'): T[] {
  const words = text.split(',').map((s) => s.trim()).filter(Boolean);
  for (const w of words) if (!(allowed as readonly string[]).includes(w)) throw new UsageError(`invalid ${what} '${w}' in ${flag}: use ${allowed.join(', ')}`);
  if (!words.length) throw new UsageError(`${flag} needs at least one ${what}`);
  return words as T[];
}
