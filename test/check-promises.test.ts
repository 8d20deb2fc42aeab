import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, tempDir } from './helpers.js';

/** Runs the Promise checker over one file of `source`; its output and exit code. */
function check(source: string): { status: number | null; out: string } {
  const dir = tempDir();
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { strict: true, target: 'ES2022', lib: ['ES2022'], types: [], noEmit: true }, include: ['code.ts'] }));
  writeFileSync(join(dir, 'code.ts'), source);
  const r = spawnSync(process.execPath, [join(ROOT, 'scripts', 'check-promises.mjs'), join(dir, 'tsconfig.json')], { encoding: 'utf8' });
  return { status: r.status, out: r.stdout + r.stderr };
}

const PRELUDE = 'async function write(): Promise<boolean> { return true; }\nlet maybe: Promise<void> | undefined;\n';

describe('the Promise checker of the typecheck', () => {
  it('reports a Promise left floating as a statement, and one tested as a condition', () => {
    const r = check(`${PRELUDE}export async function f() {\n  write();\n  if (write()) return 1;\n  [1].forEach(async () => { await write(); });\n  return write() ? 2 : 3;\n}\n`);
    expect(r.status).toBe(1);
    expect(r.out).toContain('code.ts:6:15: an async callback to forEach');
    expect(r.out).toContain('code.ts:4:3: a Promise neither awaited, returned nor void-ed: write();');
    expect(r.out).toContain('code.ts:5:7: a Promise tested as a condition');
    expect(r.out).toContain('code.ts:7:10: a Promise tested as a condition');
  });

  it('accepts a Promise awaited, returned, void-ed or kept, and a test of whether there is one', () => {
    const r = check(`${PRELUDE}export async function f(given?: Promise<void>) {\n  await write();\n  void write();\n  maybe = write().then(() => undefined);\n  if (given) await given;\n  if (await write()) return write();\n  return undefined;\n}\n`);
    expect(r.out).toBe('');
    expect(r.status).toBe(0);
  });
});
