// Credentials inside documents: a policy may carry an output's `api_key` or `service_token`, an ssl
// `key`; a MIGRATE action an `enrollment_token`. The embedded store seals such values in policies and
// actions before they are written and opens them when read, so fleet logic sees the documents as given
// and a copied database holds no usable credential.
import { StoreUnavailableError } from '../port';
import { SECRET_NAME } from '../../util/redact';
import type { SecretBox } from './secret-box';

const MARK = '$sealed:';
/**
 * A sealed number (a YAML policy's `password: 123456` is one): its JSON text sealed, read back a number.
 * Sealed strings are MARK + 'v1:…' (secret-box.ts), so the two cannot be mistaken for each other.
 */
const NUMBER_MARK = `${MARK}n:`;

type Json = unknown;

/** A copy of `doc` with every non-empty string and every number under a sensitive name sealed (bound to `rowId`). */
export function sealFields<T>(doc: T, box: SecretBox, rowId: string): T {
  // Always sealed, even a value that looks sealed already: it would otherwise not read back.
  return walk(doc, false, (s) => (s === '' ? s : MARK + box.seal(s, rowId)), (n) => NUMBER_MARK + box.seal(JSON.stringify(n), rowId)) as T;
}

/**
 * A copy of `doc` with the credentials a build before sealing (or before numbers were sealed) left in
 * plain text sealed, those sealed already kept as they are; undefined when there are none, so a row
 * already right is not rewritten. A string under a sensitive name that starts with the mark is taken for
 * sealed, as openFields reads it.
 */
export function sealPlainFields<T>(doc: T, box: SecretBox, rowId: string): T | undefined {
  let plain = 0;
  const out = walk(doc, false, (s) => {
    if (s === '' || s.startsWith(MARK)) return s;
    plain++;
    return MARK + box.seal(s, rowId);
  }, (n) => {
    plain++;
    return NUMBER_MARK + box.seal(JSON.stringify(n), rowId);
  }) as T;
  return plain > 0 ? out : undefined;
}

/** The document as it was given; `text` is the stored JSON, checked first so most rows cost nothing. */
export function openFields<T>(text: string, box: SecretBox, rowId: string): T {
  const doc = JSON.parse(text) as T;
  if (!text.includes(MARK)) return doc;
  const open = (sealed: string): string => {
    const plain = box.open(sealed, rowId);
    if (plain === undefined) throw new StoreUnavailableError(`a sealed value in row ${rowId} cannot be decrypted with the configured key`);
    return plain;
  };
  return walk(doc, false, (s) => {
    if (s.startsWith(NUMBER_MARK)) return JSON.parse(open(s.slice(NUMBER_MARK.length))) as number;
    return s.startsWith(MARK) ? open(s.slice(MARK.length)) : s;
  }) as T;
}

/** `fn` applied to the strings under sensitive names, `num` to their numbers (none: left as they are). */
function walk(v: Json, sensitive: boolean, fn: (s: string) => Json, num?: (n: number) => Json): Json {
  if (typeof v === 'string') return sensitive ? fn(v) : v;
  if (typeof v === 'number') return sensitive && num ? num(v) : v;
  if (Array.isArray(v)) return v.map((x) => walk(x, sensitive, fn, num));
  if (v === null || typeof v !== 'object') return v;
  const out: Record<string, Json> = {};
  for (const [k, x] of Object.entries(v)) out[k] = walk(x, sensitive || SECRET_NAME.test(k), fn, num);
  return out;
}
