// What an OpAMP agent's reports become in its .fleet-agents document, as upstream writes them
// (fleet-server's handleOpAMP.go and checkin bulk): the enrollment document, the status a health
// report means, health in Go's JSON shape, and the effective configuration as redacted JSON.
import { createHash } from 'node:crypto';
import { parse, stringify } from 'yaml';
import type { AgentDoc, Json, JsonObject } from '../store/documents';
import { REDACTED } from '../util/redact';

/** A ComponentHealth, decoded. */
export interface OpampHealth {
  healthy: boolean;
  startTimeUnixNano: number;
  lastError: string;
  status: string;
  statusTimeUnixNano: number;
  components: Record<string, OpampHealth>;
}

/** An agent's description: OTel resource attributes as JSON values, in the order sent. */
export interface OpampDescription {
  identifying: JsonObject;
  nonIdentifying: JsonObject;
}

export interface EnrollmentTarget {
  policyId: string;
  namespaces: string[];
}

/**
 * The most of a client's free text (last_error, status, a component's name, a remote configuration error)
 * one message may have stored or remembered, in UTF-8 bytes; longer text is cut.
 */
export const MAX_TEXT_BYTES = 1024;

/** `s` cut to at most `max` UTF-8 bytes, at a character boundary. */
export function cutText(s: string, max: number = MAX_TEXT_BYTES): string {
  // A UTF-16 unit is at most 3 bytes of UTF-8 (a surrogate pair, 2 units, is 4).
  if (s.length * 3 <= max) return s;
  // What is kept is at most `max` units (each is a byte or more): the rest need not be encoded.
  const b = Buffer.from(s.length > max ? s.slice(0, max + 1) : s, 'utf8');
  if (b.length <= max) return s;
  let end = max;
  while (end > 0 && (b[end]! & 0xc0) === 0x80) end--;
  return b.subarray(0, end).toString('utf8');
}

function str(v: Json | undefined): string {
  return typeof v === 'string' ? v : '';
}

/** Fields with an empty string value are left out (Go's omitempty); objects stay. */
function withoutEmpty(o: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== ''));
}

/**
 * Tags taken from a description: its `tags` attribute is the client's free text, and a 4 MiB one of
 * single-character tags split into two million of them.
 */
const MAX_DESCRIPTION_TAGS = 100;

/** What a description gives the agent's document: at enrolment, and again when it changes. */
interface DescriptionFields {
  agent: { id: string; version: string; type?: string };
  local_metadata: JsonObject;
  identifying_attributes?: JsonObject;
  non_identifying_attributes?: JsonObject;
  tags: string[];
}

function descriptionFields(id: string, description: OpampDescription | undefined): DescriptionFields {
  const ident = description?.identifying ?? {};
  const nonIdent = { ...(description?.nonIdentifying ?? {}) };
  const name = str(ident['service.name']);
  const version = str(ident['service.version']);
  const host = str(nonIdent['host.name']);
  const tagsAttr = nonIdent['tags'];
  delete nonIdent['tags'];
  const tags = new Set<string>();
  for (const t of [name, ...str(tagsAttr).split(',', 4 * MAX_DESCRIPTION_TAGS).map((x) => cutText(x.trim()))]) {
    if (tags.size >= MAX_DESCRIPTION_TAGS) break;
    if (t !== '') tags.add(t);
  }
  const fields: DescriptionFields = {
    agent: { id, version, ...(name ? { type: name } : {}) },
    local_metadata: {
      elastic: { agent: withoutEmpty({ id, version, name }) },
      host: withoutEmpty({ hostname: host, name: host }),
      os: withoutEmpty({ platform: str(nonIdent['os.type']) }),
    },
    tags: [...tags],
  };
  if (description) {
    fields.identifying_attributes = ident;
    fields.non_identifying_attributes = nonIdent;
  }
  return fields;
}

