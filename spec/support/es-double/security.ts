// Service-account tokens and API keys as Elasticsearch's security APIs model them: keys owned by the
// service account that created them, invalidation, role updates, and authentication by `ApiKey` header.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { EsError, resourceNotFound, unauthenticated, unauthorized, validationFailed } from './errors';

type Obj = Record<string, unknown>;

export interface ApiKeyRecord {
  id: string;
  name: string;
  secret: string;
  creation: number;
  expiration?: number;
  invalidated: boolean;
  invalidation?: number;
  metadata: Obj;
  role_descriptors: Obj;
  username: string;
  realm: string;
}

export type Principal =
  | { kind: 'service'; username: string; tokenName: string }
  | { kind: 'apikey'; key: ApiKeyRecord };

const SERVICE_ACCOUNT = 'elastic/fleet-server';

/** A service token as Elasticsearch issues them: base64 of 00 01 00 01 "elastic/fleet-server/<name>:<secret>". */
export function makeServiceToken(name = 'token1', secret = randomBytes(16).toString('base64url')): string {
  return Buffer.concat([Buffer.from([0, 1, 0, 1]), Buffer.from(`${SERVICE_ACCOUNT}/${name}:${secret}`)]).toString('base64url').replace(/=+$/, '');
}

function tokenName(token: string): string | undefined {
  const raw = Buffer.from(token, 'base64');
  if (raw.length < 5 || raw[0] !== 0 || raw[1] !== 1) return undefined;
  const m = /^elastic\/fleet-server\/([^:]+):/.exec(raw.subarray(4).toString());
  return m?.[1];
}

const INDEX_PRIVILEGES = new Set(['none', 'all', 'read', 'read_cross_cluster', 'create', 'create_index', 'monitor', 'manage', 'delete', 'write',
  'delete_index', 'index', 'view_index_metadata', 'manage_follow_index', 'manage_leader_index', 'manage_ilm', 'manage_data_stream_lifecycle',
  'maintenance', 'auto_configure', 'create_doc', 'cross_cluster_replication', 'cross_cluster_replication_internal', 'read_failure_store',
  'manage_failure_store']);

const CLUSTER_PRIVILEGES = new Set(['none', 'all', 'monitor', 'monitor_inference', 'monitor_ml', 'monitor_text_structure', 'monitor_transform',
  'monitor_data_frame_transforms', 'monitor_watcher', 'monitor_rollup', 'monitor_enrich', 'monitor_connector', 'monitor_stats', 'monitor_snapshot',
  'monitor_data_stream_global_retention', 'manage', 'manage_connector', 'manage_inference', 'manage_ml', 'manage_transform',
  'manage_data_frame_transforms', 'manage_token', 'manage_watcher', 'manage_rollup', 'manage_index_templates', 'manage_ingest_pipelines',
  'read_pipeline', 'transport_client', 'manage_security', 'read_security', 'manage_saml', 'manage_oidc', 'manage_api_key', 'grant_api_key',
  'manage_service_account', 'manage_user_profile', 'manage_pipeline', 'manage_autoscaling', 'manage_ccr', 'read_ccr', 'create_snapshot',
  'manage_ilm', 'read_ilm', 'manage_slm', 'read_slm', 'delegate_pki', 'manage_own_api_key', 'manage_enrich', 'manage_logstash_pipelines',
  'manage_search_application', 'manage_search_synonyms', 'manage_search_query_rules', 'manage_behavioral_analytics',
  'post_behavioral_analytics_event', 'cancel_task', 'cross_cluster_search', 'cross_cluster_replication', 'read_fleet_secrets',
  'write_fleet_secrets', 'read_connector_secrets', 'write_connector_secrets', 'manage_data_stream_global_retention']);

const ROLE_KEYS = new Set(['cluster', 'indices', 'index', 'applications', 'application', 'run_as', 'metadata', 'transient_metadata', 'global',
  'remote_indices', 'remote_cluster', 'restriction', 'description']);
const INDEX_ENTRY_KEYS = new Set(['names', 'privileges', 'field_security', 'query', 'allow_restricted_indices']);
const APPLICATION_ENTRY_KEYS = new Set(['application', 'privileges', 'resources']);

