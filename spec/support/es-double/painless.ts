// A small interpreter for the painless subset that update scripts use (Fleet Server's check-in, ack and
// output-key scripts, its migrations, Kibana's Fleet scripts, and our own adapter's). It is the double's
// own code: tokenizer, recursive-descent parser with painless's compile-time symbol checks, and a tree
// walker over JSON-shaped values (maps are plain objects, lists and arrays are JS arrays). What it cannot
// run is refused as Elasticsearch refuses it: a compile error or a runtime error with its Java cause,
// never a silent guess. Bounded like painless: a loop counter and a recursion limit.

type Obj = Record<string, unknown>;

/**
 * Loop iterations one script execution may take. Painless allows 1,000,000 (`painless.max_loop_counter`);
 * the double stops at a tenth of that so a runaway script costs a test well under a second. The scripts
 * Fleet Server, Kibana and our adapter send loop over a document's fields, far below either budget.
 */
export const MAX_LOOP_COUNTER = 100_000;
const MAX_CALL_DEPTH = 256;

export class PainlessError extends Error {
  constructor(readonly phase: 'compile' | 'runtime', readonly causeType: string, reason: string, readonly pos: number) {
    super(reason);
  }
}

const compileError = (reason: string, pos: number): PainlessError => new PainlessError('compile', 'illegal_argument_exception', reason, pos);
const runtimeError = (type: string, reason: string, pos: number): PainlessError => new PainlessError('runtime', type, reason, pos);

// ---------------------------------------------------------------- tokens

type Tok = { t: 'id' | 'num' | 'str' | 'op' | 'eof'; v: string; pos: number; n?: number };

const OPS = ['===', '!==', '>>>', '?.', '?:', '==', '!=', '<=', '>=', '&&', '||', '++', '--', '+=', '-=', '*=', '/=', '%=',
  '->', '::', '<<', '>>', '{', '}', '(', ')', '[', ']', ';', ',', '.', ':', '?', '!', '<', '>', '=', '+', '-', '*', '/', '%',
  '&', '|', '^', '~'];

function tokenize(src: string): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i]!;
    if (/\s/.test(c)) { i++; continue; }
    if (src.startsWith('//', i)) { while (i < src.length && src[i] !== '\n') i++; continue; }
    if (src.startsWith('/*', i)) {
      const end = src.indexOf('*/', i + 2);
      if (end < 0) throw compileError('unterminated comment', i);
      i = end + 2;
      continue;
    }
    const start = i;
    if (/[A-Za-z_$]/.test(c)) {
      while (i < src.length && /[A-Za-z0-9_$]/.test(src[i]!)) i++;
      out.push({ t: 'id', v: src.slice(start, i), pos: start });
      continue;
    }
    if (/[0-9]/.test(c)) {
      while (i < src.length && /[0-9_]/.test(src[i]!)) i++;
      if (src[i] === '.' && /[0-9]/.test(src[i + 1] ?? '')) { i++; while (i < src.length && /[0-9]/.test(src[i]!)) i++; }
      if (/[eE]/.test(src[i] ?? '') && /[-+0-9]/.test(src[i + 1] ?? '')) { i += 2; while (i < src.length && /[0-9]/.test(src[i]!)) i++; }
      const text = src.slice(start, i).replace(/_/g, '');
      if (/[lLfFdD]/.test(src[i] ?? '')) i++;
      out.push({ t: 'num', v: src.slice(start, i), pos: start, n: Number(text) });
      continue;
    }
    if (c === '"' || c === "'") {
      let s = '';
      i++;
      for (;;) {
        if (i >= src.length) throw compileError('unterminated string literal', start);
        const ch = src[i]!;
        if (ch === c) { i++; break; }
        if (ch === '\\') {
          const e = src[i + 1];
          // Painless strings escape only the backslash and the quote that delimits them.
          if (e === '\\' || e === c) { s += e; i += 2; continue; }
          throw compileError(`invalid escape sequence [\\${e ?? ''}] in string literal`, i);
        }
        s += ch;
        i++;
      }
      out.push({ t: 'str', v: s, pos: start });
      continue;
    }
    const op = OPS.find((o) => src.startsWith(o, i));
    if (!op) throw compileError(`unexpected character [${c}]`, i);
    out.push({ t: 'op', v: op, pos: i });
    i += op.length;
  }
  out.push({ t: 'eof', v: '<EOF>', pos: src.length });
  return out;
}

// ---------------------------------------------------------------- syntax tree

type Expr =
  | { k: 'lit'; v: unknown; pos: number }
  | { k: 'var'; name: string; pos: number }
  | { k: 'field'; obj: Expr; name: string; nullSafe: boolean; pos: number }
  | { k: 'index'; obj: Expr; idx: Expr; pos: number }
  | { k: 'call'; obj: Expr; name: string; args: Expr[]; nullSafe: boolean; pos: number }
  | { k: 'fcall'; name: string; args: Expr[]; pos: number }
  | { k: 'new'; type: string; args: Expr[]; pos: number }
  | { k: 'list'; items: Expr[]; pos: number }
  | { k: 'map'; entries: [Expr, Expr][]; pos: number }
  | { k: 'unary'; op: string; e: Expr; pos: number }
  | { k: 'bin'; op: string; l: Expr; r: Expr; pos: number }
  | { k: 'cond'; c: Expr; a: Expr; b: Expr; pos: number }
  | { k: 'elvis'; l: Expr; r: Expr; pos: number }
  | { k: 'assign'; op: string; target: Expr; value: Expr; pos: number }
  | { k: 'incdec'; op: '++' | '--'; prefix: boolean; target: Expr; pos: number }
  | { k: 'instanceof'; e: Expr; type: string; pos: number }
  | { k: 'cast'; type: string; e: Expr; pos: number }
  | { k: 'lambda'; params: string[]; body: Expr | Stmt; block: boolean; pos: number };

type Stmt =
  | { k: 'expr'; e: Expr; pos: number }
  | { k: 'decl'; type: string; vars: { name: string; init?: Expr }[]; pos: number }
  | { k: 'if'; c: Expr; t: Stmt; f?: Stmt; pos: number }
  | { k: 'while'; c: Expr; body: Stmt; pos: number }
  | { k: 'do'; c: Expr; body: Stmt; pos: number }
  | { k: 'for'; init?: Stmt; c?: Expr; update: Expr[]; body: Stmt; pos: number }
  | { k: 'foreach'; name: string; iter: Expr; body: Stmt; pos: number }
  | { k: 'block'; body: Stmt[]; pos: number }
  | { k: 'return'; e?: Expr; pos: number }
  | { k: 'break'; pos: number }
  | { k: 'continue'; pos: number };

interface Fn { name: string; params: string[]; body: Stmt }

export interface Program { fns: Map<string, Fn>; body: Stmt[] }

