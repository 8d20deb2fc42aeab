/**
 * Text that came from agents (messages, metadata, groups, reasons, names in foreign rows) is untrusted: a
 * terminal obeys escape sequences, a newline forges a line, a bidirectional override reverses what follows.
 * Everything printed for people goes through `safeText`; JSON output stays exact (JSON escapes on its own).
 */

// C0 controls (tab and newline included: one field never spans lines), DEL, C1 controls, and the Unicode
// format characters that reorder or hide text: bidi embeddings, overrides and isolates, the line and paragraph
// separators, and the zero-width marks around them.
// eslint-disable-next-line no-control-regex
const UNSAFE_CLASS = '[\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200b-\\u200f\\u2028-\\u202e\\u2066-\\u2069\\ufeff]';
const UNSAFE_ALL = new RegExp(UNSAFE_CLASS, 'g');
const UNSAFE_ANY = new RegExp(UNSAFE_CLASS);

function escapeChar(ch: string): string {
  const code = ch.charCodeAt(0);
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

/** `s` with every control, DEL, C1 and bidi/format character shown escaped (`\x1b`, `\u202e`); null and undefined as ''. */
export function safeText(s: string | null | undefined): string {
  if (s === null || s === undefined) return '';
  return UNSAFE_ANY.test(s) ? s.replace(UNSAFE_ALL, escapeChar) : s;
}

/** Whether `s` holds anything `safeText` would escape. */
export function hasUnsafeText(s: string): boolean {
  return UNSAFE_ANY.test(s);
}

/**
 * `s` made safe for a monitoring-plugin line: escaped as `safeText` does, and `|` (which starts performance data)
 * shown as `\x7c`, so agent text can neither add performance data nor split the one line.
 */
export function pluginText(s: string | null | undefined): string {
  return safeText(s).replace(/\|/g, '\\x7c');
}

/**
 * `s` for an environment variable: NUL and the other controls (which an environment value cannot hold, or which
 * a shell script would trip over) replaced by a space. The exact text stays in the JSON on the command's stdin.
 */
export function envText(s: string | null | undefined): string {
  if (s === null || s === undefined) return '';
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ');
}
