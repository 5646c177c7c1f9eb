// Reading fleet-server.yml the way go-ucfg does: YAML (yaml.v2's `<<` merge keys included), variable
// expansion (${VAR}, ${VAR:default}, ${VAR:+alt}, ${VAR:?message}, nested, $$ escapes), and -E
// key=value overrides with dotted keys and numeric array indices, their values read as ucfg reads them.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { withContext } from '../util/error-text';

export type RawConfig = Record<string, unknown>;

/** ucfg's largest array index in a dotted path (its default maxIdx). */
export const MAX_ARRAY_INDEX = 1024;

/** YAML scalar typing for expanded and -E values ("8221" → 8221, "true" → true, "[a,b]" → array). */
export function parseScalar(text: string): unknown {
  if (text === '') return '';
  try {
    const v = parseYaml(text);
    // Strings stay byte-for-byte (YAML would fold a multi-line PEM into one line).
    return v === null || typeof v === 'string' ? text : v;
  } catch {
    return text;
  }
}

/** The type of one unquoted word: a YAML number or boolean, else the word itself. */
function primitive(word: string): unknown {
  if (/\s/.test(word)) return word;
  const v = parseScalar(word);
  return typeof v === 'number' || typeof v === 'boolean' ? v : word;
}

/**
 * go-ucfg's parse.ValueWithConfig: the syntax of a -E value (objects allowed) and of an expanded
 * variable (objects not allowed). Top-level commas build a list ("a, b" → ["a", "b"]); [..] is a list,
 * {k: v} an object, "..." a string with escapes, '...' a string without; other words are typed as
 * numbers or booleans, else kept as (trimmed) strings. Throws on malformed input, as upstream does.
 */
export function parseValue(content: string, objects = true): unknown {
  const p = new ValueParser(content.trim(), objects);
  let v: unknown;
  try {
    v = p.parse();
  } catch (err) {
    // The value is not repeated: it may be a password or a key (from a variable, or -E).
    throw new Error(`${(err as Error).message} in the value`);
  }
  // An empty value is the (blank) string; `null` or `[]` is no value.
  if (v === null) return content.trim() === '' ? content : null;
  return v;
}

class ValueParser {
  constructor(private input: string, private readonly objects: boolean) {}

  parse(): unknown {
    const values: unknown[] = [];
    for (;;) {
      values.push(this.value(','));
      this.skipSpace();
      if (this.input === '') break;
      this.expect(',');
    }
    return values.length === 1 ? values[0] : values;
  }

  private value(stop: string): unknown {
    this.skipSpace();
    const c = this.input[0];
    if (c === undefined) return null;
    if (c === '[') return this.array();
    if (c === '{' && this.objects) return this.object();
    if (c === '"') return this.doubleQuoted();
    if (c === "'") return this.singleQuoted();
    return primitive(this.word(stop));
  }

  private skipSpace(): void {
    this.input = this.input.trimStart();
  }

  private expect(c: string): void {
    if (this.input[0] !== c) throw new Error(`expected '${c}'`);
    this.input = this.input.slice(1);
  }

  private array(): unknown {
    this.input = this.input.slice(1);
    const values: unknown[] = [];
    for (;;) {
      this.skipSpace();
      if (this.input[0] === ']') {
        this.input = this.input.slice(1);
        break;
      }
      if (this.input === '') throw new Error("array closing ']' missing");
      values.push(this.value(',]'));
      this.skipSpace();
      const next = this.input[0];
      if (next === undefined) throw new Error("array closing ']' missing");
      this.input = this.input.slice(1);
      if (next === ']') break;
      if (next !== ',') throw new Error("array expected ',' or ']'");
    }
    return values.length === 0 ? null : values;
  }