// The types a declaration, cast, `new` or `instanceof` may name. Painless resolves more, but these are the
// ones update scripts use; an unknown type is a compile error, as it is in painless.
const TYPES = new Set(['def', 'void', 'boolean', 'byte', 'short', 'char', 'int', 'long', 'float', 'double', 'String', 'Object',
  'Map', 'HashMap', 'LinkedHashMap', 'TreeMap', 'List', 'ArrayList', 'Collection', 'Set', 'HashSet', 'LinkedHashSet',
  'Number', 'Integer', 'Long', 'Double', 'Float', 'Boolean', 'Iterable']);
const CONSTRUCTIBLE = new Set(['HashMap', 'LinkedHashMap', 'TreeMap', 'ArrayList', 'HashSet', 'LinkedHashSet']);
const KEYWORDS = new Set(['if', 'else', 'for', 'while', 'do', 'return', 'break', 'continue', 'new', 'instanceof', 'true', 'false',
  'null', 'in', 'try', 'catch', 'throw']);
const BIN_PREC: Record<string, number> = {
  '||': 1, '&&': 2, '|': 3, '^': 4, '&': 5, '==': 6, '!=': 6, '===': 6, '!==': 6,
  '<': 7, '>': 7, '<=': 7, '>=': 7, instanceof: 7, '+': 9, '-': 9, '*': 10, '/': 10, '%': 10,
};
const ASSIGN = new Set(['=', '+=', '-=', '*=', '/=', '%=']);

class Parser {
  private p = 0;
  private scopes: Set<string>[] = [];
  private readonly fns = new Map<string, Fn>();

  constructor(private readonly toks: Tok[]) {}

  parseProgram(): Program {
    // Painless declares functions first, then the statements; functions see only their own arguments.
    while (this.isFunctionDecl()) this.parseFunction();
    this.scopes = [new Set(['params', 'ctx'])];
    const body: Stmt[] = [];
    while (this.peek().t !== 'eof') body.push(this.parseStatement(true));
    return { fns: this.fns, body };
  }

  // ---- token helpers
  private peek(o = 0): Tok { return this.toks[Math.min(this.p + o, this.toks.length - 1)]!; }
  private next(): Tok { return this.toks[this.p++]!; }
  private is(v: string, o = 0): boolean { const t = this.peek(o); return (t.t === 'op' || t.t === 'id') && t.v === v; }
  private accept(v: string): boolean { if (this.is(v)) { this.p++; return true; } return false; }
  private expect(v: string): Tok {
    const t = this.peek();
    if (!this.is(v)) throw compileError(`invalid sequence of tokens near [${t.v}]: expected [${v}]`, t.pos);
    return this.next();
  }
  private ident(): Tok {
    const t = this.peek();
    if (t.t !== 'id' || KEYWORDS.has(t.v)) throw compileError(`invalid sequence of tokens near [${t.v}]: expected an identifier`, t.pos);
    return this.next();
  }

  /** A type at o: a known type name with optional [] pairs; returns how many tokens it spans, or 0. */
  private typeLen(o = 0): number {
    const t = this.peek(o);
    if (t.t !== 'id' || !TYPES.has(t.v)) return 0;
    let n = 1;
    while (this.is('[', o + n) && this.is(']', o + n + 1)) n += 2;
    return n;
  }
  private parseType(): string {
    const t = this.peek();
    const n = this.typeLen();
    if (n === 0) throw compileError(`cannot resolve type [${t.v}]`, t.pos);
    this.p += n;
    return t.v + '[]'.repeat((n - 1) / 2);
  }
  /** `Type name` starts a declaration; an unknown capitalised type followed by a name is a compile error. */
  private isDecl(): boolean {
    const t = this.peek();
    if (t.t !== 'id' || KEYWORDS.has(t.v)) return false;
    const n = this.typeLen();
    if (n > 0) return this.peek(n).t === 'id';
    if (this.peek(1).t === 'id' && !KEYWORDS.has(this.peek(1).v)) throw compileError(`cannot resolve type [${t.v}]`, t.pos);
    return false;
  }
  private isFunctionDecl(): boolean {
    const n = this.typeLen();
    return n > 0 && this.peek(n).t === 'id' && this.is('(', n + 1);
  }

  // ---- scopes: painless resolves every name at compile time
  private declare(name: string, pos: number): void {
    if (this.scopes.some((s) => s.has(name))) throw compileError(`variable [${name}] is already defined`, pos);
    this.scopes[this.scopes.length - 1]!.add(name);
  }
  private scoped<T>(f: () => T): T {
    this.scopes.push(new Set());
    try { return f(); } finally { this.scopes.pop(); }
  }

  private parseFunction(): void {
    this.parseType();
    const name = this.ident();
    if (this.fns.has(name.v)) throw compileError(`function [${name.v}] is already defined`, name.pos);
    const fn: Fn = { name: name.v, params: [], body: { k: 'block', body: [], pos: name.pos } };
    this.scopes = [new Set()];
    this.expect('(');
    if (!this.is(')')) {
      do {
        this.parseType();
        const a = this.ident();
        this.declare(a.v, a.pos);
        fn.params.push(a.v);
      } while (this.accept(','));
    }
    this.expect(')');
    this.fns.set(fn.name, fn); // visible in its own body: recursion
    fn.body = this.parseBlock();
  }

  private parseBlock(): Stmt {
    const pos = this.expect('{').pos;
    return this.scoped(() => {
      const body: Stmt[] = [];
      while (!this.is('}')) {
        if (this.peek().t === 'eof') throw compileError('invalid sequence of tokens near [<EOF>]: expected [}]', this.peek().pos);
        body.push(this.parseStatement(true));
      }
      this.next();
      return { k: 'block', body, pos } as Stmt;
    });
  }

  /** A statement's trailing `;` may be left off before `}` or the end of the script, as painless allows. */
  private endStatement(): void {
    if (this.accept(';')) return;
    if (this.is('}') || this.peek().t === 'eof') return;
    const t = this.peek();
    throw compileError(`invalid sequence of tokens near [${t.v}]: expected [;]`, t.pos);
  }

  /** Bodies of if/for/while: a block, or a single statement in a scope of its own. */
  private parseBody(): Stmt {
    return this.is('{') ? this.parseBlock() : this.scoped(() => this.parseStatement(false));
  }

