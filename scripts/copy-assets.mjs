// Copies the non-TypeScript files the compiled code reads at run time (SQL migrations, JSON schemas) into dist/.
import { cpSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
for (const dir of ['store/migrations', 'store/postgres/migrations', 'schemas']) {
  const from = join(root, 'src', dir);
  if (existsSync(from)) cpSync(from, join(root, 'dist', dir), { recursive: true });
}
