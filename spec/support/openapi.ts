// Validates responses against upstream's OpenAPI contract (../shared/reference/upstream/openapi.yml).
import Ajv, { type ValidateFunction } from 'ajv';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse } from 'yaml';

const SPEC = resolve(__dirname, '../../../shared/reference/upstream/openapi.yml');

let ajv: Ajv | undefined;
const compiled = new Map<string, ValidateFunction>();

/**
 * Reads the contract as the Go server's wire behaviour realises it: fields typed
 * `x-go-type: json.RawMessage` carry raw JSON (any value, though declared `string`), and `oneOf` over
 * action data is a union for code generation (actionUnenroll matches anything, so no value could
 * match exactly one branch) — it is checked as `anyOf`.
 */
function asOnTheWire(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(asOnTheWire);
  if (node === null || typeof node !== 'object') return node;
  const obj = node as Record<string, unknown>;
  if (obj['x-go-type'] === 'json.RawMessage') return {};
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) out[k === 'oneOf' ? 'anyOf' : k] = asOnTheWire(v);
  return out;
}

function load(): Ajv {
  if (ajv) return ajv;
  const raw = parse(readFileSync(SPEC, 'utf8')) as { components: { schemas: Record<string, unknown> } };
  const doc = asOnTheWire(raw) as typeof raw;
  ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
  ajv.addSchema({ $id: 'openapi', components: { schemas: doc.components.schemas } });
  return ajv;
}

/** Throws with the validation errors when `value` does not match components.schemas[name]. */
export function expectSchema(name: string, value: unknown): void {
  const a = load();
  let v = compiled.get(name);
  if (!v) {
    v = a.compile({ $ref: `openapi#/components/schemas/${name}` });
    compiled.set(name, v);
  }
  if (!v(value)) throw new Error(`response does not match openapi ${name}: ${a.errorsText(v.errors)}\n${JSON.stringify(value).slice(0, 2000)}`);
}