  private parseStatement(allowDecl: boolean): Stmt {
    const t = this.peek();
    const pos = t.pos;
    if (this.is('{')) return this.parseBlock();
    if (this.accept(';')) return { k: 'block', body: [], pos };
    if (t.t === 'id') {
      switch (t.v) {
        case 'if': {
          this.next();
          this.expect('(');
          const c = this.parseExpr();
          this.expect(')');
          const thenS = this.parseBody();
          const elseS = this.accept('else') ? this.parseBody() : undefined;
          return { k: 'if', c, t: thenS, f: elseS, pos };
        }
        case 'while': {
          this.next();
          this.expect('(');
          const c = this.parseExpr();
          this.expect(')');
          return { k: 'while', c, body: this.parseBody(), pos };
        }
        case 'do': {
          this.next();
          const body = this.parseBlock();
          this.expect('while');
          this.expect('(');
          const c = this.parseExpr();
          this.expect(')');
          this.endStatement();
          return { k: 'do', c, body, pos };
        }
        case 'for': return this.parseFor();
        case 'return': {
          this.next();
          const e = this.is(';') || this.is('}') || this.peek().t === 'eof' ? undefined : this.parseExpr();
          this.endStatement();
          return { k: 'return', e, pos };
        }
        case 'break': case 'continue':
          this.next();
          this.endStatement();
          return { k: t.v, pos };
        case 'try': case 'throw':
          throw compileError(`[${t.v}] is not supported by the Elasticsearch double`, pos);
      }
      if (this.isDecl()) {
        if (!allowDecl) throw compileError('a declaration is not a statement here; use a block', pos);
        const d = this.parseDecl();
        this.endStatement();
        return d;
      }
    }
    const e = this.parseExpr();
    if (!['assign', 'incdec', 'call', 'fcall', 'new'].includes(e.k)) {
      // Painless refuses expressions whose value is thrown away, except a script's final value.
      if (!(this.scopes.length === 1 && (this.is(';') ? this.peek(1).t === 'eof' : this.peek().t === 'eof'))) {
        throw compileError('not a statement: result not used', pos);
      }
    }
    this.endStatement();
    return { k: 'expr', e, pos };
  }

  private parseDecl(): Stmt & { k: 'decl' } {
    const pos = this.peek().pos;
    const type = this.parseType();
    const vars: { name: string; init?: Expr }[] = [];
    do {
      const n = this.ident();
      const init = this.accept('=') ? this.parseExpr() : undefined;
      this.declare(n.v, n.pos);
      vars.push({ name: n.v, init });
    } while (this.accept(','));
    return { k: 'decl', type, vars, pos };
  }

  private parseFor(): Stmt {
    const pos = this.next().pos;
    this.expect('(');
    return this.scoped(() => {
      // for (Type x : iterable) / for (x in iterable)
      const n = this.typeLen();
      const typed = n > 0 && this.peek(n).t === 'id' && this.is(':', n + 1);
      if (typed || (this.peek().t === 'id' && this.is('in', 1))) {
        if (typed) this.p += n;
        const name = this.ident();
        this.next(); // ':' or 'in'
        const iter = this.parseExpr();
        this.declare(name.v, name.pos);
        this.expect(')');
        return { k: 'foreach', name: name.v, iter, body: this.parseBody(), pos } as Stmt;
      }
      let init: Stmt | undefined;
      if (!this.is(';')) init = this.isDecl() ? this.parseDecl() : { k: 'expr', e: this.parseExpr(), pos: this.peek().pos };
      this.expect(';');
      const c = this.is(';') ? undefined : this.parseExpr();
      this.expect(';');
      const update: Expr[] = [];
      if (!this.is(')')) do update.push(this.parseExpr()); while (this.accept(','));
      this.expect(')');
      return { k: 'for', init, c, update, body: this.parseBody(), pos } as Stmt;
    });
  }

  // ---- expressions
  parseExpr(): Expr {
    const left = this.parseTernary();
    const t = this.peek();
    if (t.t === 'op' && ASSIGN.has(t.v)) {
      if (!['var', 'field', 'index'].includes(left.k) || (left.k === 'field' && left.nullSafe)) {
        throw compileError('invalid assignment: cannot assign a value to this expression', t.pos);
      }
      this.next();
      return { k: 'assign', op: t.v, target: left, value: this.parseExpr(), pos: t.pos };
    }
    if (t.t === 'op' && ['<<=', '>>=', '&=', '|=', '^='].some((o) => o.startsWith(t.v) && this.is('=', 1))) {
      throw compileError(`operator [${t.v}=] is not supported by the Elasticsearch double`, t.pos);
    }
    return left;
  }

  private parseTernary(): Expr {
    const c = this.parseBinary(1);
    const t = this.peek();
    if (this.accept('?')) {
      const a = this.parseExpr();
      this.expect(':');
      return { k: 'cond', c, a, b: this.parseExpr(), pos: t.pos };
    }
    if (this.accept('?:')) return { k: 'elvis', l: c, r: this.parseTernary(), pos: t.pos };
    return c;
  }

  private parseBinary(min: number): Expr {
    let l = this.parseUnary();
    for (;;) {
      const t = this.peek();
      const prec = (t.t === 'op' || t.v === 'instanceof') ? BIN_PREC[t.v] : undefined;
      if (prec === undefined || prec < min) return l;
      if (['|', '^', '&'].includes(t.v)) throw compileError(`operator [${t.v}] is not supported by the Elasticsearch double`, t.pos);
      this.next();
      if (t.v === 'instanceof') {
        l = { k: 'instanceof', e: l, type: this.parseType(), pos: t.pos };
        continue;
      }
      l = { k: 'bin', op: t.v, l, r: this.parseBinary(prec + 1), pos: t.pos };
    }
  }

  private parseUnary(): Expr {
    const t = this.peek();
    if (t.t === 'op' && ['!', '-', '+', '~'].includes(t.v)) {
      this.next();
      if (t.v === '~') throw compileError('operator [~] is not supported by the Elasticsearch double', t.pos);
      return { k: 'unary', op: t.v, e: this.parseUnary(), pos: t.pos };
    }
    if (t.t === 'op' && (t.v === '++' || t.v === '--')) {
      this.next();
      const target = this.parseUnary();
      this.lvalue(target, t.pos);
      return { k: 'incdec', op: t.v, prefix: true, target, pos: t.pos };
    }
    if (this.is('(')) {
      const n = this.typeLen(1);
      if (n > 0 && this.is(')', n + 1)) {
        this.next();
        const type = this.parseType();
        this.next();
        return { k: 'cast', type, e: this.parseUnary(), pos: t.pos };
      }
    }
    return this.parsePostfix();
  }

  private lvalue(e: Expr, pos: number): void {
    if (!['var', 'field', 'index'].includes(e.k)) throw compileError('invalid assignment: cannot assign a value to this expression', pos);
  }

  private parseArgs(): Expr[] {
    this.expect('(');
    const args: Expr[] = [];
    if (!this.is(')')) do args.push(this.parseLambda() ?? this.parseExpr()); while (this.accept(','));
    this.expect(')');
    return args;
  }

