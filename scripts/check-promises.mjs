// A Promise that nobody awaits is a silent bug: a heartbeat that "succeeds" before (or without) committing, an error
// nobody sees. This check, part of `npm run typecheck`, reports every expression statement whose value is a Promise
// and every condition that tests one (always true), unless it is awaited, returned, or explicitly discarded with
// `void`. Usage: node scripts/check-promises.mjs [tsconfig.json ...] (default: both of the project's).
import ts from 'typescript';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const configs = process.argv.slice(2).length ? process.argv.slice(2) : ['tsconfig.json', 'tsconfig.test.json'];

/**
 * Whether `type` is a Promise or any other thenable. A union counts if any member is one (`every`: only if all are,
 * for conditions, where `Promise | undefined` is a legitimate test of whether there is one).
 */
function isThenable(checker, type, every = false) {
  if (type.isUnion()) return every ? type.types.every((t) => isThenable(checker, t, true)) : type.types.some((t) => isThenable(checker, t));
  if (type.flags & (ts.TypeFlags.Any | ts.TypeFlags.Unknown | ts.TypeFlags.Never)) return false;
  const then = type.getProperty('then');
  if (!then) return false;
  const decl = then.valueDeclaration ?? then.declarations?.[0];
  if (!decl) return false;
  const thenType = checker.getTypeOfSymbolAtLocation(then, decl);
  return thenType.getCallSignatures().length > 0;
}

/** The expression with parentheses, `as`, `!` and `satisfies` taken off. */
function unwrap(e) {
  while (ts.isParenthesizedExpression(e) || ts.isAsExpression(e) || ts.isNonNullExpression(e) || ts.isSatisfiesExpression?.(e)) e = e.expression;
  return e;
}

const problems = [];
for (const config of configs) {
  const path = resolve(root, config);
  const read = ts.readConfigFile(path, ts.sys.readFile);
  if (read.error) throw new Error(ts.flattenDiagnosticMessageText(read.error.messageText, '\n'));
  const parsed = ts.parseJsonConfigFileContent(read.config, ts.sys, dirname(path));
  const program = ts.createProgram({ rootNames: parsed.fileNames, options: { ...parsed.options, noEmit: true } });
  const checker = program.getTypeChecker();
  const report = (node, what) => {
    const sf = node.getSourceFile();
    const { line, character } = sf.getLineAndCharacterOfPosition(node.getStart(sf));
    problems.push(`${relative(root, sf.fileName)}:${line + 1}:${character + 1}: ${what}: ${node.getText(sf).split('\n')[0].slice(0, 100)}`);
  };
  const promise = (e, every = false) => isThenable(checker, checker.getTypeAtLocation(e), every);
  const condition = (e) => {
    if (!e) return;
    const u = unwrap(e);
    if (ts.isPrefixUnaryExpression(u) && u.operator === ts.SyntaxKind.ExclamationToken) return condition(u.operand);
    if (ts.isBinaryExpression(u) && (u.operatorToken.kind === ts.SyntaxKind.AmpersandAmpersandToken || u.operatorToken.kind === ts.SyntaxKind.BarBarToken)) {
      condition(u.left);
      condition(u.right);
      return;
    }
    if (promise(u, true)) report(u, 'a Promise tested as a condition (always true): await it');
  };
  for (const sf of program.getSourceFiles()) {
    if (sf.isDeclarationFile || sf.fileName.includes('/node_modules/')) continue;
    const visit = (node) => {
      if (ts.isExpressionStatement(node)) {
        const e = unwrap(node.expression);
        const discarded = ts.isVoidExpression(e) || ts.isAwaitExpression(e);
        // An assignment keeps the Promise somewhere; a `x ?? (x = p)` or `a && f()` is judged by its operands.
        const assigned = ts.isBinaryExpression(e) && e.operatorToken.kind >= ts.SyntaxKind.FirstAssignment && e.operatorToken.kind <= ts.SyntaxKind.LastAssignment;
        if (!discarded && !assigned && promise(e)) report(node, 'a Promise neither awaited, returned nor void-ed');
      } else if (ts.isCallExpression(node) && ts.isPropertyAccessExpression(node.expression) && node.expression.name.text === 'forEach' && node.arguments[0]) {
        // forEach drops what its callback returns: an async callback's work is awaited by nobody.
        const fnType = checker.getTypeAtLocation(node.arguments[0]);
        if (fnType.getCallSignatures().some((sig) => isThenable(checker, sig.getReturnType()))) report(node.arguments[0], 'an async callback to forEach (nobody awaits it): use for…of with await');
      } else if (ts.isIfStatement(node) || ts.isWhileStatement(node) || ts.isDoStatement(node)) condition(node.expression);
      else if (ts.isForStatement(node)) condition(node.condition);
      else if (ts.isConditionalExpression(node)) condition(node.condition);
      else if (ts.isPrefixUnaryExpression(node) && node.operator === ts.SyntaxKind.ExclamationToken) condition(node.operand);
      ts.forEachChild(node, visit);
    };
    visit(sf);
  }
}

const unique = [...new Set(problems)];
for (const p of unique) console.error(p);
if (unique.length) {
  console.error(`check-promises: ${unique.length} Promise(s) not awaited`);
  process.exit(1);
}
