// Upstream's contracts (model/openapi.yml, model/schema.json), read only when a checkout of the shared
// reference sits beside the repository (../shared/reference/upstream). They are never required: the
// project's own documents (docs/) are what tests validate against; these only check that ours agree.
import Ajv, { type ValidateFunction } from 'ajv';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse } from 'yaml';

export const UPSTREAM_DIR = resolve(__dirname, '../../../shared/reference/upstream');
const OPENAPI = resolve(UPSTREAM_DIR, 'openapi.yml');
const SCHEMA = resolve(UPSTREAM_DIR, 'schema.json');

export const upstreamAvailable = (): boolean => existsSync(OPENAPI) && existsSync(SCHEMA);

type Node = Record<string, any>;

/**
 * Upstream's contract as the Go server's wire behaviour realises it: fields typed
 * `x-go-type: json.RawMessage` carry raw JSON (any value, though declared `string`), and `oneOf` over
 * action data is a union for code generation (actionUnenroll matches anything, so no value could
 * match exactly one branch) — it is checked as `anyOf`.
 */
function asOnTheWire(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(asOnTheWire);
  if (node === null || typeof node !== 'object') return node;
  const obj = node as Node;
  if (obj['x-go-type'] === 'json.RawMessage') return {};
  const out: Node = {};
  for (const [k, v] of Object.entries(obj)) out[k === 'oneOf' ? 'anyOf' : k] = asOnTheWire(v);
  return out;
}

/**
 * schema.json generates Go structs, and reads that way: some `required` names are struct fields that are
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

let openapi: { raw: Node; wire: Node } | undefined;
let schema: { raw: Node; docs: Node } | undefined;
let ajv: Ajv | undefined;
const compiled = new Map<string, ValidateFunction>();

/** components.schemas of upstream's openapi.yml, as written. */
export function upstreamApiSchemas(): Record<string, Node> {
  if (!openapi) {
    const raw = parse(readFileSync(OPENAPI, 'utf8')) as Node;
    openapi = { raw, wire: asOnTheWire(raw) as Node };
  }
  return openapi.raw['components']['schemas'];
}

/** definitions of upstream's schema.json, as written. */
export function upstreamDocumentDefinitions(): Record<string, Node> {
  if (!schema) {
    const raw = JSON.parse(readFileSync(SCHEMA, 'utf8')) as Node;
    schema = { raw, docs: asDocuments(raw) as Node };
  }
  return schema.raw['definitions'];
}

function validators(): Ajv {
  if (ajv) return ajv;
  upstreamApiSchemas();
  upstreamDocumentDefinitions();
  ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
  ajv.addSchema({ $id: 'upstream-openapi', components: { schemas: openapi!.wire['components']['schemas'] } });
  ajv.addSchema({ ...schema!.docs, $id: 'upstream-schema' });
  return ajv;
}

function check(ref: string, value: unknown): string | undefined {
  const a = validators();
  let v = compiled.get(ref);
  if (!v) compiled.set(ref, (v = a.compile({ $ref: ref })));
  return v(value) ? undefined : a.errorsText(v.errors);
}

/** Why `value` fails upstream's openapi schema `name`, or undefined when it passes. */
export const upstreamApiErrors = (name: string, value: unknown): string | undefined =>
  check(`upstream-openapi#/components/schemas/${name}`, value);

/** Why `doc` fails upstream's document definition, or undefined when it passes. */
export const upstreamDocumentErrors = (definition: string, doc: unknown): string | undefined =>
  check(`upstream-schema#/definitions/${definition}`, doc);