  /** `x -> expr`, `(a, b) -> expr` or `x -> { ... }`: painless lambdas, which appear only as arguments. */
  private parseLambda(): Expr | undefined {
    const pos = this.peek().pos;
    let names: string[];
    if (this.peek().t === 'id' && this.is('->', 1)) {
      names = [this.next().v];
    } else if (this.is('(')) {
      let o = 1;
      names = [];
      while (this.peek(o).t === 'id' && !KEYWORDS.has(this.peek(o).v)) {
        names.push(this.peek(o).v);
        o++;
        if (!this.is(',', o)) break;
        o++;
      }
      if (!this.is(')', o) || !this.is('->', o + 1)) return undefined;
      this.p += o + 1;
    } else {
      return undefined;
    }
    const arrow = this.expect('->');
    return this.scoped(() => {
      for (const n of names) this.declare(n, arrow.pos);
      const block = this.is('{');
      const body = block ? this.parseBlock() : this.parseExpr();
      return { k: 'lambda', params: names, body, block, pos } as Expr;
    });
  }

  private parsePostfix(): Expr {
    let e = this.parsePrimary();
    for (;;) {
      const t = this.peek();
      if (this.is('.') || this.is('?.')) {
        this.next();
        const nameTok = this.peek();
        if (nameTok.t !== 'id' && nameTok.t !== 'num') throw compileError(`invalid sequence of tokens near [${nameTok.v}]`, nameTok.pos);
        this.next();
        const nullSafe = t.v === '?.';
        e = this.is('(')
          ? { k: 'call', obj: e, name: nameTok.v, args: this.parseArgs(), nullSafe, pos: nameTok.pos }
          : { k: 'field', obj: e, name: nameTok.v, nullSafe, pos: nameTok.pos };
      } else if (this.is('[')) {
        this.next();
        const idx = this.parseExpr();
        this.expect(']');
        e = { k: 'index', obj: e, idx, pos: t.pos };
      } else if (this.is('++') || this.is('--')) {
        this.lvalue(e, t.pos);
        this.next();
        e = { k: 'incdec', op: t.v as '++' | '--', prefix: false, target: e, pos: t.pos };
      } else if (this.is('::')) {
        throw compileError('method references are not supported by the Elasticsearch double', t.pos);
      } else {
        return e;
      }
    }
  }

  private parsePrimary(): Expr {
    const t = this.next();
    const pos = t.pos;
    if (t.t === 'num') return { k: 'lit', v: t.n, pos };
    if (t.t === 'str') return { k: 'lit', v: t.v, pos };
    if (t.t === 'op') {
      if (t.v === '(') {
        const e = this.parseExpr();
        this.expect(')');
        return e;
      }
      if (t.v === '[') {
        if (this.accept(':')) { this.expect(']'); return { k: 'map', entries: [], pos }; }
        if (this.accept(']')) return { k: 'list', items: [], pos };
        const first = this.parseExpr();
        if (this.accept(':')) {
          const entries: [Expr, Expr][] = [[first, this.parseExpr()]];
          while (this.accept(',')) {
            const k = this.parseExpr();
            this.expect(':');
            entries.push([k, this.parseExpr()]);
          }
          this.expect(']');
          return { k: 'map', entries, pos };
        }
        const items = [first];
        while (this.accept(',')) items.push(this.parseExpr());
        this.expect(']');
        return { k: 'list', items, pos };
      }
      throw compileError(`invalid sequence of tokens near [${t.v}]`, pos);
    }
    if (t.t === 'eof') throw compileError('invalid sequence of tokens near [<EOF>]', pos);
    switch (t.v) {
      case 'true': return { k: 'lit', v: true, pos };
      case 'false': return { k: 'lit', v: false, pos };
      case 'null': return { k: 'lit', v: null, pos };
      case 'new': {
        const type = this.ident();
        if (!CONSTRUCTIBLE.has(type.v)) {
          throw compileError(TYPES.has(type.v) ? `constructor [${type.v}] not found` : `cannot resolve type [${type.v}]`, type.pos);
        }
        const args = this.parseArgs();
        if (args.length > 1) throw compileError(`constructor [${type.v}, ${args.length}] not found`, type.pos);
        return { k: 'new', type: type.v, args, pos };
      }
    }
    if (KEYWORDS.has(t.v)) throw compileError(`invalid sequence of tokens near [${t.v}]`, pos);
    if (this.is('(')) {
      if (!this.fns.has(t.v)) throw compileError(`Unknown call [${t.v}] with [${this.countArgs()}] arguments.`, pos);
      const args = this.parseArgs();
      const fn = this.fns.get(t.v)!;
      if (fn.params.length !== args.length) throw compileError(`Unknown call [${t.v}] with [${args.length}] arguments.`, pos);
      return { k: 'fcall', name: t.v, args, pos };
    }
    if (this.is('->')) throw compileError('a lambda is allowed only as a method argument', this.peek().pos);
    if (!this.scopes.some((s) => s.has(t.v))) throw compileError(`cannot resolve symbol [${t.v}]`, pos);
    return { k: 'var', name: t.v, pos };
  }

  private countArgs(): number {
    const save = this.p;
    try { return this.parseArgs().length; } catch { return 0; } finally { this.p = save; }
  }
}

/** Parses a script; throws a compile-phase PainlessError for anything outside the subset. */
export function compile(source: string): Program {
  return new Parser(tokenize(source)).parseProgram();
}

// ---------------------------------------------------------------- values

class Entry {
  constructor(readonly map: Obj, readonly key: string) {}
}

/** HashSet / LinkedHashSet: insertion-ordered unique elements (by equals). Stored into a document as a list. */
class PSet {
  constructor(readonly items: unknown[] = []) {}
  has(v: unknown): boolean { return this.items.some((x) => deepEqual(x, v)); }
  add(v: unknown): boolean {
    if (this.has(v)) return false;
    this.items.push(v);
    return true;
  }
}

class Lambda {
  constructor(readonly params: string[], readonly body: Expr | Stmt, readonly block: boolean, readonly scope: Scope) {}
}

const isMap = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array)
  && !(v instanceof Entry) && !(v instanceof PSet) && !(v instanceof Lambda);

/** A collection's elements, for for-each, addAll and friends. */
const elements = (v: unknown): unknown[] | undefined => Array.isArray(v) ? v : v instanceof PSet ? v.items : undefined;

function javaType(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'string') return 'java.lang.String';
  if (typeof v === 'boolean') return 'java.lang.Boolean';
  if (typeof v === 'number') return Number.isInteger(v) ? 'java.lang.Integer' : 'java.lang.Double';
  if (Array.isArray(v)) return 'java.util.ArrayList';
  if (v instanceof Uint8Array) return 'byte[]';
  if (v instanceof Entry) return 'java.util.HashMap$Node';
  if (v instanceof PSet) return 'java.util.LinkedHashSet';
  if (v instanceof Lambda) return 'java.util.function.Function';
  return 'java.util.HashMap';
}