/** A role descriptor that RoleDescriptor.parse refuses: a 400 naming the request's field. */
function roleParseError(request: string, reason: string): EsError {
  return new EsError(400, 'x_content_parse_exception', `[1:1] [${request}] failed to parse field [role_descriptors]`, { line: 1, col: 1 },
    new EsError(400, 'parse_exception', reason));
}

/**
 * Role descriptors as Elasticsearch parses (RoleDescriptor.parse: known fields, `names` and `privileges`
 * required) and validates them (RoleDescriptorRequestValidator: privilege names it knows, or action
 * patterns). Privilege names are case-insensitive.
 */
export function checkRoleDescriptors(roles: unknown, request: string): void {
  if (roles === undefined || roles === null) return;
  if (typeof roles !== 'object' || Array.isArray(roles)) throw roleParseError(request, 'role_descriptors must be an object');
  const problems: string[] = [];
  for (const [name, d] of Object.entries(roles as Obj)) {
    if (d === null || typeof d !== 'object' || Array.isArray(d)) throw roleParseError(request, `failed to parse role [${name}]. expected an object but found [${JSON.stringify(d)}] instead`);
    for (const key of Object.keys(d)) if (!ROLE_KEYS.has(key)) throw roleParseError(request, `failed to parse role [${name}]. unexpected field [${key}]`);
    const r = d as Obj;
    for (const p of (r['cluster'] ?? []) as unknown[]) {
      const priv = String(p);
      if (!priv.startsWith('cluster:') && !priv.startsWith('indices:admin/template/') && !priv.startsWith('indices:admin/index_template/')
        && !CLUSTER_PRIVILEGES.has(priv.toLowerCase())) {
        problems.push(`unknown cluster privilege [${priv}]. a privilege must be either one of the predefined cluster privilege names [${[...CLUSTER_PRIVILEGES].join(',')}] or a pattern over one of the available cluster actions`);
      }
    }
    for (const entry of (r['indices'] ?? r['index'] ?? []) as unknown[]) {
      if (entry === null || typeof entry !== 'object') throw roleParseError(request, `failed to parse indices privileges for role [${name}]. expected field [indices] value to be an array of objects`);
      const e = entry as Obj;
      for (const key of Object.keys(e)) if (!INDEX_ENTRY_KEYS.has(key)) throw roleParseError(request, `failed to parse indices privileges for role [${name}]. unexpected field [${key}]`);
      for (const f of ['names', 'privileges']) {
        if (e[f] === undefined) throw roleParseError(request, `failed to parse indices privileges for role [${name}]. missing required [${f}] field`);
      }
      for (const p of [e['privileges']].flat() as unknown[]) {
        const priv = String(p).toLowerCase();
        if (!priv.startsWith('indices:') && !priv.startsWith('internal:transport/proxy/indices:') && !INDEX_PRIVILEGES.has(priv)) {
          problems.push(`unknown index privilege [${priv}]. a privilege must be either one of the predefined fixed indices privileges [${[...INDEX_PRIVILEGES].join(',')}] or a pattern over one of the available index actions`);
        }
      }
    }
    for (const entry of (r['applications'] ?? r['application'] ?? []) as unknown[]) {
      const e = (entry ?? {}) as Obj;
      for (const key of Object.keys(e)) if (!APPLICATION_ENTRY_KEYS.has(key)) throw roleParseError(request, `failed to parse application privileges for role [${name}]. unexpected field [${key}]`);
      for (const f of ['application', 'privileges', 'resources']) {
        if (e[f] === undefined) throw roleParseError(request, `failed to parse application privileges for role [${name}]. missing required [${f}] field`);
      }
    }
  }
  if (problems.length) throw validationFailedAll(problems);
}

/** action_request_validation_exception listing every problem, numbered as Elasticsearch numbers them. */
function validationFailedAll(problems: string[]): EsError {
  return new EsError(400, 'action_request_validation_exception', `Validation Failed: ${problems.map((p, i) => `${i + 1}: ${p};`).join('')}`);
}

