/**
 * The store's SQL uses SQLite's placeholders: positional `?`, or named `:name` / `@name`. PostgreSQL's protocol
 * knows only `$1…$n`. `rewrite` turns one into the other outside string literals, quoted identifiers, dollar
 * quotes and comments, leaving `::` casts alone; a name used twice is one parameter. Cached per SQL text.
 * So a `?` in the store's SQL is always a parameter: use jsonb_exists() and friends, never the jsonb `?` operators.
 */

export interface Rewritten {
  /** The SQL with $n placeholders. */
  text: string;
  /** 'positional': `?` in order; 'named': the names of $1…$n. */
  kind: 'positional' | 'named' | 'none';
  names: string[];
  /** How many `?` there were (positional). */
  count: number;
}

const cache = new Map<string, Rewritten>();
const CACHE_MAX = 2000;

const isIdentStart = (c: string | undefined) => c !== undefined && /[A-Za-z_]/.test(c);
const isIdent = (c: string | undefined) => c !== undefined && /[A-Za-z0-9_]/.test(c);

export function rewrite(sql: string): Rewritten {
  const hit = cache.get(sql);
  if (hit) return hit;
  const r = scan(sql);
  if (cache.size >= CACHE_MAX) cache.clear();
  cache.set(sql, r);
  return r;
}

function scan(sql: string): Rewritten {
  let out = '';
  const names: string[] = [];
  const index = new Map<string, number>();
  let count = 0;
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql[i]!;
    const next = sql[i + 1];
    // -- comment to the end of the line
    if (c === '-' && next === '-') {
      const end = sql.indexOf('\n', i);
      const stop = end < 0 ? n : end;
      out += sql.slice(i, stop);
      i = stop;
      continue;
    }
    // /* comment */, nested as PostgreSQL nests them
    if (c === '/' && next === '*') {
      let depth = 0;
      let j = i;
      while (j < n) {
        if (sql[j] === '/' && sql[j + 1] === '*') {
          depth++;
          j += 2;
        } else if (sql[j] === '*' && sql[j + 1] === '/') {
          depth--;
          j += 2;
          if (depth === 0) break;
        } else j++;
      }
      out += sql.slice(i, j);
      i = j;
      continue;
    }
    // 'string' ('' escapes a quote; E'…' also takes backslash escapes) and "identifier"
    if (c === "'" || c === '"') {
      const backslash = c === "'" && i > 0 && /[eE]/.test(sql[i - 1]!) && !isIdent(sql[i - 2]);
      let j = i + 1;
      while (j < n) {
        if (backslash && sql[j] === '\\') {
          j += 2;
          continue;
        }
        if (sql[j] === c) {
          if (sql[j + 1] === c) {
            j += 2;
            continue;
          }
          j++;
          break;
        }
        j++;
      }
      out += sql.slice(i, j);
      i = j;
      continue;
    }
    // $tag$ … $tag$ (and $$ … $$); a $1 is a placeholder already written in PostgreSQL's style
    if (c === '$' && !isIdent(sql[i - 1])) {
      const m = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i, i + 66));
      if (m) {
        const tag = m[0];
        const end = sql.indexOf(tag, i + tag.length);
        const stop = end < 0 ? n : end + tag.length;
        out += sql.slice(i, stop);
        i = stop;
        continue;
      }
    }
    // :: is a cast
    if (c === ':' && next === ':') {
      out += '::';
      i += 2;
      continue;
    }
    if ((c === ':' || c === '@') && isIdentStart(next) && !isIdent(sql[i - 1])) {
      let j = i + 1;
      while (j < n && isIdent(sql[j])) j++;
      const name = sql.slice(i + 1, j);
      let k = index.get(name);
      if (k === undefined) {
        names.push(name);
        k = names.length;
        index.set(name, k);
      }
      out += `$${k}`;
      i = j;
      continue;
    }
    if (c === '?') {
      count++;
      out += `$${count}`;
      i++;
      continue;
    }
    out += c;
    i++;
  }
  if (names.length && count) throw new Error('SQL mixes positional (?) and named (:name) parameters');
  return { text: out, kind: names.length ? 'named' : count ? 'positional' : 'none', names, count };
}

/** The values for $1…$n from the caller's arguments (an array for `?`, an object for names). */
export function bind(r: Rewritten, args: readonly unknown[] | Readonly<Record<string, unknown>> | undefined): unknown[] {
  if (r.kind === 'none') {
    if (Array.isArray(args) && args.length) throw new Error(`the statement takes no parameters but was given ${args.length}`);
    return [];
  }
  if (r.kind === 'positional') {
    if (!Array.isArray(args)) throw new Error(`the statement takes ${r.count} positional (?) parameter(s); give them as an array`);
    if (args.length !== r.count) throw new Error(`the statement takes ${r.count} positional parameter(s) but was given ${args.length}`);
    return args.map(value);
  }
  if (!args || Array.isArray(args)) throw new Error(`the statement takes named parameters (${r.names.map((x) => `:${x}`).join(', ')}); give them as an object`);
  const obj = args as Readonly<Record<string, unknown>>;
  return r.names.map((name) => {
    if (!Object.prototype.hasOwnProperty.call(obj, name)) throw new Error(`missing named parameter :${name}`);
    return value(obj[name]);
  });
}

/** undefined binds as NULL; a boolean as 1/0 (as SQLite stores it); a bigint as its decimal text. */
function value(v: unknown): unknown {
  if (v === undefined) return null;
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v === 'bigint') return v.toString();
  return v;
}
