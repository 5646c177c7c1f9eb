// Validates .fleet-* documents against upstream's index schema (../shared/reference/upstream/schema.json).
import Ajv, { type ValidateFunction } from 'ajv';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

const SCHEMA = resolve(__dirname, '../../../shared/reference/upstream/schema.json');

type Node = Record<string, unknown>;
let ajv: Ajv | undefined;
const compiled = new Map<string, ValidateFunction>();

/**
 * The schema generates Go structs, and reads that way: some `required` names are struct fields that are
 * not document fields (`status` of an agent, `id`/`agent`/`action` of a result), so only required names
 * that the definition declares as properties are required here.
 */
function asDocuments(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(asDocuments);
  if (node === null || typeof node !== 'object') return node;
  const obj = node as Node;
  const out: Node = {};
  for (const [k, v] of Object.entries(obj)) out[k] = asDocuments(v);
  if (Array.isArray(obj['required']) && obj['properties']) {
    out['required'] = (obj['required'] as string[]).filter((r) => r in (obj['properties'] as Node));
  }
  return out;
}

/** Elasticsearch treats a null value as missing, and upstream writes nulls to clear fields; so does this check. */
function withoutNulls(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(withoutNulls);
  if (v === null || typeof v !== 'object') return v;
  return Object.fromEntries(Object.entries(v).filter(([, x]) => x !== null).map(([k, x]) => [k, withoutNulls(x)]));
}

export function expectDocument(definition: string, doc: unknown): void {
  if (!ajv) {
    const raw = JSON.parse(readFileSync(SCHEMA, 'utf8')) as Node;
    ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
    ajv.addSchema({ ...(asDocuments(raw) as Node), $id: 'fleet' });
  }
  let v = compiled.get(definition);
  if (!v) {
    v = ajv.compile({ $ref: `fleet#/definitions/${definition}` });
    compiled.set(definition, v);
  }
  if (!v(withoutNulls(doc))) throw new Error(`document does not match schema.json ${definition}: ${ajv.errorsText(v.errors)}\n${JSON.stringify(doc).slice(0, 2000)}`);
}