function mapGet(m: Obj, k: unknown): unknown {
  const key = String(k);
  return Object.hasOwn(m, key) ? m[key] ?? null : null;
}
function mapPut(m: Obj, k: unknown, v: unknown): unknown {
  const key = String(k);
  const prev = mapGet(m, key);
  // defineProperty, so a key such as __proto__ is data and never a prototype.
  Object.defineProperty(m, key, { value: v, writable: true, enumerable: true, configurable: true });
  return prev;
}
function mapRemove(m: Obj, k: unknown): unknown {
  const key = String(k);
  const prev = mapGet(m, key);
  delete m[key];
  return prev;
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return false;
  if (a instanceof PSet && b instanceof PSet) return a.items.length === b.items.length && a.items.every((x) => b.has(x));
  if (a instanceof Entry || b instanceof Entry || a instanceof PSet || b instanceof PSet || a instanceof Lambda || b instanceof Lambda) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) return a.length === (b as unknown[]).length && a.every((x, i) => deepEqual(x, (b as unknown[])[i]));
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k) => Object.hasOwn(b, k) && deepEqual((a as Obj)[k], (b as Obj)[k]));
}

function str(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return `[${v.map(str).join(', ')}]`;
  if (v instanceof PSet) return `[${v.items.map(str).join(', ')}]`;
  if (v instanceof Lambda) return 'lambda';
  if (v instanceof Entry) return `${v.key}=${str(mapGet(v.map, v.key))}`;
  return `{${Object.entries(v as Obj).map(([k, x]) => `${k}=${str(x)}`).join(', ')}}`;
}

function instanceOf(v: unknown, type: string): boolean {
  switch (type) {
    case 'def': case 'Object': return v !== null;
    case 'Map': case 'HashMap': case 'LinkedHashMap': case 'TreeMap': return isMap(v);
    case 'List': case 'ArrayList': return Array.isArray(v);
    case 'Set': case 'HashSet': case 'LinkedHashSet': return v instanceof PSet;
    case 'Collection': case 'Iterable': return Array.isArray(v) || v instanceof PSet;
    case 'String': return typeof v === 'string';
    case 'Number': case 'Double': case 'Float': return typeof v === 'number' && (type === 'Number' || !Number.isInteger(v));
    case 'Integer': case 'Long': return typeof v === 'number' && Number.isInteger(v);
    case 'Boolean': return typeof v === 'boolean';
    default: return false;
  }
}

// ---------------------------------------------------------------- evaluation

const BREAK = { s: 'break' } as const;
const CONTINUE = { s: 'continue' } as const;
type Signal = undefined | typeof BREAK | typeof CONTINUE | { s: 'return'; v: unknown };

class Scope {
  readonly vars = new Map<string, unknown>();
  constructor(readonly parent?: Scope) {}
  lookup(name: string): Scope {
    let s: Scope | undefined = this;
    while (s && !s.vars.has(name)) s = s.parent;
    return s!; // the parser resolved every name
  }
}

class Interpreter {
  private loops = 0;
  private depth = 0;

  constructor(private readonly prog: Program) {}

  run(ctx: Obj, params: Obj): unknown {
    const scope = new Scope();
    scope.vars.set('ctx', ctx);
    scope.vars.set('params', params);
    let last: unknown = null;
    for (const s of this.prog.body) {
      if (s.k === 'expr') {
        last = this.eval(s.e, scope);
        continue;
      }
      const sig = this.exec(s, scope);
      if (sig?.s === 'return') return sig.v;
    }
    return last;
  }

  private tick(pos: number): void {
    if (++this.loops > MAX_LOOP_COUNTER) {
      throw runtimeError('painless_error', 'The maximum number of statements that can be executed in a loop has been reached.', pos);
    }
  }

  private exec(s: Stmt, scope: Scope): Signal {
    switch (s.k) {
      case 'expr': this.eval(s.e, scope); return undefined;
      case 'decl':
        for (const v of s.vars) scope.vars.set(v.name, v.init ? this.coerce(s.type, this.eval(v.init, scope), v.init.pos) : defaultOf(s.type));
        return undefined;
      case 'block': {
        // Only a block that declares something needs a scope of its own.
        const inner = s.body.some((b) => b.k === 'decl') ? new Scope(scope) : scope;
        for (const b of s.body) {
          const sig = this.exec(b, inner);
          if (sig) return sig;
        }
        return undefined;
      }
      case 'if':
        if (this.bool(this.eval(s.c, scope), s.c.pos)) return this.exec(s.t, scope);
        return s.f ? this.exec(s.f, scope) : undefined;
      case 'while': case 'do': {
        let first = s.k === 'do';
        while (first || this.bool(this.eval(s.c, scope), s.c.pos)) {
          first = false;
          this.tick(s.pos);
          const sig = this.exec(s.body, scope);
          if (sig === BREAK) break;
          if (sig && sig !== CONTINUE) return sig;
        }
        return undefined;
      }
      case 'for': {
        const fs = new Scope(scope);
        if (s.init) this.exec(s.init, fs);
        while (!s.c || this.bool(this.eval(s.c, fs), s.c.pos)) {
          this.tick(s.pos);
          const sig = this.exec(s.body, fs);
          if (sig === BREAK) break;
          if (sig && sig !== CONTINUE) return sig;
          for (const u of s.update) this.eval(u, fs);
        }
        return undefined;
      }
      case 'foreach': {
        const it = this.eval(s.iter, scope);
        let items: unknown[];
        const els = elements(it);
        if (els) items = [...els];
        else if (it === null) throw runtimeError('null_pointer_exception', 'Cannot iterate over a null value', s.iter.pos);
        else throw runtimeError('class_cast_exception', `Cannot cast ${javaType(it)} to java.lang.Iterable`, s.iter.pos);
        for (const item of items) {
          this.tick(s.pos);
          const fs = new Scope(scope);
          fs.vars.set(s.name, item);
          const sig = this.exec(s.body, fs);
          if (sig === BREAK) break;
          if (sig && sig !== CONTINUE) return sig;
        }
        return undefined;
      }
      case 'return': return { s: 'return', v: s.e ? this.eval(s.e, scope) : null };
      case 'break': return BREAK;
      case 'continue': return CONTINUE;
    }
  }

  private bool(v: unknown, pos: number): boolean {
    if (typeof v === 'boolean') return v;
    if (v === null) throw runtimeError('null_pointer_exception', 'Cannot unbox a null value to boolean', pos);
    throw runtimeError('class_cast_exception', `Cannot cast ${javaType(v)} to java.lang.Boolean`, pos);
  }