/** The document upstream creates for a new OpAMP agent (no API key, no outputs: it is never sent a policy). */
export function enrollmentDocument(id: string, target: EnrollmentTarget, description: OpampDescription | undefined, now: string): AgentDoc {
  const { agent, local_metadata, identifying_attributes, non_identifying_attributes, tags } = descriptionFields(id, description);
  const doc: AgentDoc = {
    active: true,
    enrolled_at: now,
    type: 'OPAMP',
    policy_id: target.policyId,
    // So that Kibana does not show the collector as updating: no policy is ever delivered to it.
    policy_revision_idx: 1,
    agent,
    local_metadata,
  };
  if (target.namespaces.length > 0) doc.namespaces = target.namespaces;
  if (identifying_attributes) {
    doc['identifying_attributes'] = identifying_attributes;
    doc['non_identifying_attributes'] = non_identifying_attributes;
  }
  if (tags.length > 0) doc.tags = tags;
  return doc;
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * What a description sent after enrolment changes in the stored document (beyond upstream, which
 * records it at enrolment only), or undefined when it changes nothing. The fields enrolment wrote are
 * replaced whole; tags are added to the stored ones (Fleet users tag agents too, and a tag the
 * description no longer names cannot be told from theirs).
 */
export function descriptionUpdate(id: string, stored: AgentDoc, description: OpampDescription): Record<string, unknown> | undefined {
  const f = descriptionFields(id, description);
  const storedTags = Array.isArray(stored.tags) ? stored.tags : [];
  const newTags = f.tags.filter((t) => !storedTags.includes(t));
  // `agent` is merged (its id stays, and a type once named is kept): only what the description names counts.
  const agent = { version: f.agent.version, ...(f.agent.type !== undefined ? { type: f.agent.type } : {}) };
  const agentSame = stored.agent?.version === agent.version && (agent.type === undefined || stored.agent?.type === agent.type);
  if (newTags.length === 0 && agentSame && sameJson(f.local_metadata, stored.local_metadata)
    && sameJson(f.identifying_attributes, stored['identifying_attributes'])
    && sameJson(f.non_identifying_attributes, stored['non_identifying_attributes'])) return undefined;
  const doc: Record<string, unknown> = {
    agent, local_metadata: f.local_metadata,
    identifying_attributes: f.identifying_attributes, non_identifying_attributes: f.non_identifying_attributes,
  };
  if (newTags.length > 0) doc['tags'] = [...storedTags, ...newTags];
  return doc;
}

/** The fields descriptionUpdate() writes whole (a merge would keep attributes the Collector dropped). */
export const DESCRIPTION_FIELDS = ['local_metadata', 'identifying_attributes', 'non_identifying_attributes'];

/** Upstream's status for a report: unhealthy → error, a recoverable error → degraded, else online. */
export function statusOf(health: OpampHealth | undefined): { status: string; message: string } {
  if (!health) return { status: 'online', message: '' };
  const message = cutText(health.lastError || health.status);
  if (!health.healthy) return { status: 'error', message };
  if (health.status === 'StatusRecoverableError') return { status: 'degraded', message };
  return { status: 'online', message };
}

/**
 * The stored health (Go's JSON of the protobuf struct: snake_case, zero values left out), recursively;
 * its strings and component names cut to MAX_TEXT_BYTES.
 */
export function healthDocument(h: OpampHealth): JsonObject {
  const out: JsonObject = {};
  if (h.healthy) out['healthy'] = true;
  if (h.startTimeUnixNano) out['start_time_unix_nano'] = h.startTimeUnixNano;
  if (h.lastError) out['last_error'] = cutText(h.lastError);
  if (h.status) out['status'] = cutText(h.status);
  if (h.statusTimeUnixNano) out['status_time_unix_nano'] = h.statusTimeUnixNano;
  const names = Object.keys(h.components);
  if (names.length > 0) out['component_health_map'] = Object.fromEntries(names.map((n) => [cutText(n), healthDocument(h.components[n]!)]));
  return out;
}

/** The health a stored document holds, read back (to know the status when a report leaves health out). */
export function healthFromDocument(doc: Json | undefined): OpampHealth | undefined {
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) return undefined;
  const map = doc['component_health_map'];
  const components: Record<string, OpampHealth> = {};
  if (map && typeof map === 'object' && !Array.isArray(map)) {
    for (const [k, v] of Object.entries(map)) {
      const c = healthFromDocument(v);
      if (c) components[k] = c;
    }
  }
  return {
    healthy: doc['healthy'] === true,
    startTimeUnixNano: typeof doc['start_time_unix_nano'] === 'number' ? doc['start_time_unix_nano'] : 0,
    lastError: str(doc['last_error']),
    status: str(doc['status']),
    statusTimeUnixNano: typeof doc['status_time_unix_nano'] === 'number' ? doc['status_time_unix_nano'] : 0,
    components,
  };
}