  private object(): unknown {
    this.input = this.input.slice(1);
    const out: RawConfig = {};
    for (;;) {
      this.skipSpace();
      if (this.input[0] === '}') {
        this.input = this.input.slice(1);
        break;
      }
      if (this.input === '') throw new Error("dictionary expected ',' or '}'");
      const c = this.input[0];
      const key = c === '"' ? this.doubleQuoted() : c === "'" ? this.singleQuoted() : this.word(':');
      this.skipSpace();
      this.expect(':');
      const v = this.value(',}');
      this.skipSpace();
      const next = this.input[0];
      if (next === undefined) throw new Error("dictionary expected ',' or '}'");
      this.input = this.input.slice(1);
      Object.defineProperty(out, key, { value: v, enumerable: true, writable: true, configurable: true });
      if (next === '}') break;
      if (next !== ',') throw new Error("dictionary expected ',' or '}'");
    }
    return Object.keys(out).length === 0 ? null : out;
  }

  private doubleQuoted(): string {
    let i = 0;
    for (;;) {
      i = this.input.indexOf('"', i + 1);
      if (i < 0) throw new Error('missing " to close string');
      if (this.input[i - 1] !== '\\') break;
    }
    const quoted = this.input.slice(0, i + 1);
    this.input = this.input.slice(i + 1);
    try {
      return JSON.parse(quoted) as string;
    } catch {
      throw new Error(`invalid quoted string ${quoted}`);
    }
  }

  private singleQuoted(): string {
    const i = this.input.indexOf("'", 1);
    if (i < 0) throw new Error("missing ' to close string");
    const s = this.input.slice(1, i);
    this.input = this.input.slice(i + 1);
    return s;
  }

  private word(stop: string): string {
    let idx = -1;
    for (let i = 0; i < this.input.length; i++) {
      if (stop.includes(this.input[i]!)) {
        idx = i;
        break;
      }
    }
    if (idx === 0) throw new Error(`unexpected '${this.input[0]}'`);
    const w = idx < 0 ? this.input : this.input.slice(0, idx);
    this.input = idx < 0 ? '' : this.input.slice(idx);
    return w.trim();
  }
}

// ---- Variable expansion (go-ucfg's variables.go) ----

type Expansion =
  | { kind: 'text'; text: string }
  | { kind: 'ref'; name: string }
  | { kind: 'computed'; name: Expansion }
  | { kind: 'op'; op: ':' | ':+' | ':?'; left: Expansion; right: Expansion }
  | { kind: 'splice'; pieces: Expansion[] };

type Token = { t: 'open' } | { t: 'close' } | { t: 'sep'; op: ':' | ':+' | ':?' } | { t: 'str'; s: string };

/** ucfg's lexer: `${` opens, `}` closes, `:`/`:+`/`:?` separate inside one; `$$` and `$}` are escapes. */
function lex(input: string): Token[] {
  const out: Token[] = [];
  const str = (s: string): void => {
    if (s !== '') out.push({ t: 'str', s });
  };
  let content = input;
  let off = 0;
  let depth = 0;
  while (content.length > 0) {
    let idx = -1;
    for (let i = off; i < content.length; i++) {
      const c = content[i]!;
      if (c === '$' || (depth > 0 && (c === ':' || c === '}'))) {
        idx = i;
        break;
      }
    }
    if (idx < 0) break;
    off = idx + 1;
    const c = content[idx]!;
    if (c === ':') {
      if (content.length <= off) break;
      str(content.slice(0, idx));
      const n = content[off];
      if (n === '+' || n === '?') {
        off++;
        out.push({ t: 'sep', op: n === '+' ? ':+' : ':?' });
      } else {
        out.push({ t: 'sep', op: ':' });
      }
    } else if (c === '}') {
      str(content.slice(0, idx));
      out.push({ t: 'close' });
      depth--;
    } else {
      if (content.length <= off) break;
      const n = content[off];
      if (n === '{') {
        str(content.slice(0, idx));
        out.push({ t: 'open' });
        off++;
        depth++;
      } else {
        // `$$` and `$}` stand for `$` and `}`; any other `$` is itself.
        if (n === '$' || n === '}') content = content.slice(0, idx) + content.slice(off);
        continue;
      }
    }
    content = content.slice(off);
    off = 0;
  }
  str(content);
  return out;
}

