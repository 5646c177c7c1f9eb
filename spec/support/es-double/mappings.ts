// The mapped fields of the Fleet system indices (dynamic: false), as the Fleet plugin's templates declare
// them (x-pack/plugin/core/template-resources: fleet-agents.json, fleet-actions.json, …). Queries and
// sorts only see mapped fields; other fields live in _source only. A value a mapped field cannot take,
// or a concrete value where the mapping has an object, is refused as Elasticsearch's document parser
// refuses it. Indices that are not Fleet's, and objects mapped `dynamic: true`, map a field the first
// time they see it (its type from that value) and then hold later documents to that type.

export type FieldType = 'keyword' | 'text' | 'date' | 'integer' | 'long' | 'boolean' | 'binary' | 'float' | 'double';

/** A field's type as a dynamic mapping learned it, or `object`. */
export type Learned = FieldType | 'object';

export interface Mapping {
  /** False for Fleet indices: unmapped fields are kept but not indexed. */
  dynamic: boolean;
  fields: Map<string, FieldType>;
  /** Object paths stored with enabled:false (never indexed, any content accepted). */
  disabled: Set<string>;
  /** Object paths mapped `dynamic: true` inside a static index. */
  dynamicObjects: Set<string>;
  /** Fields mapped with `store: true`: what `stored_fields` can return. */
  stored: Set<string>;
  /** Paths the mapping declares as objects (parents of mapped fields, and dynamic objects). */
  objects: Set<string>;
  /** What dynamic mapping added, per index (each index gets its own copy of a template). */
  learned: Map<string, Learned>;
}

function mapping(fields: Record<string, FieldType>, disabled: string[] = [], dynamicObjects: string[] = [], stored: string[] = []): Mapping {
  const f = new Map(Object.entries(fields));
  const objects = new Set<string>(dynamicObjects);
  for (const path of f.keys()) {
    const parts = path.split('.');
    // A multi-field (`x.keyword`) is a leaf's sub-field: its parent stays a leaf, not an object.
    for (let i = 1; i < parts.length; i++) {
      const prefix = parts.slice(0, i).join('.');
      if (!f.has(prefix)) objects.add(prefix);
    }
  }
  return { dynamic: false, fields: f, disabled: new Set(disabled), dynamicObjects: new Set(dynamicObjects), stored: new Set(stored), objects, learned: new Map() };
}

const k = 'keyword' as const;
const d = 'date' as const;
const t = 'text' as const;
const b = 'boolean' as const;

/** A text field with its `.keyword` multi-field, as the templates map free text. */
const textKw = (name: string): Record<string, FieldType> => ({ [name]: t, [`${name}.keyword`]: k });

const LOCAL_METADATA: Record<string, FieldType> = {
  ...textKw('local_metadata.elastic.agent.build.original'), 'local_metadata.elastic.agent.id': k,
  'local_metadata.elastic.agent.log_level': k, 'local_metadata.elastic.agent.snapshot': b, 'local_metadata.elastic.agent.upgradeable': b,
  'local_metadata.elastic.agent.unprivileged': b, 'local_metadata.elastic.agent.fips': b, ...textKw('local_metadata.elastic.agent.version'),
  'local_metadata.host.architecture': k, ...textKw('local_metadata.host.hostname'), 'local_metadata.host.id': k,
  ...textKw('local_metadata.host.ip'), ...textKw('local_metadata.host.mac'), ...textKw('local_metadata.host.name'),
  'local_metadata.os.family': k, ...textKw('local_metadata.os.full'), ...textKw('local_metadata.os.kernel'), ...textKw('local_metadata.os.name'),
  'local_metadata.os.platform': k, ...textKw('local_metadata.os.version'),
};

const UPGRADE_DETAILS: Record<string, FieldType> = {
  ...textKw('upgrade_details.target_version'), 'upgrade_details.action_id': k, 'upgrade_details.state': k,
  'upgrade_details.metadata.scheduled_at': d, 'upgrade_details.metadata.download_percent': 'double',
  'upgrade_details.metadata.download_rate': 'double', 'upgrade_details.metadata.failed_state': k,
  ...textKw('upgrade_details.metadata.error_msg'), ...textKw('upgrade_details.metadata.retry_error_msg'),
  'upgrade_details.metadata.retry_until': d,
};