/** Key words whose values are secrets (elastic-agent-libs' redaction list, as upstream applies it). */
const SECRET_WORDS = ['password', 'token', 'key', 'secret', 'auth', 'certificate', 'passphrase'];
/** Named like a secret, but a routing setting. */
const NOT_SECRET = new Set(['routekey']);

function isSecretKey(key: string): boolean {
  const k = key.toLowerCase();
  return !NOT_SECRET.has(k) && SECRET_WORDS.some((w) => k.includes(w));
}

/**
 * Values under secret-looking keys replaced, at any depth and inside lists. Only scalars are replaced:
 * a section such as an exporter's `auth: {authenticator: …}` names a component, not a secret, and its
 * own secret keys are redacted inside it.
 */
export function redactSecrets(v: Json): Json {
  if (Array.isArray(v)) return v.map(redactSecrets);
  if (v === null || typeof v !== 'object') return v;
  const out: JsonObject = {};
  for (const [k, x] of Object.entries(v)) {
    out[k] = x !== null && typeof x !== 'object' && isSecretKey(k) ? REDACTED : redactSecrets(x);
  }
  return out;
}

/**
 * The Collector's YAML (config_map[""]) as the JSON object upstream stores, secrets redacted; undefined
 * when it is not a YAML mapping.
 */
export function effectiveConfigDocument(yamlText: string): JsonObject | undefined {
  // Aliases are resolved into copies; a bound on them keeps a "billion laughs" document from exploding.
  // The yaml library checks a mapping's keys for duplicates pair by pair: 1 MiB of `kN: 1` lines (130,000
  // keys) held the event loop for minutes. Unchecked, a repeated key's last value wins; a Collector
  // refuses such a configuration itself, so it never reports one.
  const parsed = parse(yamlText, { maxAliasCount: 100, prettyErrors: false, uniqueKeys: false }) as unknown;
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return undefined;
  return redactSecrets(JSON.parse(JSON.stringify(parsed)) as Json) as JsonObject;
}

/** The configuration a policy gives its OpAMP agents: the Collector YAML and its SHA-256 (the config_hash). */
export interface RemoteConfig {
  body: string;
  hash: Buffer;
  /** The hash in hex, as stored in remote_config_status.last_remote_config_hash. */
  hashHex: string;
}

/**
 * A policy's `opamp` section (beyond upstream): `config` is the Collector's configuration, as YAML text or
 * as the mapping itself. Undefined when the policy has none.
 */
export function remoteConfigOf(section: unknown): RemoteConfig | undefined {
  if (!section || typeof section !== 'object' || Array.isArray(section)) return undefined;
  const c = (section as Record<string, unknown>)['config'];
  const body = typeof c === 'string' ? c : c && typeof c === 'object' && !Array.isArray(c) ? stringify(c) : undefined;
  if (body === undefined) return undefined;
  const hash = createHash('sha256').update(body).digest();
  return { body, hash, hashHex: hash.toString('hex') };
}