  private coerce(type: string, v: unknown, pos: number): unknown {
    if (type === 'def' || v === null && !['int', 'long', 'short', 'byte', 'float', 'double', 'boolean', 'char'].includes(type)) return v;
    if (type.endsWith('[]')) {
      if (Array.isArray(v)) return v;
    } else if (['int', 'long', 'short', 'byte'].includes(type)) {
      if (typeof v === 'number') return Math.trunc(v);
    } else if (['float', 'double'].includes(type)) {
      if (typeof v === 'number') return v;
    } else if (type === 'boolean') {
      if (typeof v === 'boolean') return v;
    } else if (instanceOf(v, type)) {
      return v;
    }
    if (v === null) throw runtimeError('null_pointer_exception', `Cannot unbox a null value to ${type}`, pos);
    throw runtimeError('class_cast_exception', `Cannot cast ${javaType(v)} to ${type}`, pos);
  }

  private eval(e: Expr, scope: Scope): unknown {
    switch (e.k) {
      case 'lit': return e.v;
      case 'var': return scope.lookup(e.name).vars.get(e.name);
      case 'field': {
        const o = this.eval(e.obj, scope);
        if (o === null && e.nullSafe) return null;
        return this.getField(o, e.name, e.pos);
      }
      case 'index': return this.getIndex(this.eval(e.obj, scope), this.eval(e.idx, scope), e.pos);
      case 'call': {
        const o = this.eval(e.obj, scope);
        if (o === null && e.nullSafe) return null;
        return this.callMethod(o, e.name, e.args.map((a) => this.eval(a, scope)), e.pos);
      }
      case 'fcall': return this.callFunction(e.name, e.args.map((a) => this.eval(a, scope)), e.pos);
      case 'new': {
        const arg = e.args.length ? this.eval(e.args[0]!, scope) : undefined;
        const kind = e.type.endsWith('List') ? 'list' : e.type.endsWith('Set') ? 'set' : 'map';
        const els = elements(arg);
        if (arg === undefined || typeof arg === 'number') return kind === 'list' ? [] : kind === 'set' ? new PSet() : {};
        if (kind === 'list' && els) return [...els];
        if (kind === 'set' && els) { const set = new PSet(); for (const x of els) set.add(x); return set; }
        if (kind === 'map' && isMap(arg)) return { ...arg };
        throw runtimeError('class_cast_exception', `Cannot cast ${javaType(arg)} to the argument of ${e.type}`, e.pos);
      }
      case 'list': return e.items.map((i) => this.eval(i, scope));
      case 'map': {
        const m: Obj = {};
        for (const [k, v] of e.entries) mapPut(m, this.eval(k, scope), this.eval(v, scope));
        return m;
      }
      case 'unary': {
        const v = this.eval(e.e, scope);
        if (e.op === '!') return !this.bool(v, e.pos);
        return e.op === '-' ? -this.num(v, e.pos) : this.num(v, e.pos);
      }
      case 'bin':
        if (e.op === '&&') return this.bool(this.eval(e.l, scope), e.l.pos) && this.bool(this.eval(e.r, scope), e.r.pos);
        if (e.op === '||') return this.bool(this.eval(e.l, scope), e.l.pos) || this.bool(this.eval(e.r, scope), e.r.pos);
        return this.binary(e.op, this.eval(e.l, scope), this.eval(e.r, scope), e.pos);
      case 'cond': return this.bool(this.eval(e.c, scope), e.c.pos) ? this.eval(e.a, scope) : this.eval(e.b, scope);
      case 'elvis': return this.eval(e.l, scope) ?? this.eval(e.r, scope);
      case 'instanceof': return instanceOf(this.eval(e.e, scope), e.type);
      case 'cast': return this.coerce(e.type, this.eval(e.e, scope), e.pos);
      case 'lambda': return new Lambda(e.params, e.body, e.block, scope);
      case 'assign': {
        const ref = this.ref(e.target, scope);
        const v = e.op === '='
          ? this.eval(e.value, scope)
          : this.binary(e.op.slice(0, -1), ref.get(), this.eval(e.value, scope), e.pos);
        ref.set(v);
        return v;
      }
      case 'incdec': {
        const ref = this.ref(e.target, scope);
        const old = this.num(ref.get(), e.pos);
        const v = e.op === '++' ? old + 1 : old - 1;
        ref.set(v);
        return e.prefix ? v : old;
      }
    }
  }

  /** An assignable place, evaluating its receiver once (for compound assignment and ++). */
  private ref(t: Expr, scope: Scope): { get(): unknown; set(v: unknown): void } {
    if (t.k === 'var') {
      const s = scope.lookup(t.name);
      return { get: () => s.vars.get(t.name), set: (v) => s.vars.set(t.name, v) };
    }
    if (t.k === 'field') {
      const o = this.eval(t.obj, scope);
      return { get: () => this.getField(o, t.name, t.pos), set: (v) => this.setField(o, t.name, v, t.pos) };
    }
    if (t.k === 'index') {
      const o = this.eval(t.obj, scope);
      const i = this.eval(t.idx, scope);
      return { get: () => this.getIndex(o, i, t.pos), set: (v) => this.setIndex(o, i, v, t.pos) };
    }
    throw compileError('invalid assignment', t.pos);
  }

  private num(v: unknown, pos: number): number {
    if (typeof v === 'number') return v;
    if (v === null) throw runtimeError('null_pointer_exception', 'Cannot unbox a null value to a number', pos);
    throw runtimeError('class_cast_exception', `Cannot apply a numeric operator to [${javaType(v)}]`, pos);
  }

  private binary(op: string, l: unknown, r: unknown, pos: number): unknown {
    switch (op) {
      case '==': return l === r || (typeof l === 'object' && deepEqual(l, r));
      case '!=': return !(l === r || (typeof l === 'object' && deepEqual(l, r)));
      case '===': return l === r;
      case '!==': return l !== r;
      case '+':
        if (typeof l === 'string' || typeof r === 'string') return str(l) + str(r);
        return this.num(l, pos) + this.num(r, pos);
    }
    if (['<', '>', '<=', '>='].includes(op) && typeof l === 'string' && typeof r === 'string') {
      throw runtimeError('class_cast_exception', `Cannot apply [${op}] operation to types [java.lang.String] and [java.lang.String].`, pos);
    }
    const a = this.num(l, pos);
    const b = this.num(r, pos);
    switch (op) {
      case '-': return a - b;
      case '*': return a * b;
      case '/': case '%': {
        const ints = Number.isInteger(a) && Number.isInteger(b);
        if (ints && b === 0) throw runtimeError('arithmetic_exception', '/ by zero', pos);
        if (op === '%') return a % b;
        return ints ? Math.trunc(a / b) : a / b;
      }
      case '<': return a < b;
      case '>': return a > b;
      case '<=': return a <= b;
      case '>=': return a >= b;
    }
    throw runtimeError('illegal_argument_exception', `unsupported operator [${op}]`, pos);
  }