/** Role descriptors come back with Elasticsearch's defaults filled in. */
function normalizeRoles(roles: Obj): Obj {
  const out: Obj = {};
  for (const [name, d] of Object.entries(roles)) {
    const r = (d ?? {}) as Obj;
    out[name] = {
      cluster: r['cluster'] ?? [], indices: ((r['indices'] ?? r['index'] ?? []) as Obj[]).map((i) => ({ allow_restricted_indices: false, ...i })),
      applications: r['applications'] ?? [], run_as: r['run_as'] ?? [], metadata: r['metadata'] ?? {},
      transient_metadata: { enabled: true },
    };
  }
  return out;
}

function parseExpiration(v: unknown): number | undefined {
  if (v === undefined || v === null) return undefined;
  const m = /^(\d+)(ms|s|m|h|d)$/.exec(String(v));
  if (!m) throw validationFailed(`failed to parse expiration [${String(v)}]`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms'];
  return Date.now() + Number(m[1]) * unit;
}

/** Characters Java's String.trim() cuts: everything up to U+0020. */
const TRIMMED = /^[\u0000-\u0020]|[\u0000-\u0020]$/;

/** Elasticsearch's rules for an API key's name (CreateApiKeyRequest.validate), with its messages. */
function checkKeyName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || name.replace(/[\u0000-\u0020]/g, '') === '') throw validationFailed('api key name is required');
  if (name.length > 256) throw validationFailed('api key name may not be more than 256 characters long');
  if (TRIMMED.test(name)) throw validationFailed('api key name may not begin or end with whitespace');
  if (name.startsWith('_')) throw validationFailed('api key name may not begin with an underscore');
}

export class Security {
  readonly keys = new Map<string, ApiKeyRecord>();

  constructor(public serviceTokens: Set<string>) {}

  /** Who a request is: a service token (Bearer) or an API key (ApiKey); 401 otherwise. */
  authenticate(header: string | undefined): Principal {
    if (!header) throw unauthenticated();
    const [scheme, cred] = header.split(' ', 2) as [string, string | undefined];
    if (scheme.toLowerCase() === 'bearer' && cred) {
      const name = tokenName(cred);
      const known = [...this.serviceTokens].some((t) => t.length === cred.length && timingSafeEqual(Buffer.from(t), Buffer.from(cred)));
      if (name && known) return { kind: 'service', username: SERVICE_ACCOUNT, tokenName: name };
      throw unauthenticated(`ServiceToken: unable to authenticate service token`);
    }
    if (scheme.toLowerCase() === 'apikey' && cred) {
      const decoded = Buffer.from(cred, 'base64').toString();
      const colon = decoded.indexOf(':');
      if (colon < 1) throw unauthenticated('API key: invalid credentials');
      const id = decoded.slice(0, colon);
      const secret = decoded.slice(colon + 1);
      const key = this.keys.get(id);
      if (!key) throw unauthenticated(`API key: unable to find apikey with id ${id}`);
      if (key.secret.length !== secret.length || !timingSafeEqual(Buffer.from(key.secret), Buffer.from(secret))) {
        throw unauthenticated(`API key: invalid credentials for API key [${id}]`);
      }
      if (key.invalidated) throw unauthenticated(`API key: api key [${id}] has been invalidated`);
      if (key.expiration !== undefined && key.expiration < Date.now()) throw unauthenticated('API key: api key is expired');
      return { kind: 'apikey', key };
    }
    throw unauthenticated();
  }

  /** API keys may call _authenticate and nothing else here (Fleet's keys carry no privileges). */
  authorize(p: Principal, action: string): void {
    if (p.kind === 'apikey' && action !== 'cluster:admin/xpack/security/user/authenticate') {
      throw unauthorized(action, `API key id [${p.key.id}] of user [${p.key.username}]`);
    }
  }

