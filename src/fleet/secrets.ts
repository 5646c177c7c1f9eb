// Fleet secret references in policies: inline "$co.elastic.secret{<id>}" anywhere in a string, and the
// path form — a `secrets: {<key>: {id}}` object beside the values it fills. Replaced locations are
// reported as dotted paths (upstream's secret_paths). Actions use the inline form only.
import type { Logger } from 'pino';
import type { Json, JsonObject } from '../store/documents';
import type { Store } from '../store/port';

const INLINE = /\$co\.elastic\.secret\{([^}]*)\}/g;

export type SecretLookup = (id: string) => string | undefined;

/** Reads the referenced secrets, 32 at a time (upstream's cap); a missing one is left in place with a warning. */
export async function readSecrets(store: Pick<Store, 'getSecret'>, refs: readonly { id: string }[], log: Logger): Promise<SecretLookup> {
  const values = new Map<string, string>();
  for (let i = 0; i < refs.length; i += 32) {
    await Promise.all(refs.slice(i, i + 32).map(async (ref) => {
      const v = await store.getSecret(ref.id);
      if (v === undefined) log.warn({ 'secret.id': ref.id }, 'secret not found; reference left in place');
      else values.set(ref.id, v);
    }));
  }
  return (id) => values.get(id);
}

/** `pathForm` false: only inline references are replaced (actions, upstream's pkg/action). */
export function resolveInline(value: Json, lookup: SecretLookup, path: string, paths: Set<string>, pathForm = true): Json {
  if (typeof value === 'string') {
    if (!value.includes('$co.elastic.secret{')) return value;
    let replaced = false;
    const out = value.replace(INLINE, (whole, id: string) => {
      const v = lookup(id);
      if (v === undefined) return whole;
      replaced = true;
      return v;
    });
    if (replaced) paths.add(path);
    return out;
  }
  if (Array.isArray(value)) return value.map((v, i) => resolveInline(v, lookup, `${path}.${i}`, paths, pathForm));
  if (value !== null && typeof value === 'object') {
    const obj: JsonObject = {};
    for (const [k, v] of Object.entries(value)) obj[k] = resolveInline(v, lookup, path ? `${path}.${k}` : k, paths, pathForm);
    return pathForm ? resolvePathForm(obj, lookup, path, paths) : obj;
  }
  return value;
}

/** `secrets: {password: {id}}` sets `password` to the secret value and drops `secrets`. */
function resolvePathForm(obj: JsonObject, lookup: SecretLookup, path: string, paths: Set<string>): JsonObject {
  const secrets = obj['secrets'];
  if (secrets === null || typeof secrets !== 'object' || Array.isArray(secrets)) return obj;
  const out: JsonObject = { ...obj };
  delete out['secrets'];
  apply(out, secrets, lookup, path, paths);
  return out;
}

function apply(target: JsonObject, secrets: JsonObject, lookup: SecretLookup, path: string, paths: Set<string>): void {
  for (const [k, ref] of Object.entries(secrets)) {
    if (ref === null || typeof ref !== 'object' || Array.isArray(ref)) continue;
    const p = path ? `${path}.${k}` : k;
    if (typeof ref['id'] === 'string') {
      const v = lookup(ref['id']);
      if (v !== undefined) {
        target[k] = v;
        paths.add(p);
      }
    } else {
      const child = target[k];
      const next: JsonObject = child !== null && typeof child === 'object' && !Array.isArray(child) ? { ...child } : {};
      apply(next, ref, lookup, p, paths);
      target[k] = next;
    }
  }
}
