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
