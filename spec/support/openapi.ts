// Validates responses against the project's own API description, docs/openapi.yaml (OpenAPI 3.1, whose
// schemas are JSON Schema 2020-12).
import Ajv2020, { type ValidateFunction } from 'ajv/dist/2020';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse } from 'yaml';

export const OPENAPI_PATH = resolve(__dirname, '../../docs/openapi.yaml');

export interface OpenApiDocument {
  openapi: string;
  paths: Record<string, Record<string, any>>;
  components: { schemas: Record<string, any>; [k: string]: any };
}

let doc: OpenApiDocument | undefined;
let ajv: Ajv2020 | undefined;
const compiled = new Map<string, ValidateFunction>();

export function openApiDocument(): OpenApiDocument {
  doc ??= parse(readFileSync(OPENAPI_PATH, 'utf8')) as OpenApiDocument;
  return doc;
}

function load(): Ajv2020 {
  if (ajv) return ajv;
  // strict: OpenAPI's own keywords (example, discriminator…) are not JSON Schema; formats are only annotations.
  ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
  ajv.addSchema({ $id: 'openapi', components: { schemas: openApiDocument().components.schemas } });
  return ajv;
}

/** A validator for components.schemas[name]; throws when the document does not declare it. */
export function openApiValidator(name: string): ValidateFunction {
  const a = load();
  let v = compiled.get(name);
  if (!v) {
    if (!(name in openApiDocument().components.schemas)) throw new Error(`docs/openapi.yaml declares no schema ${name}`);
    v = a.compile({ $ref: `openapi#/components/schemas/${name}` });
    compiled.set(name, v);
  }
  return v;
}

/** Throws with the validation errors when `value` does not match components.schemas[name]. */
export function expectSchema(name: string, value: unknown): void {
  const v = openApiValidator(name);
  if (!v(value)) throw new Error(`response does not match openapi ${name}: ${load().errorsText(v.errors)}\n${JSON.stringify(value).slice(0, 2000)}`);
}

/** "#/a/b" for a path of keys (JSON pointer escaping). */
const pointer = (keys: string[]): string => `#/${keys.map((k) => k.replace(/~/g, '~0').replace(/\//g, '~1')).join('/')}`;

/** Follows `$ref`s, returning the node and the pointer to where it is. */
function resolveRef(at: string[], node: any): { keys: string[]; node: any } {
  let keys = at;
  let n = node;
  while (n && typeof n.$ref === 'string') {
    keys = (n.$ref as string).slice(2).split('/').map((k) => k.replace(/~1/g, '/').replace(/~0/g, '~'));
    n = keys.reduce<any>((o, k) => o?.[k], openApiDocument());
  }
  return { keys, node: n };
}

let wholeDocument: Ajv2020 | undefined;
const byPointer = new Map<string, ValidateFunction>();

function validateAt(keys: string[], value: unknown): string | undefined {
  if (!wholeDocument) {
    wholeDocument = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
    wholeDocument.addSchema({ ...openApiDocument(), $id: 'openapi-document' });
  }
  const p = pointer(keys);
  let v = byPointer.get(p);
  if (!v) byPointer.set(p, (v = wholeDocument.compile({ $ref: `openapi-document${p}` })));
  return v(value) ? undefined : wholeDocument.errorsText(v.errors);
}

export interface ObservedResponse {
  method: string;
  url: string;
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: unknown;
}

/**
 * Checks a response of a documented path against docs/openapi.yaml: the status is documented for the
 * operation (405 for another method), the required headers are there and every declared header matches
 * its schema, and the body matches the declared content. Returns the problems (empty when it conforms);
 * paths the document does not describe are not checked.
 */
export function responseProblems(r: ObservedResponse): string[] {
  const doc = openApiDocument();
  const path = new URL(r.url).pathname;
  const template = Object.keys(doc.paths).find((t) => new RegExp(`^${t.replace(/\{[^}]+\}/g, '[^/]+')}$`).test(path));
  if (!template) return [];
  const ops = doc.paths[template]!;
  const method = r.method.toLowerCase() === 'head' ? 'get' : r.method.toLowerCase();
  const opName = method in ops ? method : Object.keys(ops).find((m) => m !== 'parameters')!;
  const where = `${r.method} ${template} → ${r.status}`;
  // A malformed escape is refused before routing (400), whatever the method.
  const malformed = r.status === 400 && /%(?![0-9A-Fa-f]{2})/.test(new URL(r.url).pathname);
  if (opName !== method && r.status !== 405 && !malformed) return [`${where}: another method than the documented one must answer 405`];
  const declared = ops[opName].responses[String(r.status)] ?? ops[opName].responses['default'];
  if (!declared) return [`${where}: status not documented`];
  const { keys, node: resp } = resolveRef(['paths', template, opName, 'responses', String(r.status)], declared);
  const problems: string[] = [];
  for (const [name, h] of Object.entries((resp.headers ?? {}) as Record<string, any>)) {
    const { keys: hk, node: header } = resolveRef([...keys, 'headers', name], h);
    const value = r.headers[name.toLowerCase()];
    if (value === undefined) {
      if (header.required) problems.push(`${where}: header ${name} missing`);
      continue;
    }
    const err = validateAt([...hk, 'schema'], Array.isArray(value) ? value.join(', ') : value);
    if (err) problems.push(`${where}: header ${name} ${JSON.stringify(value)}: ${err}`);
  }
  const content = (resp.content ?? {}) as Record<string, unknown>;
  if (r.method.toUpperCase() === 'HEAD') return problems;
  if (Object.keys(content).length === 0) {
    if (r.text !== '') problems.push(`${where}: a body where none is documented`);
    return problems;
  }
  const type = String(r.headers['content-type'] ?? '').split(';')[0]!.trim();
  // `*/*` documents a body whose type is the data's own (a delivered file's mime type): any named type, unchecked.
  if (!(type in content) && !(type !== '' && '*/*' in content)) return [...problems, `${where}: content type ${JSON.stringify(type)} not documented`];
  if (type === 'application/json' && type in content) {
    const err = validateAt([...keys, 'content', type, 'schema'], r.json);
    if (err) problems.push(`${where}: body ${err}: ${r.text.slice(0, 500)}`);
  }
  return problems;
}
