// Copies the non-TypeScript files the compiled code reads at run time (SQL migrations, JSON schemas, the dashboard's
// HTML, CSS and icon) into dist/.
import { cpSync, existsSync, mkdirSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
for (const dir of ['store/sqlite/migrations', 'store/postgres/migrations', 'schemas']) {
  const from = join(root, 'src', dir);
  if (existsSync(from)) cpSync(from, join(root, 'dist', dir), { recursive: true });
}
// The dashboard's scripts are compiled by tsconfig.web.json; its static files are copied beside them.
const web = join(root, 'src', 'web');
mkdirSync(join(root, 'dist', 'web'), { recursive: true });
for (const f of readdirSync(web)) if (/\.(html|css|svg)$/.test(f)) cpSync(join(web, f), join(root, 'dist', 'web', f));