  private npe(what: string, name: string, pos: number): PainlessError {
    return runtimeError('null_pointer_exception', `Cannot ${what} [${name}] because the value is null`, pos);
  }

  private getField(o: unknown, name: string, pos: number): unknown {
    if (o === null || o === undefined) throw this.npe('read field', name, pos);
    if (isMap(o)) return mapGet(o, name); // painless's map shortcut: m.x is m.get("x")
    if (Array.isArray(o)) {
      if (name === 'length') return o.length;
      if (name === 'empty') return o.length === 0;
      if (/^\d+$/.test(name)) return this.getIndex(o, Number(name), pos);
    }
    // A binary field reads as byte[]: its one field is length, and bytes are signed.
    if (o instanceof Uint8Array && name === 'length') return o.length;
    if (o instanceof Entry) {
      if (name === 'key') return o.key;
      if (name === 'value') return mapGet(o.map, o.key);
    }
    if (typeof o === 'string' && name === 'empty') return o.length === 0;
    throw runtimeError('illegal_argument_exception', `dynamic getter [${javaType(o)}, ${name}] not found`, pos);
  }

  private setField(o: unknown, name: string, v: unknown, pos: number): void {
    if (o === null || o === undefined) throw this.npe('write field', name, pos);
    if (isMap(o)) { mapPut(o, name, v); return; }
    if (Array.isArray(o) && /^\d+$/.test(name)) { this.setIndex(o, Number(name), v, pos); return; }
    throw runtimeError('illegal_argument_exception', `dynamic setter [${javaType(o)}, ${name}] not found`, pos);
  }

  private listIndex(o: unknown[], i: unknown, pos: number): number {
    if (typeof i !== 'number' || !Number.isInteger(i)) throw runtimeError('class_cast_exception', `Cannot cast ${javaType(i)} to int`, pos);
    const n = i < 0 ? o.length + i : i; // painless lists and arrays take negative indices from the end
    if (n < 0 || n >= o.length) throw runtimeError('index_out_of_bounds_exception', `Index ${i} out of bounds for length ${o.length}`, pos);
    return n;
  }

  private getIndex(o: unknown, i: unknown, pos: number): unknown {
    if (o === null || o === undefined) throw this.npe('read index', str(i), pos);
    if (isMap(o)) return mapGet(o, i);
    if (Array.isArray(o)) return o[this.listIndex(o, i, pos)] ?? null;
    if (o instanceof Uint8Array) {
      if (typeof i !== 'number' || !Number.isInteger(i)) throw runtimeError('class_cast_exception', `Cannot cast ${javaType(i)} to int`, pos);
      if (i < 0 || i >= o.length) throw runtimeError('array_index_out_of_bounds_exception', `Index ${i} out of bounds for length ${o.length}`, pos);
      return (o[i]! << 24) >> 24;
    }
    throw runtimeError('illegal_argument_exception', `Attempting to address a non-array-like type [${javaType(o)}] as an array.`, pos);
  }

  private setIndex(o: unknown, i: unknown, v: unknown, pos: number): void {
    if (o === null || o === undefined) throw this.npe('write index', str(i), pos);
    if (isMap(o)) { mapPut(o, i, v); return; }
    if (Array.isArray(o)) { o[this.listIndex(o, i, pos)] = v; return; }
    throw runtimeError('illegal_argument_exception', `Attempting to address a non-array-like type [${javaType(o)}] as an array.`, pos);
  }

  private callFunction(name: string, args: unknown[], pos: number): unknown {
    if (++this.depth > MAX_CALL_DEPTH) throw runtimeError('painless_error', 'stack overflow: too many nested function calls', pos);
    try {
      const fn = this.prog.fns.get(name)!;
      const scope = new Scope();
      fn.params.forEach((p, i) => scope.vars.set(p, args[i]));
      const sig = this.exec(fn.body, scope);
      return sig && sig.s === 'return' ? sig.v : null;
    } finally {
      this.depth--;
    }
  }

  private invoke(f: unknown, args: unknown[], pos: number): unknown {
    if (!(f instanceof Lambda)) throw runtimeError('class_cast_exception', `Cannot cast ${javaType(f)} to a functional interface`, pos);
    if (f.params.length !== args.length) throw runtimeError('illegal_argument_exception', `lambda takes [${f.params.length}] arguments, not [${args.length}]`, pos);
    const scope = new Scope(f.scope);
    f.params.forEach((p, i) => scope.vars.set(p, args[i]));
    if (!f.block) return this.eval(f.body as Expr, scope);
    const sig = this.exec(f.body as Stmt, scope);
    return sig && sig.s === 'return' ? sig.v : null;
  }

