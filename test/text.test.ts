import { describe, expect, it } from 'vitest';
import { envText, hasUnsafeText, pluginText, safeText } from '../src/core/text.js';

describe('text from agents', () => {
  it('shows terminal escapes, controls, DEL, C1 and bidi overrides escaped, and leaves ordinary text alone', () => {
    expect(safeText('\x1b[2J\x1b]0;pwned\x07FAKE OK')).toBe('\\x1b[2J\\x1b]0;pwned\\x07FAKE OK');
    expect(safeText('a\nb\r\tc\x7f\x9b')).toBe('a\\x0ab\\x0d\\x09c\\x7f\\x9b');
    expect(safeText('abc \u202edcba')).toBe('abc \\u202edcba');
    expect(safeText('\u2066x\u2069 \u200f \u2028')).toBe('\\u2066x\\u2069 \\u200f \\u2028');
    expect(safeText('naïve — 日本 ✓ émoji 😀')).toBe('naïve — 日本 ✓ émoji 😀');
    expect(safeText(null)).toBe('');
    // The same call twice gives the same answer (no regex state carried between calls).
    expect(hasUnsafeText('a\x1b')).toBe(true);
    expect(hasUnsafeText('a\x1b')).toBe(true);
    expect(hasUnsafeText('plain')).toBe(false);
  });

  it('keeps a plugin line one line with no performance data from agent text', () => {
    const s = pluginText('queue down | fake=999;1;2\nSECOND LINE');
    expect(s).not.toContain('|');
    expect(s).not.toContain('\n');
    expect(s).toBe('queue down \\x7c fake=999;1;2\\x0aSECOND LINE');
  });

  it('gives an environment value no NUL or control character', () => {
    expect(envText('a\0b\nc\x1bd')).toBe('a b c d');
    expect(envText('ünïcode ok')).toBe('ünïcode ok');
  });
});
