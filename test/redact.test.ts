import { describe, expect, it } from 'vitest';
import { redactUrl, redactUrls } from '../src/core/redact.js';

describe('credentials in URLs', () => {
  it.each([
    ['https://user:secret@hooks.example.org/a', 'https://user:***@hooks.example.org/a'],
    ['postgres://alice:pw@db.example.org:5432/agents', 'postgres://alice:***@db.example.org:5432/agents'],
    ['postgresql://alice@db.example.org/agents', 'postgresql://alice@db.example.org/agents'],
    ['https://ghp_TOKEN@example.org/x', 'https://***@example.org/x'],
    ['http://127.0.0.1:9/hook?token=abc&team=ops', 'http://127.0.0.1:9/hook?token=***&team=ops'],
    ['https://h.example/x?api_key=1&Signature=2&access_token=3&q=ok', 'https://h.example/x?api_key=***&Signature=***&access_token=***&q=ok'],
    ['https://hooks.example.org/plain?team=ops', 'https://hooks.example.org/plain?team=ops'],
    ['/var/lib/agents/agentctl.db', '/var/lib/agents/agentctl.db'],
  ])('%s is shown as %s', (url, shown) => {
    expect(redactUrl(url)).toBe(shown);
  });

  it('redacts a URL that does not parse, and URLs inside other text', () => {
    expect(redactUrl('http://alice:s3cret@[127.0.0.1/hook')).not.toContain('s3cret');
    expect(redactUrls("curl 'https://u:p4ss@h.example/x?token=t0k' failed; see http://h.example/ok")).toBe("curl 'https://u:***@h.example/x?token=***' failed; see http://h.example/ok");
  });
});