  private callMethod(o: unknown, name: string, args: unknown[], pos: number): unknown {
    if (o === null || o === undefined) throw this.npe('invoke method', name, pos);
    const a0 = args[0];
    const n = args.length;
    const sig = `${name}/${n}`;
    if (sig === 'equals/1') return o === a0 || deepEqual(o, a0);
    if (sig === 'toString/0') return str(o);
    if (sig === 'hashCode/0') return 0;
    if (isMap(o)) {
      switch (sig) {
        case 'get/1': return mapGet(o, a0);
        case 'put/2': return mapPut(o, a0, args[1]);
        case 'remove/1': return mapRemove(o, a0);
        case 'containsKey/1': return Object.hasOwn(o, String(a0));
        case 'containsValue/1': return Object.values(o).some((v) => deepEqual(v, a0));
        case 'getOrDefault/2': return Object.hasOwn(o, String(a0)) ? o[String(a0)] : args[1];
        case 'putIfAbsent/2': return mapGet(o, a0) ?? (mapPut(o, a0, args[1]), null);
        case 'size/0': return Object.keys(o).length;
        case 'isEmpty/0': return Object.keys(o).length === 0;
        case 'keySet/0': return Object.keys(o);
        case 'values/0': return Object.values(o);
        case 'entrySet/0': return Object.keys(o).map((k) => new Entry(o, k));
        case 'clear/0': for (const k of Object.keys(o)) delete o[k]; return null;
        case 'putAll/1':
          if (!isMap(a0)) throw runtimeError('class_cast_exception', `Cannot cast ${javaType(a0)} to java.util.Map`, pos);
          for (const [k, v] of Object.entries(a0)) mapPut(o, k, v);
          return null;
        case 'computeIfAbsent/2': {
          const cur = mapGet(o, a0);
          if (cur !== null) return cur;
          const v = this.invoke(args[1], [a0], pos);
          if (v !== null) mapPut(o, a0, v);
          return v;
        }
        case 'forEach/1': for (const k of Object.keys(o)) this.invoke(a0, [k, o[k] ?? null], pos); return null;
      }
    } else if (o instanceof PSet) {
      switch (sig) {
        case 'add/1': return o.add(a0);
        case 'addAll/1': {
          const els = elements(a0);
          if (!els) throw runtimeError('class_cast_exception', `Cannot cast ${javaType(a0)} to java.util.Collection`, pos);
          let changed = false;
          for (const x of els) changed = o.add(x) || changed;
          return changed;
        }
        case 'remove/1': { const i = o.items.findIndex((x) => deepEqual(x, a0)); if (i >= 0) o.items.splice(i, 1); return i >= 0; }
        case 'contains/1': return o.has(a0);
        case 'size/0': return o.items.length;
        case 'isEmpty/0': return o.items.length === 0;
        case 'clear/0': o.items.length = 0; return null;
        case 'toArray/0': return [...o.items];
        case 'removeIf/1': {
          const kept = o.items.filter((x) => !this.bool(this.invoke(a0, [x], pos), pos));
          const changed = kept.length !== o.items.length;
          o.items.splice(0, o.items.length, ...kept);
          return changed;
        }
        case 'forEach/1': for (const x of [...o.items]) this.invoke(a0, [x], pos); return null;
      }
    } else if (Array.isArray(o)) {
      switch (sig) {
        case 'get/1': return this.getIndex(o, a0, pos);
        case 'set/2': { const i = this.listIndex(o, a0, pos); const prev = o[i]; o[i] = args[1]; return prev ?? null; }
        case 'add/1': o.push(a0); return true;
        case 'add/2': {
          if (typeof a0 !== 'number' || a0 < 0 || a0 > o.length) throw runtimeError('index_out_of_bounds_exception', `Index: ${str(a0)}, Size: ${o.length}`, pos);
          o.splice(a0, 0, args[1]);
          return null;
        }
        case 'addAll/1': {
          const els = elements(a0);
          if (!els) throw runtimeError('class_cast_exception', `Cannot cast ${javaType(a0)} to java.util.Collection`, pos);
          o.push(...els);
          return els.length > 0;
        }
        case 'remove/1': {
          // List.remove(int) removes by position; anything else removes the first equal element.
          if (typeof a0 === 'number' && Number.isInteger(a0)) return o.splice(this.listIndex(o, a0, pos), 1)[0] ?? null;
          const i = o.findIndex((x) => deepEqual(x, a0));
          if (i >= 0) o.splice(i, 1);
          return i >= 0;
        }
        case 'removeAll/1': {
          const els = elements(a0);
          if (!els) throw runtimeError('class_cast_exception', `Cannot cast ${javaType(a0)} to java.util.Collection`, pos);
          const before = o.length;
          const kept = o.filter((x) => !els.some((y) => deepEqual(x, y)));
          o.splice(0, o.length, ...kept);
          return kept.length !== before;
        }
        case 'contains/1': return o.some((x) => deepEqual(x, a0));
        case 'indexOf/1': return o.findIndex((x) => deepEqual(x, a0));
        case 'size/0': case 'getLength/0': return o.length;
        case 'isEmpty/0': return o.length === 0;
        case 'clear/0': o.length = 0; return null;
        case 'toArray/0': return [...o];
        case 'replaceAll/1': for (let i = 0; i < o.length; i++) o[i] = this.invoke(a0, [o[i]], pos); return null;
        case 'removeIf/1': {
          const kept = o.filter((x) => !this.bool(this.invoke(a0, [x], pos), pos));
          const changed = kept.length !== o.length;
          o.splice(0, o.length, ...kept);
          return changed;
        }
        case 'forEach/1': for (const x of [...o]) this.invoke(a0, [x], pos); return null;
      }
    } else if (o instanceof Entry) {
      switch (sig) {
        case 'getKey/0': return o.key;
        case 'getValue/0': return mapGet(o.map, o.key);
        case 'setValue/1': return mapPut(o.map, o.key, a0);
      }
    } else if (typeof o === 'string') {
      const s = (i: number): string => {
        const v = args[i];
        if (typeof v !== 'string') throw runtimeError('class_cast_exception', `Cannot cast ${javaType(v)} to java.lang.String`, pos);
        return v;
      };
      switch (sig) {
        case 'length/0': return o.length;
        case 'isEmpty/0': return o.length === 0;
        case 'contains/1': return o.includes(s(0));
        case 'startsWith/1': return o.startsWith(s(0));
        case 'endsWith/1': return o.endsWith(s(0));
        case 'indexOf/1': return o.indexOf(s(0));
        case 'toLowerCase/0': return o.toLowerCase();
        case 'toUpperCase/0': return o.toUpperCase();
        case 'trim/0': return o.trim();
        case 'replace/2': return o.split(s(0)).join(s(1));
        case 'splitOnToken/1': return o.split(s(0)); // painless augmentation: split on a literal token
        case 'substring/1': case 'substring/2': {
          const from = this.num(a0, pos);
          const to = n === 2 ? this.num(args[1], pos) : o.length;
          if (from < 0 || to > o.length || from > to) {
            throw runtimeError('string_index_out_of_bounds_exception', `begin ${from}, end ${to}, length ${o.length}`, pos);
          }
          return o.slice(from, to);
        }
      }
    }
    throw runtimeError('illegal_argument_exception', `dynamic method [${javaType(o)}, ${sig}] not found`, pos);
  }
}

function defaultOf(type: string): unknown {
  if (['int', 'long', 'short', 'byte', 'float', 'double', 'char'].includes(type)) return 0;
  return type === 'boolean' ? false : null;
}

/** Runs a compiled script against ctx (mutated in place); returns the script's value. */
export function execute(prog: Program, ctx: Obj, params: Obj): unknown {
  const out = new Interpreter(prog).run(ctx, params);
  if (isMap(ctx['_source'])) ctx['_source'] = toJson(ctx['_source'], 0);
  return out;
}

/** What Elasticsearch serialises a script's values to: sets become lists, entries single-key maps. */
function toJson(v: unknown, depth: number): unknown {
  if (depth > 1000) throw runtimeError('illegal_argument_exception', 'document is nested too deeply (or contains itself)', 0);
  if (v instanceof PSet) return v.items.map((x) => toJson(x, depth + 1));
  if (v instanceof Entry) return { [v.key]: toJson(mapGet(v.map, v.key), depth + 1) };
  if (v instanceof Lambda) throw runtimeError('illegal_argument_exception', 'cannot write a lambda into a document', 0);
  if (Array.isArray(v)) return v.map((x) => toJson(x, depth + 1));
  if (isMap(v)) {
    const out: Obj = {};
    for (const [k, x] of Object.entries(v)) mapPut(out, k, toJson(x, depth + 1));
    return out;
  }
  return v;
}
