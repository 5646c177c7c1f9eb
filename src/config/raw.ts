// Reading fleet-server.yml the way go-ucfg does: YAML, ${VAR} / ${VAR:default} expansion where
// referenced, and -E key=value overrides with dotted keys and numeric array indices.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { withContext } from '../util/error-text';

export type RawConfig = Record<string, unknown>;

const VAR = /\$\{([A-Za-z_][A-Za-z0-9_.]*)(?::([^}]*))?\}/g;
const WHOLE_VAR = /^\$\{([A-Za-z_][A-Za-z0-9_.]*)(?::([^}]*))?\}$/;

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

function lookup(name: string, fallback: string | undefined, env: NodeJS.ProcessEnv): string {
  const v = env[name];
  if (v !== undefined) return v;
  if (fallback !== undefined) return fallback;
  throw new Error(`missing field accessing '${name}' (environment variable is not set and has no default)`);
}

export function expandEnv(value: unknown, env: NodeJS.ProcessEnv = process.env): unknown {
  if (typeof value === 'string') {
    const whole = WHOLE_VAR.exec(value);
    if (whole) return parseScalar(lookup(whole[1]!, whole[2], env));
    return value.replace(VAR, (_m, name: string, def?: string) => lookup(name, def, env));
  }
  if (Array.isArray(value)) return value.map((v) => expandEnv(v, env));
  if (value !== null && typeof value === 'object') {
    const out: RawConfig = {};
    for (const [k, v] of Object.entries(value)) out[k] = expandEnv(v, env);
    return out;
  }
  return value;
}

/** Sets `inputs.0.server.port` style paths, creating objects and arrays as needed. */
export function setPath(root: RawConfig, dotted: string, value: unknown): void {
  const parts = dotted.split('.');
  let node: any = root;
  for (let i = 0; i < parts.length - 1; i++) {
    const key = parts[i]!;
    const nextIsIndex = /^\d+$/.test(parts[i + 1]!);
    const idx = Array.isArray(node) ? Number(key) : key;
    let child = node[idx];
    if (child === null || typeof child !== 'object') {
      child = nextIsIndex ? [] : {};
      node[idx] = child;
    }
    node = child;
  }
  const last = parts[parts.length - 1]!;
  node[Array.isArray(node) ? Number(last) : last] = value;
}

/** Normalizes YAML keys written with dots (`server.port: 1`) into nested objects, as ucfg does. */
export function nestDottedKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(nestDottedKeys);
  if (value === null || typeof value !== 'object') return value;
  const out: RawConfig = {};
  for (const [k, v] of Object.entries(value)) {
    const nested = nestDottedKeys(v);
    if (k.includes('.')) setPath(out, k, mergeRaw(getPath(out, k), nested));
    else out[k] = mergeRaw(out[k], nested);
  }
  return out;
}

function getPath(root: any, dotted: string): unknown {
  let node = root;
  for (const p of dotted.split('.')) {
    if (node === null || typeof node !== 'object') return undefined;
    node = node[p];
  }
  return node;
}

/** Deep merge: objects merge key by key, anything else in `b` wins. */
export function mergeRaw(a: unknown, b: unknown): unknown {
  if (a && b && typeof a === 'object' && typeof b === 'object' && !Array.isArray(a) && !Array.isArray(b)) {
    const out: RawConfig = { ...(a as RawConfig) };
    for (const [k, v] of Object.entries(b)) out[k] = mergeRaw(out[k], v);
    return out;
  }
  return b;
}

export interface LoadOptions {
  file?: string;
  overrides?: string[];
  env?: NodeJS.ProcessEnv;
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
      parsed = parseYaml(text);
    } catch (err) {
      throw withContext(`config file ${opts.file} is not valid YAML`, err);
    }
    if (parsed !== null && parsed !== undefined) {
      if (typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error(`${opts.file}: expected a YAML mapping`);
      raw = parsed as RawConfig;
    }
  }
  raw = nestDottedKeys(raw) as RawConfig;
  for (const o of opts.overrides ?? []) {
    const eq = o.indexOf('=');
    // As upstream's -E: a key with no value is the boolean true.
    if (eq < 0 && o.trim() !== '') setPath(raw, o.trim(), true);
    else if (eq <= 0) throw new Error(`-E ${o}: expected key=value`);
    else setPath(raw, o.slice(0, eq).trim(), parseScalar(o.slice(eq + 1)));
  }
  return expandEnv(raw, opts.env ?? process.env) as RawConfig;
}