interface ParseState {
  right: boolean;
  op: ':' | ':+' | ':?';
  pieces: [Expansion[], Expansion[]];
}

function addText(pieces: Expansion[], s: string): void {
  const last = pieces[pieces.length - 1];
  if (last?.kind === 'text') last.text += s;
  else pieces.push({ kind: 'text', text: s });
}

function joined(pieces: Expansion[]): Expansion {
  if (pieces.length === 0) return { kind: 'text', text: '' };
  return pieces.length === 1 ? pieces[0]! : { kind: 'splice', pieces };
}

function finish(st: ParseState): Expansion {
  const left = st.pieces[0];
  if (left.length === 0) throw new Error('empty expansion');
  if (!st.right) {
    const only = left.length === 1 ? left[0]! : undefined;
    return only?.kind === 'text' ? { kind: 'ref', name: only.text } : { kind: 'computed', name: joined(left) };
  }
  return { kind: 'op', op: st.op, left: joined(left), right: joined(st.pieces[1]) };
}

/** A string value as ucfg's parseSplice reads it. */
function parseExpansion(input: string): Expansion {
  const stack: ParseState[] = [{ right: false, op: ':', pieces: [[], []] }];
  const top = (): ParseState => stack[stack.length - 1]!;
  for (const tok of lex(input)) {
    if (tok.t === 'open') stack.push({ right: false, op: ':', pieces: [[], []] });
    else if (tok.t === 'close') {
      const piece = finish(stack.pop()!);
      if (stack.length === 0) throw new Error("unexpected '}'");
      const st = top();
      st.pieces[st.right ? 1 : 0].push(piece);
    } else if (tok.t === 'sep') {
      const st = top();
      if (st.right) addText(st.pieces[1], tok.op);
      else {
        st.right = true;
        st.op = tok.op;
      }
    } else {
      const st = top();
      addText(st.pieces[st.right ? 1 : 0], tok.s);
    }
  }
  if (stack.length > 1) throw new Error("missing '}'");
  return joined(stack[0]!.pieces[0]);
}

/** What a `${name}` is resolved against: the configuration's own keys first, then the environment. */
interface Resolver {
  root: RawConfig;
  env: NodeJS.ProcessEnv;
  /** Keys whose references are being expanded now: one met again is a cycle. */
  resolving: string[];
  /** Keys already expanded: a key named many times (or by keys that name it many times) is expanded once. */
  resolved: Map<string, string>;
}

/** No configuration value is this long; past it a file of references that multiply each other is refused. */
const MAX_EXPANDED_CHARS = 1024 * 1024;

/** Enough for any chain an operator writes. */
const MAX_REFERENCE_DEPTH = 16;

/**
 * A name's value, '' when unset: as ucfg's reference resolution (PathSep "."), a key of the same
 * configuration (`${path.data}`) is read first, then the environment (unset and empty are the same).
 */
function valueOf(name: string, r: Resolver): string {
  const ref = getPath(r.root, name);
  if (ref === undefined || ref === null) return r.env[name] ?? '';
  if (typeof ref === 'object') throw new Error(`\${${name}} names a list or an object, not a value`);
  if (typeof ref !== 'string') return String(ref);
  const done = r.resolved.get(name);
  if (done !== undefined) return done;
  if (r.resolving.includes(name)) throw new Error(`\${${name}} refers back to itself`);
  if (r.resolving.length >= MAX_REFERENCE_DEPTH) throw new Error(`\${${name}}: references nest deeper than ${MAX_REFERENCE_DEPTH}`);
  r.resolving.push(name);
  try {
    const parsed = parseExpansion(ref);
    const text = parsed.kind === 'text' ? parsed.text : evaluate(parsed, r);
    r.resolved.set(name, text);
    return text;
  } finally {
    r.resolving.pop();
  }
}