export const FLEET_MAPPINGS: Record<string, Mapping> = {
  // local_metadata and upgrade_details are objects of the static mapping (not dynamic): only the fields
  // fleet-agents.json names are typed and searchable, and those are held to their types.
  '.fleet-agents': mapping({
    access_api_key_id: k, enrollment_id: k, 'agent.id': k, 'agent.version': k, 'agent.type': k, policy_id: k, policy_base_id: k,
    agent_policy_id: k, type: k, tags: k, namespaces: k, last_checkin_status: k, unhealthy_reason: k, upgrade_status: k,
    active: b, policy_revision_idx: 'integer', policy_coordinator_idx: 'integer', action_seq_no: 'integer',
    enrolled_at: d, last_checkin: d, last_updated: d, updated_at: d, unenrolled_at: d, unenrollment_started_at: d, upgrade_started_at: d,
    upgraded_at: d, upgrade_attempts: d, audit_unenrolled_time: d, audit_unenrolled_reason: k, unenrolled_reason: k,
    ...textKw('last_checkin_message'), replace_token: k, shared_id: k, packages: k,
    default_api_key_id: k, default_api_key: k, policy_output_permissions_hash: k, sort: 'long',
    ...LOCAL_METADATA, ...UPGRADE_DETAILS,
  }, ['components', 'user_provided_metadata', 'default_api_key_history']),
  '.fleet-actions': mapping({
    action_id: k, agents: k, type: k, input_type: k, user_id: k, namespaces: k, '@timestamp': d, expiration: d,
    start_time: d, minimum_execution_duration: 'integer', rollout_duration_seconds: 'integer', timeout: 'integer',
    'signed.data': 'binary', 'signed.signature': 'binary', traceparent: k,
  }, ['data']),
  '.fleet-actions-results': mapping({
    action_id: k, agent_id: k, action_input_type: k, namespaces: k, '@timestamp': d, started_at: d, completed_at: d,
    ...textKw('error'),
  }, ['action_data', 'data'], ['action_response']),
  '.fleet-enrollment-api-keys': mapping({
    api_key_id: k, api_key: k, name: k, policy_id: k, namespaces: k, active: b, hidden: b,
    created_at: d, expire_at: d, updated_at: d,
  }),
  '.fleet-policies': mapping({
    policy_id: k, namespaces: k, revision_idx: 'integer', coordinator_idx: 'integer', unenroll_timeout: 'integer',
    '@timestamp': d, default_fleet_server: b,
  }, ['data']),
  '.fleet-artifacts': mapping({
    identifier: k, decoded_sha256: k, encoded_sha256: k, package_name: k, type: k, relative_url: k, created: d,
    body: 'binary', compression_algorithm: k, encryption_algorithm: k, encoded_size: 'long', decoded_size: 'long',
  }),
  '.fleet-secrets': mapping({ value: k }),
  '.fleet-servers': mapping({
    'server.id': k, 'server.version': k, 'agent.id': k, 'agent.version': k, 'host.architecture': k, 'host.id': k, 'host.ip': k,
    'host.name': k, '@timestamp': d,
  }),
  '.fleet-policies-leader': mapping({ 'server.id': k, 'server.version': k, '@timestamp': d }),
};

/**
 * File transfer indices by name pattern, as the Fleet plugin's and Endpoint's index templates map them:
 * upload metadata, and chunk documents. The to-host (delivery) and integration library templates map
 * `data` as a binary field with `store: true`, read back with `stored_fields=data`; the from-host
 * (upload) data template (fleet-file-fromhost-data) does not store it, so a stored-fields read of an
 * upload chunk answers without `fields` and its bytes come from `_source`.
 */
const FILE_MAPPINGS: [RegExp, () => Mapping][] = [
  [/^\.fleet-fileds-fromhost-meta-/, () => mapping({
    agent_id: k, action_id: k, source: k, upload_id: k, namespaces: k, 'file.Status': k, 'file.Compression': k, 'file.name': k,
    'file.ChunkSize': 'integer', '@timestamp': d, upload_start: d,
  })],
  [/^\.fleet-fileds-tohost-meta-/, () => mapping({
    agent_id: k, action_id: k, source: k, 'file.Status': k, 'file.Compression': k, 'file.name': k, 'file.ChunkSize': 'integer',
    'file.Meta.target_agents': k, '@timestamp': d,
  })],
  [/^\.fleet-fileds-fromhost-data-.+$/, () => mapping({
    bid: k, sha2: k, last: b, data: 'binary', '@timestamp': d,
  })],
  [/^\.(fleet-fileds-tohost-data-.+|[a-z0-9_-]+-fleetfiles-.+-data)$/, () => mapping({
    bid: k, sha2: k, last: b, data: 'binary', '@timestamp': d,
  }, [], [], ['data'])],
];

/** A new index's own mapping (a copy: what dynamic mapping learns belongs to that index alone). */
export function mappingFor(name: string): Mapping {
  const template = FLEET_MAPPINGS[name] ?? FILE_MAPPINGS.find(([re]) => re.test(name))?.[1]();
  return template ? { ...template, learned: new Map() } : dynamicMapping();
}

