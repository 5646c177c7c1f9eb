// Validates .fleet-* documents against the project's own schema, docs/fleet-documents.schema.json.
import Ajv2020, { type ValidateFunction } from 'ajv/dist/2020';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

export const DOCUMENT_SCHEMA_PATH = resolve(__dirname, '../../docs/fleet-documents.schema.json');

type Node = Record<string, unknown>;
let schema: { $defs: Record<string, Node> } | undefined;
let ajv: Ajv2020 | undefined;
const compiled = new Map<string, ValidateFunction>();

export function documentSchema(): { $defs: Record<string, Node> } {
  schema ??= JSON.parse(readFileSync(DOCUMENT_SCHEMA_PATH, 'utf8')) as { $defs: Record<string, Node> };
  return schema;
}

/** Elasticsearch treats a null value as missing, and upstream writes nulls to clear fields; so does this check. */
export function withoutNulls(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(withoutNulls);
  if (v === null || typeof v !== 'object') return v;
  return Object.fromEntries(Object.entries(v).filter(([, x]) => x !== null).map(([k, x]) => [k, withoutNulls(x)]));
}

export function documentValidator(definition: string): ValidateFunction {
  if (!ajv) {
    ajv = new Ajv2020({ strict: true, allErrors: true });
    ajv.addSchema({ ...documentSchema(), $id: 'fleet' });
  }
  let v = compiled.get(definition);
  if (!v) {
    if (!(definition in documentSchema().$defs)) throw new Error(`docs/fleet-documents.schema.json declares no ${definition}`);
    v = ajv.compile({ $ref: `fleet#/$defs/${definition}` });
    compiled.set(definition, v);
  }
  return v;
}

export function expectDocument(definition: string, doc: unknown): void {
  const v = documentValidator(definition);
  if (!v(withoutNulls(doc))) throw new Error(`document does not match fleet-documents ${definition}: ${ajv!.errorsText(v.errors)}\n${JSON.stringify(doc).slice(0, 2000)}`);
}