function lookup(name: string, r: Resolver): string {
  const v = valueOf(name, r);
  if (v !== '') return v;
  if (name.includes('.')) throw new Error(`${name} is neither a config key nor a set environment variable, and has no default`);
  throw new Error(`environment variable ${name} is not set (or is empty) and has no default`);
}

function evaluate(e: Expansion, r: Resolver): string {
  switch (e.kind) {
    case 'text': return e.text;
    case 'splice': {
      const text = e.pieces.map((p) => evaluate(p, r)).join('');
      if (text.length > MAX_EXPANDED_CHARS) throw new Error(`expands to more than ${MAX_EXPANDED_CHARS} characters`);
      return text;
    }
    case 'ref': return lookup(e.name, r);
    case 'computed': return lookup(evaluate(e.name, r), r);
    case 'op': {
      let name = '';
      try {
        name = evaluate(e.left, r);
      } catch {
        // ucfg: a left side that cannot be evaluated is an unset variable.
      }
      const value = name === '' ? '' : valueOf(name, r);
      if (e.op === ':') return value !== '' ? value : evaluate(e.right, r);
      if (e.op === ':+') return value !== '' ? evaluate(e.right, r) : '';
      if (value !== '') return value;
      throw new Error(evaluate(e.right, r) || `environment variable ${name} is not set (or is empty)`);
    }
  }
}

/**
 * Expands one string value as ucfg does. A value with no expansion is itself (less its `$$`/`$}`
 * escapes). A value that is exactly one `${VAR}` is read with the environment syntax (top-level commas
 * make a list, no objects); any other value with an expansion with the full -E syntax.
 */
function expandString(value: string, key: string, r: Resolver): unknown {
  if (!value.includes('$')) return value;
  const prefix = `config key ${key || '(root)'}`;
  let exp: Expansion;
  try {
    exp = parseExpansion(value);
  } catch (err) {
    throw new Error(`${prefix}: ${(err as Error).message}`);
  }
  if (exp.kind === 'text') return exp.text;
  let text: string;
  try {
    text = evaluate(exp, r);
  } catch (err) {
    throw new Error(`${prefix}: ${(err as Error).message}`);
  }
  try {
    return parseValue(text, exp.kind !== 'ref');
  } catch (err) {
    throw new Error(`${prefix}: ${(err as Error).message}`);
  }
}

/**
 * Expands every string in a configuration as ucfg does: `${name}` is a key of `root` (the whole
 * configuration) or an environment variable.
 */
function expandConfig(root: RawConfig, env: NodeJS.ProcessEnv): RawConfig {
  return expandTree(root, '', { root, env, resolving: [], resolved: new Map() }) as RawConfig;
}

function expandTree(value: unknown, key: string, r: Resolver): unknown {
  if (typeof value === 'string') return expandString(value, key, r);
  const at = (k: string | number): string => (key ? `${key}.${k}` : String(k));
  if (Array.isArray(value)) return value.map((v, i) => expandTree(v, at(i), r));
  if (value !== null && typeof value === 'object') {
    const out: RawConfig = {};
    for (const [k, v] of Object.entries(value)) setOwn(out, k, expandTree(v, at(k), r));
    return out;
  }
  return value;
}

