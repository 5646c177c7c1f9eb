// The mapped fields of the Fleet system indices (dynamic: false), as the Fleet plugin declares them.
// Queries and sorts only see mapped fields; other fields live in _source only. Indices that are not
// Fleet's are dynamic: every field is searchable and typed by its first value.

export type FieldType = 'keyword' | 'text' | 'date' | 'integer' | 'long' | 'boolean' | 'binary' | 'float';

export interface Mapping {
  /** False for Fleet indices: unmapped fields are kept but not indexed. */
  dynamic: boolean;
  fields: Map<string, FieldType>;
  /** Object paths stored with enabled:false (never indexed, any content accepted). */
  disabled: Set<string>;
  /** Object paths whose sub-fields are all indexed (dynamic inside a static index). */
  dynamicObjects: Set<string>;
  /** Fields mapped with `store: true`: what `stored_fields` can return. */
  stored: Set<string>;
}

function mapping(fields: Record<string, FieldType>, disabled: string[] = [], dynamicObjects: string[] = [], stored: string[] = []): Mapping {
  return { dynamic: false, fields: new Map(Object.entries(fields)), disabled: new Set(disabled), dynamicObjects: new Set(dynamicObjects), stored: new Set(stored) };
}

const k = 'keyword' as const;
const d = 'date' as const;

export const FLEET_MAPPINGS: Record<string, Mapping> = {
  '.fleet-agents': mapping({
    access_api_key_id: k, enrollment_id: k, 'agent.id': k, 'agent.version': k, 'agent.type': k, policy_id: k, policy_base_id: k,
    agent_policy_id: k, type: k, tags: k, namespaces: k, last_checkin_status: k, unhealthy_reason: k, upgrade_status: k,
    active: 'boolean', policy_revision_idx: 'integer', policy_coordinator_idx: 'integer', action_seq_no: 'integer',
    enrolled_at: d, last_checkin: d, updated_at: d, unenrolled_at: d, unenrollment_started_at: d, upgrade_started_at: d,
    upgraded_at: d, upgrade_attempts: d, audit_unenrolled_time: d, audit_unenrolled_reason: k, unenrolled_reason: k,
    last_checkin_message: 'text', 'last_checkin_message.keyword': k, replace_token: k, shared_id: k,
    default_api_key_id: k, default_api_key: k, policy_output_permissions_hash: k, sort: 'long',
  }, ['components', 'user_provided_metadata', 'default_api_key_history'], ['local_metadata', 'upgrade_details']),
  '.fleet-actions': mapping({
    action_id: k, agents: k, type: k, input_type: k, user_id: k, namespaces: k, '@timestamp': d, expiration: d,
    start_time: d, minimum_execution_duration: 'integer', rollout_duration_seconds: 'integer', timeout: 'integer',
    'signed.data': 'binary', 'signed.signature': 'binary', traceparent: k,
  }, ['data']),
  '.fleet-actions-results': mapping({
    action_id: k, agent_id: k, action_input_type: k, namespaces: k, '@timestamp': d, started_at: d, completed_at: d,
    error: 'text', 'error.keyword': k,
  }, ['action_data', 'data'], ['action_response']),
  '.fleet-enrollment-api-keys': mapping({
    api_key_id: k, api_key: k, name: k, policy_id: k, namespaces: k, active: 'boolean', hidden: 'boolean',
    created_at: d, expire_at: d, updated_at: d,
  }),
  '.fleet-policies': mapping({
    policy_id: k, namespaces: k, revision_idx: 'integer', coordinator_idx: 'integer', unenroll_timeout: 'integer',
    '@timestamp': d, default_fleet_server: 'boolean',
  }, ['data']),
  '.fleet-artifacts': mapping({
    identifier: k, decoded_sha256: k, encoded_sha256: k, package_name: k, type: k, relative_url: k, created: d,
    body: 'binary', compression_algorithm: k, encryption_algorithm: k, encoded_size: 'long', decoded_size: 'long',
  }),
  '.fleet-secrets': mapping({ value: k }),
  '.fleet-servers': mapping({ 'server.id': k, 'agent.id': k, '@timestamp': d }),
  '.fleet-policies-leader': mapping({ 'server.id': k, '@timestamp': d }),
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
  [/^\.fleet-fileds-fromhost-data-.+$/, () => mapping({
    bid: k, sha2: k, last: 'boolean', data: 'binary', '@timestamp': d,
  })],
  [/^\.(fleet-fileds-tohost-data-.+|[a-z0-9_-]+-fleetfiles-.+-data)$/, () => mapping({
    bid: k, sha2: k, last: 'boolean', data: 'binary', '@timestamp': d,
  }, [], [], ['data'])],
];

/** The mapping a new index (or data stream) gets from its name. */
export function mappingFor(name: string): Mapping {
  return FLEET_MAPPINGS[name] ?? FILE_MAPPINGS.find(([re]) => re.test(name))?.[1]() ?? dynamicMapping();
}

/** Fleet system indices: alias → concrete index `<alias>-7`. */
export const FLEET_SYSTEM_INDICES = Object.keys(FLEET_MAPPINGS).filter((n) => n !== '.fleet-actions-results');
/** Data streams created on first write (writes must be `create`, documents need @timestamp). */
export const DATA_STREAM_PATTERNS = [/^\.fleet-actions-results$/, /^logs-.+-.+$/, /^metrics-.+-.+$/, /^\.fleet-fileds-/];

export function dynamicMapping(): Mapping {
  return { dynamic: true, fields: new Map(), disabled: new Set(), dynamicObjects: new Set(), stored: new Set() };
}

/** How a field is indexed, or undefined when it is not searchable. */
export function fieldType(m: Mapping, path: string, sample?: unknown): FieldType | undefined {
  const t = m.fields.get(path);
  if (t) return t;
  for (const p of m.disabled) if (path === p || path.startsWith(`${p}.`)) return undefined;
  if (m.dynamic || [...m.dynamicObjects].some((p) => path.startsWith(`${p}.`))) return inferType(sample);
  return undefined;
}

function inferType(v: unknown): FieldType {
  if (typeof v === 'boolean') return 'boolean';
  if (typeof v === 'number') return Number.isInteger(v) ? 'long' : 'float';
  if (typeof v === 'string' && /^\d{4}-\d{2}-\d{2}T/.test(v) && !Number.isNaN(Date.parse(v))) return 'date';
  return 'keyword';
}
