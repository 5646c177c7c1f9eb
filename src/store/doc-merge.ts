// Elasticsearch partial-update semantics: objects merge recursively, everything else (arrays,
// scalars, null) replaces. Shared by the embedded store and the Elasticsearch double.
import { isPlainObject } from '../util/is-object';

export function mergeDoc<T extends Record<string, unknown>>(target: T, partial: Record<string, unknown>): T {
  const out: Record<string, unknown> = { ...target };
  for (const [k, v] of Object.entries(partial)) {
    if (v === undefined) continue;
    const cur = out[k];
    if (isPlainObject(v) && isPlainObject(cur)) out[k] = mergeDoc(cur, v);
    else out[k] = v;
  }
  return out as T;
}

/** Removes fields, given as dotted paths ("outputs.old"). */
export function removeFields<T extends Record<string, unknown>>(doc: T, fields: readonly string[]): T {
  for (const f of fields) {
    const parts = f.split('.');
    let node: Record<string, unknown> | undefined = doc;
    for (let i = 0; i < parts.length - 1 && node; i++) {
      const next: unknown = node[parts[i]!];
      node = isPlainObject(next) ? next : undefined;
    }
    if (node) delete node[parts[parts.length - 1]!];
  }
  return doc;
}

