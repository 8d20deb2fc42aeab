import { Chalk, type ChalkInstance } from 'chalk';
import type { AgentView } from '../core/agents.js';
import { iso } from '../core/duration.js';
import type { AgentState } from '../store/rows.js';

// The colour-free helpers live in format.ts (commands that print JSON or plugin lines load only that).
export { lastSeen, oneLine, plural, summaryLine } from './format.js';

/** A chalk that colours only when `enabled` (TTY, no NO_COLOR, no --no-color). */
export function painter(enabled: boolean): ChalkInstance {
  return new Chalk({ level: enabled ? 1 : 0 });
}

export function paintState(c: ChalkInstance, state: AgentState): string {
  switch (state) {
    case 'active':
      return c.green(state);
    case 'initializing':
      return c.cyan(state);
    case 'stale':
    case 'error':
      return c.yellow(state);
    case 'offline':
    case 'failed':
      return c.red(state);
    case 'maintenance':
      return c.blue(state);
  }
}

/** An agent as the JSON outputs give it: the view plus ISO times and the seconds seed 003 uses. */
export function agentJson(a: AgentView) {
  return {
    ...a,
    lastHeartbeat: iso(a.lastHeartbeatAt),
    stateSinceIso: iso(a.stateSince),
    secondsSinceHeartbeat: a.heartbeatAgeMs === null ? null : Math.floor(a.heartbeatAgeMs / 1000),
  };
}

// ---- columns ----

// East Asian wide and fullwidth ranges, and the emoji blocks terminals draw two cells wide.
const WIDE: [number, number][] = [
  [0x1100, 0x115f], [0x231a, 0x231b], [0x2329, 0x232a], [0x23e9, 0x23ec], [0x2e80, 0x303e], [0x3041, 0x33ff], [0x3400, 0x4dbf],
  [0x4e00, 0x9fff], [0xa000, 0xa4cf], [0xa960, 0xa97f], [0xac00, 0xd7a3], [0xf900, 0xfaff], [0xfe10, 0xfe19], [0xfe30, 0xfe6f],
  [0xff00, 0xff60], [0xffe0, 0xffe6], [0x1f300, 0x1f64f], [0x1f900, 0x1f9ff], [0x20000, 0x3fffd],
];
// Combining marks: drawn over the character before them.
const ZERO: [number, number][] = [[0x0300, 0x036f], [0x0483, 0x0489], [0x0591, 0x05bd], [0x1ab0, 0x1aff], [0x1dc0, 0x1dff], [0x20d0, 0x20ff], [0xfe00, 0xfe0f], [0xfe20, 0xfe2f]];
const inRanges = (cp: number, ranges: [number, number][]) => ranges.some(([lo, hi]) => cp >= lo && cp <= hi);
// eslint-disable-next-line no-control-regex
const PLAIN = /^[\x20-\x7e]*$/;

/** How many terminal cells `s` takes (text already made safe: no control characters or colour codes). */
export function visibleWidth(s: string): number {
  if (PLAIN.test(s)) return s.length;
  let w = 0;
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    w += inRanges(cp, ZERO) ? 0 : inRanges(cp, WIDE) ? 2 : 1;
  }
  return w;
}

/**
 * A borderless table for a terminal, built in two steps so that it costs what the rows cost: `add` keeps each
 * row's cells as plain text and widens the columns once per cell; `lines` then gives the rendered lines one at a
 * time (two spaces between columns, no trailing blanks), each cell painted by its column's painter after it is
 * measured, so colour codes never count towards a width.
 */
export class Columns {
  private readonly rows: string[][] = [];
  private readonly widths: number[];

  constructor(
    private readonly head: string[],
    private readonly paint: (((cell: string, row: string[]) => string) | undefined)[] = [],
  ) {
    this.widths = head.map(visibleWidth);
  }

  add(cells: string[]): void {
    for (let i = 0; i < cells.length; i++) {
      const w = visibleWidth(cells[i]!);
      if (w > this.widths[i]!) this.widths[i] = w;
    }
    this.rows.push(cells);
  }

  get size(): number {
    return this.rows.length;
  }

  /** The head (painted by `headPaint`) and then each row, as lines without a newline. */
  *lines(headPaint: (s: string) => string = (s) => s): Generator<string> {
    yield this.line(this.head, (s) => headPaint(s));
    for (const r of this.rows) yield this.line(r, (s, i) => (this.paint[i] ? this.paint[i]!(s, r) : s));
  }

  private line(cells: string[], paint: (s: string, i: number) => string): string {
    let out = '';
    for (let i = 0; i < cells.length; i++) {
      const cell = cells[i]!;
      out += (cell ? paint(cell, i) : '') + (i < cells.length - 1 ? ' '.repeat(this.widths[i]! - visibleWidth(cell) + 2) : '');
    }
    return out.trimEnd();
  }
}