/** Sets a property, `__proto__` included, as an own property (never the object's prototype). */
function setOwn(obj: any, key: string | number, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

function ownValue(obj: any, key: string | number): unknown {
  return Object.prototype.hasOwnProperty.call(obj, key) ? obj[key] : undefined;
}

/** An array index in a dotted path, as ucfg accepts one: a whole number up to MAX_ARRAY_INDEX. */
function arrayIndex(part: string, path: string): number {
  if (!/^\d+$/.test(part)) throw new Error(`config key ${path}: "${part}" is not an array index (the value there is a list)`);
  const n = Number(part);
  if (n > MAX_ARRAY_INDEX) throw new Error(`config key ${path}: array index ${part} is above ${MAX_ARRAY_INDEX}`);
  return n;
}

/** Sets `inputs.0.server.port` style paths, creating objects and arrays as needed. */
export function setPath(root: RawConfig, dotted: string, value: unknown): void {
  const parts = dotted.split('.');
  let node: any = root;
  for (let i = 0; i < parts.length; i++) {
    const key = parts[i]!;
    const path = parts.slice(0, i + 1).join('.');
    const idx = Array.isArray(node) ? arrayIndex(key, path) : key;
    if (i === parts.length - 1) {
      setOwn(node, idx, value);
      return;
    }
    let child = ownValue(node, idx);
    if (child === null || typeof child !== 'object') {
      const next = parts[i + 1]!;
      if (/^\d+$/.test(next)) arrayIndex(next, `${path}.${next}`);
      child = /^\d+$/.test(next) ? [] : {};
      setOwn(node, idx, child);
    }
    node = child;
  }
}

/** Normalizes YAML keys written with dots (`server.port: 1`) into nested objects, as ucfg does. */
export function nestDottedKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(nestDottedKeys);
  if (value === null || typeof value !== 'object') return value;
  const out: RawConfig = {};
  for (const [k, v] of Object.entries(value)) {
    const nested = nestDottedKeys(v);
    if (k.includes('.')) setPath(out, k, mergeRaw(getPath(out, k), nested));
    else setOwn(out, k, mergeRaw(ownValue(out, k), nested));
  }
  return out;
}

function getPath(root: any, dotted: string): unknown {
  let node = root;
  for (const p of dotted.split('.')) {
    if (node === null || typeof node !== 'object') return undefined;
    node = ownValue(node, p);
  }
  return node;
}

/** Deep merge: objects merge key by key, anything else in `b` wins. */
export function mergeRaw(a: unknown, b: unknown): unknown {
  if (a && b && typeof a === 'object' && typeof b === 'object' && !Array.isArray(a) && !Array.isArray(b)) {
    const out: RawConfig = { ...(a as RawConfig) };
    for (const [k, v] of Object.entries(b)) setOwn(out, k, mergeRaw(ownValue(out, k), v));
    return out;
  }
  return b;
}

export interface LoadOptions {
  file?: string;
  overrides?: string[];
  env?: NodeJS.ProcessEnv;
}

/** A config file's text as yaml.v2 reads it: `<<` merge keys included. */
export function parseConfigYaml(text: string): unknown {
  return parseYaml(text, { merge: true });
}

/** One -E argument: `key=value` (the value in ucfg's command-line syntax), or `key` for true. */
export function applyOverride(raw: RawConfig, o: string): void {
  const eq = o.indexOf('=');
  // As upstream's -E: a key with no value is the boolean true.
  if (eq < 0 && o.trim() !== '') return setPath(raw, o.trim(), true);
  if (eq <= 0) throw new Error(`-E ${o}: expected key=value`);
  const key = o.slice(0, eq).trim();
  let value: unknown;
  try {
    value = parseValue(o.slice(eq + 1));
  } catch (err) {
    throw new Error(`-E ${key}: ${(err as Error).message}`);
  }
  setPath(raw, key, value);
}

export function loadRawConfig(opts: LoadOptions): RawConfig {
  let raw: RawConfig = {};
  if (opts.file) {
    let text: string;
    try {
      text = readFileSync(opts.file, 'utf8');
    } catch (err) {
      throw withContext(`cannot read config file ${opts.file}`, err);
    }
    let parsed: unknown;
    try {
      parsed = parseConfigYaml(text);
    } catch (err) {
      throw withContext(`config file ${opts.file} is not valid YAML`, err);
    }
    if (parsed !== null && parsed !== undefined) {
      if (typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error(`${opts.file}: expected a YAML mapping`);
      raw = parsed as RawConfig;
    }
  }
  raw = nestDottedKeys(raw) as RawConfig;
  for (const o of opts.overrides ?? []) applyOverride(raw, o);
  return expandConfig(raw, opts.env ?? process.env);
}