/** Fleet system indices: alias → concrete index `<alias>-7`. */
export const FLEET_SYSTEM_INDICES = Object.keys(FLEET_MAPPINGS).filter((n) => n !== '.fleet-actions-results');
/** Data streams created on first write (writes must be `create`, documents need @timestamp). */
export const DATA_STREAM_PATTERNS = [/^\.fleet-actions-results$/, /^logs-.+-.+$/, /^metrics-.+-.+$/, /^\.fleet-fileds-/];

export function dynamicMapping(): Mapping {
  return { dynamic: true, fields: new Map(), disabled: new Set(), dynamicObjects: new Set(), stored: new Set(), objects: new Set(), learned: new Map() };
}

/** Whether new fields under `parent` ('' for the root) are mapped when first seen. */
function dynamicAt(m: Mapping, parent: string): boolean {
  if (m.dynamic) return true;
  for (const p of m.dynamicObjects) if (parent === p || parent.startsWith(`${p}.`)) return true;
  return false;
}

/** How a field is indexed, or undefined when it is not searchable (unmapped, disabled, or an object). */
export function fieldType(m: Mapping, path: string): FieldType | undefined {
  const t = m.fields.get(path);
  if (t) return t;
  const learned = m.learned.get(path);
  return learned === 'object' ? undefined : learned;
}

// ---- values a field type takes (coercion as Elasticsearch's defaults: coerce true) ----

const NUMERIC = /^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$/;
const RANGES: Partial<Record<FieldType, [number, number]>> = {
  integer: [-2147483648, 2147483647],
  long: [-9223372036854775808, 9223372036854775807],
};

/** strict_date_optional_time: yyyy[-MM[-dd[THH[:mm[:ss[.S{1,9}]]][zone]]]], always UTC without a zone. */
const STRICT_DATE = /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2})(?::(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?(Z|[+-]\d{2}(?::?\d{2})?)?)?)?)?$/;
const EPOCH_MILLIS = /^-?\d+(\.\d+)?$/;

function daysIn(year: number, month: number): number {
  if (month === 2) return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/**
 * A date in the default format of a date field, `strict_date_optional_time||epoch_millis`, as epoch
 * millis; undefined when it is not one (JavaScript's Date.parse takes far more, and reads a time
 * without a zone as local time).
 */
export function parseStrictDate(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) ? Math.trunc(v) : undefined;
  if (typeof v !== 'string') return undefined;
  if (EPOCH_MILLIS.test(v)) return Math.trunc(Number(v));
  const m = STRICT_DATE.exec(v);
  if (!m) return undefined;
  const [year, month = 1, day = 1, hour = 0, minute = 0, second = 0] = m.slice(1, 7).map((x) => (x === undefined ? undefined : Number(x))) as number[];
  if (month! < 1 || month! > 12 || day! < 1 || day! > daysIn(year!, month!) || hour! > 23 || minute! > 59 || second! > 59) return undefined;
  const ms = m[7] ? Number(m[7].slice(0, 3).padEnd(3, '0')) : 0;
  let offsetMin = 0;
  const zone = m[8];
  if (zone && zone !== 'Z') {
    const zm = /^([+-])(\d{2}):?(\d{2})?$/.exec(zone)!;
    const h = Number(zm[2]);
    const mi = Number(zm[3] ?? 0);
    if (h > 18 || mi > 59) return undefined;
    offsetMin = (zm[1] === '-' ? -1 : 1) * (h * 60 + mi);
  }
  return Date.UTC(year!, month! - 1, day!, hour!, minute!, second!, ms) - offsetMin * 60_000;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Why a scalar does not fit a field of this type (a caused_by for the parse failure), or undefined when it does. */
export function misfit(type: FieldType, v: unknown): { type: string; reason: string } | undefined {
  switch (type) {
    case 'integer': case 'long': case 'float': case 'double': {
      // An empty string is a null for a numeric field (NumberFieldMapper), not a parse failure.
      if (v === '') return undefined;
      const n = typeof v === 'number' ? v : typeof v === 'string' && NUMERIC.test(v) ? Number(v) : undefined;
      if (n === undefined) return { type: typeof v === 'string' ? 'number_format_exception' : 'illegal_argument_exception', reason: typeof v === 'string' ? `For input string: "${v}"` : `Current token (${tokenOf(v)}) not numeric, can not use numeric value accessors` };
      const range = RANGES[type];
      if (range && (Math.trunc(n) < range[0] || Math.trunc(n) > range[1])) return { type: 'illegal_argument_exception', reason: `Value [${String(v)}] is out of range for ${type === 'integer' ? 'an integer' : 'a long'}` };
      return undefined;
    }
    case 'boolean':
      return v === true || v === false || v === 'true' || v === 'false' || v === '' ? undefined
        : { type: 'illegal_argument_exception', reason: `Failed to parse value [${String(v)}] as only [true] or [false] are allowed.` };
    case 'date':
      return parseStrictDate(v) !== undefined ? undefined
        : { type: 'illegal_argument_exception', reason: `failed to parse date field [${String(v)}] with format [strict_date_optional_time||epoch_millis]` };
    case 'binary':
      return v instanceof Uint8Array || (typeof v === 'string' && BASE64.test(v)) ? undefined
        : { type: 'json_parse_exception', reason: `Failed to decode VALUE_STRING as base64 (MIME-NO-LINEFEEDS): ${typeof v === 'string' ? 'illegal character or missing padding' : `not a string (${tokenOf(v)})`}` };
    case 'keyword': case 'text':
      return undefined;
  }
}

function tokenOf(v: unknown): string {
  return typeof v === 'boolean' ? (v ? 'VALUE_TRUE' : 'VALUE_FALSE') : typeof v === 'number' ? 'VALUE_NUMBER_INT' : 'VALUE_STRING';
}

/** The type dynamic mapping gives a new field (date_detection on, numeric_detection off). */
function inferType(v: unknown): FieldType {
  if (typeof v === 'boolean') return 'boolean';
  if (typeof v === 'number') return Number.isInteger(v) ? 'long' : 'float';
  if (v instanceof Uint8Array) return 'binary';
  // dynamic_date_formats: strict_date_optional_time (a full date at least) and yyyy/MM/dd[ HH:mm:ss Z].
  if (typeof v === 'string' && ((/^\d{4}-\d{2}-\d{2}/.test(v) && parseStrictDate(v) !== undefined) || /^\d{4}\/\d{2}\/\d{2}( \d{2}:\d{2}:\d{2} [+-]\d{4})?$/.test(v))) return 'date';
  // Strings are text with a keyword multi-field; the double searches them as their keyword.
  return 'keyword';
}

export interface ParseFailure { status: 400; type: string; reason: string; causedBy?: { type: string; reason: string } }

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array);