  whoami(p: Principal): Obj {
    if (p.kind === 'service') {
      return {
        username: SERVICE_ACCOUNT, roles: [], full_name: 'Service account - elastic/fleet-server', email: null,
        metadata: { _elastic_service_account: true }, enabled: true,
        authentication_realm: { name: '_service_account', type: '_service_account' },
        lookup_realm: { name: '_service_account', type: '_service_account' },
        authentication_type: 'token', token: { name: p.tokenName, type: '_service_account_index' },
      };
    }
    return {
      username: p.key.username, roles: [], full_name: 'Service account - elastic/fleet-server', email: null,
      metadata: { _elastic_service_account: true }, enabled: true,
      authentication_realm: { name: '_es_api_key', type: '_es_api_key' },
      lookup_realm: { name: '_es_api_key', type: '_es_api_key' },
      authentication_type: 'api_key',
      api_key: { id: p.key.id, ...(p.key.name ? { name: p.key.name } : {}), managed_by: 'elasticsearch' },
    };
  }

  create(owner: Principal, body: Obj): Obj {
    if (owner.kind === 'apikey' && Object.keys((body['role_descriptors'] ?? {}) as Obj).length > 0) {
      throw new EsError(400, 'illegal_argument_exception', 'creating derived api keys requires an explicit role descriptor that is empty');
    }
    checkKeyName(body['name']);
    checkRoleDescriptors(body['role_descriptors'], 'api_key_request');
    const metadata = (body['metadata'] ?? {}) as Obj;
    if (Object.keys(metadata).some((k) => k.startsWith('_'))) throw validationFailed('metadata keys may not start with [_]');
    const id = randomBytes(15).toString('base64url');
    const secret = randomBytes(16).toString('base64url');
    const rec: ApiKeyRecord = {
      id, name: body['name'], secret, creation: Date.now(), expiration: parseExpiration(body['expiration']), invalidated: false,
      metadata, role_descriptors: normalizeRoles((body['role_descriptors'] ?? {}) as Obj),
      username: owner.kind === 'service' ? owner.username : owner.key.username, realm: '_service_account',
    };
    this.keys.set(id, rec);
    return {
      id, name: rec.name, ...(rec.expiration ? { expiration: rec.expiration } : {}), api_key: secret,
      encoded: Buffer.from(`${id}:${secret}`).toString('base64'),
    };
  }

  private view(k: ApiKeyRecord): Obj {
    return {
      id: k.id, name: k.name, type: 'rest', creation: k.creation, ...(k.expiration ? { expiration: k.expiration } : {}),
      invalidated: k.invalidated, ...(k.invalidation ? { invalidation: k.invalidation } : {}), username: k.username,
      realm: k.realm, realm_type: '_service_account', metadata: k.metadata, role_descriptors: k.role_descriptors,
    };
  }

  /** GET /_security/api_key. An id that matches nothing is a 404 with an empty list, as Elasticsearch answers. */
  get(owner: Principal, q: URLSearchParams): { status: number; body: Obj } {
    const ownerOnly = q.get('owner') === 'true';
    const username = owner.kind === 'service' ? owner.username : owner.key.username;
    // manage_own_api_key (the fleet-server service account's) covers only requests that name the caller's own
    // keys: owner=true, or its own user and realm (ManageOwnApiKeyClusterPrivilege); anything else is a 403.
    if (!ownerOnly && !this.namesSelf(owner, q.get('username'), q.get('realm_name'))) {
      throw unauthorized('cluster:admin/xpack/security/api_key/get', principalName(owner));
    }
    const id = q.get('id');
    const name = q.get('name');
    const activeOnly = q.get('active_only') === 'true';
    // By id: one lookup (a scan of every key per call made the 100,000-agent bench's polls wait on the double).
    const candidates = id ? [this.keys.get(id)].filter((k): k is ApiKeyRecord => k !== undefined) : [...this.keys.values()];
    const list = candidates.filter((k) => (!name || k.name === name)
      && (!ownerOnly || k.username === username) && (!activeOnly || !k.invalidated));
    if (id && list.length === 0) return { status: 404, body: { api_keys: [] } };
    return { status: 200, body: { api_keys: list.map((k) => this.view(k)) } };
  }

