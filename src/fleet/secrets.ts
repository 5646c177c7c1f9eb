// Fleet secret references in policies: inline "$co.elastic.secret{<id>}" anywhere in a string, and the
// path form — a `secrets: {<key>: {id}}` object beside the values it fills. Replaced locations are
// reported as dotted paths (upstream's secret_paths). Actions use the inline form only.
//
// Where the path form is read follows upstream's internal/pkg/secret: at the root of each output
// (ProcessOutputSecret), of agent.download and fleet, and of each OTel component (ProcessMapSecrets); in
// inputs at any depth (ProcessInputsSecrets, replacePathSecretRefsInMap). Anywhere else a `secrets` key is
// the integration's own setting and goes to the agent as it is.
import type { Logger } from 'pino';
import type { Json, JsonObject } from '../store/documents';
import type { Store } from '../store/port';
import { isPlainObject } from '../util/is-object';

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

/**
 * Where a section reads the path form, by the path its caller names it with: `0` at the section's root,
 * `1` at the root of each of its named children, `'nested'` at any depth.
 */
type PathFormAt = 0 | 1 | 'nested' | undefined;
const OTEL_COMPONENT_SECTIONS = new Set(['extensions', 'receivers', 'processors', 'connectors', 'exporters']);
function pathFormAt(section: string): PathFormAt {
  if (section === 'inputs') return 'nested';
  if (section === 'outputs' || OTEL_COMPONENT_SECTIONS.has(section)) return 1;
  if (section === 'agent.download' || section === 'fleet') return 0;
  return undefined;
}

/**
 * Replaces the references in a policy section (`path`: `outputs`, `inputs`, `agent.download`, `fleet` or
 * an OTel section). `pathForm` false: only inline references are replaced (actions, upstream's pkg/action).
 */
export function resolveInline(value: Json, lookup: SecretLookup, path: string, paths: Set<string>, pathForm = true): Json {
  return resolve(value, lookup, path, paths, pathForm ? pathFormAt(path) : undefined);
}

function resolve(value: Json, lookup: SecretLookup, path: string, paths: Set<string>, at: PathFormAt): Json {
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
  // Only the inputs read the path form below a named child: elsewhere an array's objects are settings.
  if (Array.isArray(value)) return value.map((v, i) => resolve(v, lookup, `${path}.${i}`, paths, at === 'nested' ? at : undefined));
  if (value !== null && typeof value === 'object') {
    const below: PathFormAt = at === 'nested' ? 'nested' : at === 1 ? 0 : undefined;
    const obj: JsonObject = {};
    for (const [k, v] of Object.entries(value)) obj[k] = resolve(v, lookup, path ? `${path}.${k}` : k, paths, below);
    if (at === 0) return resolvePathForm(obj, lookup, path, paths);
    // Inside inputs a `secrets` object holding no reference is a setting of the input, not the path form.
    if (at === 'nested' && holdsReference(obj['secrets'])) return resolvePathForm(obj, lookup, path, paths);
    return obj;
  }
  return value;
}

/** A `secrets` object with some `<key>: {id}` (at any depth) in it. */
function holdsReference(secrets: Json | undefined): boolean {
  if (!isPlainObject(secrets)) return false;
  return Object.values(secrets).some((ref) => isPlainObject(ref)
    && (typeof ref['id'] === 'string' || holdsReference(ref)));
}

/** `secrets: {password: {id}}` sets `password` to the secret value and drops `secrets`. */
function resolvePathForm(obj: JsonObject, lookup: SecretLookup, path: string, paths: Set<string>): JsonObject {
  const secrets = obj['secrets'];
  if (!isPlainObject(secrets)) return obj;
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