const preview = (v: unknown): string => {
  const s = isObj(v) || Array.isArray(v) ? JSON.stringify(v) : String(v);
  return s.length > 100 ? `${s.slice(0, 100)}...` : s;
};

/**
 * Parses a document against an index's mapping as DocumentParser does: a mapped leaf must take the
 * value (an object never), a mapped object must get an object (or null), unmapped fields under
 * `dynamic: false` are skipped, and fields under a dynamic object are mapped on first sight and then
 * held to that type. Returns the first failure; on success the fields learned are added to the mapping.
 */
export function parseDocument(m: Mapping, id: string, source: Record<string, unknown>): ParseFailure | undefined {
  const added = new Map<string, Learned>();
  const known = (p: string): Learned | undefined => m.fields.get(p) ?? m.learned.get(p) ?? added.get(p) ?? (m.objects.has(p) ? 'object' : undefined);
  const leafFailure = (path: string, type: FieldType, v: unknown, cause: { type: string; reason: string }): ParseFailure => ({
    status: 400, type: 'document_parsing_exception',
    reason: `[1:1] failed to parse field [${path}] of type [${type}] in document with id '${id}'. Preview of field's value: '${preview(v)}'`,
    causedBy: cause,
  });
  const walk = (obj: Record<string, unknown>, parent: string): ParseFailure | undefined => {
    for (const [key, value] of Object.entries(obj)) {
      const path = parent ? `${parent}.${key}` : key;
      if (m.disabled.has(path)) continue;
      const values = Array.isArray(value) ? value.flat(Infinity) : [value];
      for (const v of values) {
        if (v === null || v === undefined) continue;
        let kind = known(path);
        if (kind === undefined) {
          if (!dynamicAt(m, parent)) break; // unmapped under dynamic: false: kept in _source, not parsed
          kind = isObj(v) ? 'object' : inferType(v);
          added.set(path, kind);
        }
        if (kind === 'object') {
          if (!isObj(v)) {
            return { status: 400, type: 'document_parsing_exception', reason: `[1:1] object mapping for [${path}] tried to parse field [${key}] as object, but found a concrete value` };
          }
          const f = walk(v, path);
          if (f) return f;
          continue;
        }
        if (isObj(v)) return leafFailure(path, kind, v, { type: 'illegal_argument_exception', reason: `Can't get text on a START_OBJECT at 1:1` });
        const bad = misfit(kind, v);
        if (bad) return leafFailure(path, kind, v, bad);
      }
    }
    return undefined;
  };
  const failure = walk(source, '');
  if (!failure) for (const [p, kind] of added) m.learned.set(p, kind);
  return failure;
}