  /**
   * DELETE /_security/api_key, validated as InvalidateApiKeyRequest and authorized as manage_own_api_key:
   * `owner: true` with no ids and no name invalidates every key the caller owns.
   */
  invalidate(owner: Principal, body: Obj): Obj {
    const ownerOnly = body['owner'] === true;
    const rawIds = body['ids'];
    const problems: string[] = [];
    if (body['id'] !== undefined && rawIds !== undefined) problems.push('Must use either [id] or [ids], not both at the same time');
    if (!ownerOnly && rawIds === undefined && body['id'] === undefined && !body['name'] && !body['username'] && !body['realm_name']) {
      problems.push('One of [api key id(s), api key name, username, realm name] must be specified if [owner] flag is false');
    }
    if (Array.isArray(rawIds) && rawIds.length === 0) problems.push('Field [ids] cannot be an empty array');
    if (Array.isArray(rawIds) && rawIds.some((id) => typeof id !== 'string' || id.trim() === '')) problems.push('Field [ids] must not contain blank id');
    if (ownerOnly && (body['username'] || body['realm_name'])) problems.push('username or realm name must not be specified when the current user owns the API key(s)');
    if (problems.length) throw validationFailedAll(problems);
    if (!ownerOnly && !this.namesSelf(owner, body['username'] as string | undefined, body['realm_name'] as string | undefined)) {
      throw unauthorized('cluster:admin/xpack/security/api_key/invalidate', principalName(owner));
    }
    const ids: string[] | undefined = (rawIds as string[] | undefined) ?? (body['id'] !== undefined ? [String(body['id'])] : undefined);
    const username = owner.kind === 'service' ? owner.username : owner.key.username;
    const invalidated: string[] = [];
    const candidates = ids ?? [...this.keys.values()].filter((k) => !body['name'] || k.name === body['name']).map((k) => k.id);
    for (const id of candidates) {
      const k = this.keys.get(id);
      if (!k || k.invalidated || k.username !== username) continue;
      k.invalidated = true;
      k.invalidation = Date.now();
      invalidated.push(id);
    }
    return { invalidated_api_keys: invalidated, previously_invalidated_api_keys: [], error_count: 0 };
  }

  bulkUpdate(owner: Principal, body: Obj): Obj {
    if (owner.kind === 'apikey') throw unauthorized('cluster:admin/xpack/security/api_key/update', `API key [${owner.key.id}]`);
    checkRoleDescriptors(body['role_descriptors'], 'bulk_update_api_key_request');
    const ids = body['ids'];
    if (!Array.isArray(ids) || ids.length === 0) throw validationFailed('Field [ids] cannot be empty');
    const updated: string[] = [];
    const noops: string[] = [];
    const details: Obj = {};
    for (const id of (body['ids'] as string[] | undefined) ?? []) {
      const k = this.keys.get(id);
      if (!k || k.username !== owner.username) {
        details[id] = { type: 'resource_not_found_exception', reason: `no API key owned by requesting user found for ID [${id}]` };
        continue;
      }
      if (k.invalidated) {
        details[id] = { type: 'illegal_argument_exception', reason: `cannot update invalidated API key [${id}]` };
        continue;
      }
      const before = JSON.stringify([k.role_descriptors, k.metadata]);
      if (body['role_descriptors'] !== undefined) k.role_descriptors = normalizeRoles(body['role_descriptors'] as Obj);
      if (body['metadata'] !== undefined) k.metadata = body['metadata'] as Obj;
      (JSON.stringify([k.role_descriptors, k.metadata]) === before ? noops : updated).push(id);
    }
    const count = Object.keys(details).length;
    return { updated, noops, errors: count > 0 ? { count, details } : { count: 0 } };
  }

  /** Whether username and realm_name both name the caller (ManageOwnApiKeyClusterPrivilege's other way in). */
  private namesSelf(p: Principal, username: unknown, realm: unknown): boolean {
    if (p.kind !== 'service' || !username || !realm) return false;
    return username === p.username && realm === '_service_account';
  }

  update(owner: Principal, id: string, body: Obj): Obj {
    const r = this.bulkUpdate(owner, { ...body, ids: [id] });
    if ((r['errors'] as Obj)['count']) throw resourceNotFound(`no API key owned by requesting user found for ID [${id}]`);
    return { updated: (r['updated'] as string[]).length > 0 };
  }
}

function principalName(p: Principal): string {
  return p.kind === 'service' ? `service account [${p.username}]` : `API key id [${p.key.id}] of user [${p.key.username}]`;
}
