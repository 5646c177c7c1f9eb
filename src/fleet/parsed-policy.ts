// A policy revision prepared once for every agent it goes to: secrets resolved, output permissions
// hashed, and the POLICY_CHANGE action serialized to a template whose only per-agent parts are the
// agent id and its output API keys. Rendering for an agent is then string concatenation.
import { createHash, randomBytes } from 'node:crypto';
import type { Hit, Json, JsonObject, PolicyData, PolicyDoc, RoleMap } from '../store/documents';
import { goJson } from './go-json';
import { remoteConfigOf, type RemoteConfig } from './opamp-document';
import { resolveInline, type SecretLookup } from './secrets';
import { TextTemplate } from '../util/text-template';

/** PolicyData keys sent to agents; anything else in the stored data is dropped, as upstream does. */
const POLICY_KEYS = ['id', 'revision', 'outputs', 'inputs', 'agent', 'fleet', 'output_permissions', 'signed',
  'secret_paths', 'extensions', 'receivers', 'processors', 'connectors', 'exporters', 'service'] as const;
const OTEL_SECTIONS = ['extensions', 'receivers', 'processors', 'connectors', 'exporters', 'service'] as const;

export interface EsOutput {
  name: string;
  roles: RoleMap;
  permissionsHash: string;
  /** A remote_elasticsearch output's connection (its keys live in that cluster). */
  remote?: JsonObject;
  /** A remote output's connectionHash: recorded with each key, so a key left in another cluster is seen. */
  connectionHash?: string;
}

export function permissionsHash(roles: RoleMap): string {
  return createHash('sha256').update(goJson(roles)).digest('hex');
}

/**
 * Where a remote output's keys live: SHA-256 of its hosts (in any order, trailing slashes aside),
 * protocol, path and the service account its token belongs to. Upstream mints a new key when the
 * output's configuration changes (bulk.CreateAndGetBulker's hasConfigChanged); only these settings can
 * move the key to another cluster, so a new CA, a tuning change or a rotated token of the same service
 * account does not re-key every agent. The token's secret is not hashed: a hash of it in every agent
 * document would let anyone who reads them confirm a guessed token.
 */
export function connectionHash(remote: JsonObject): string {
  const host = (h: unknown): string => String(h).replace(/\/+$/, '');
  const hosts = Array.isArray(remote['hosts']) ? remote['hosts'].map(host).sort() : remote['hosts'] === undefined ? null : host(remote['hosts']);
  const token = remote['service_token'];
  const parts = [hosts, remote['protocol'] ?? null, remote['path'] ?? null, typeof token === 'string' ? serviceAccountOf(token) : null, remote['service_token_path'] ?? null];
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex');
}

/**
 * The service account and token name a service token is for (`elastic/fleet-server/<name>`): its
 * base64 holds a 4-byte header, then `<account>/<name>:<secret>`. A token of another form counts by its
 * SHA-256 (never stored as it is).
 */
function serviceAccountOf(token: string): string {
  const raw = Buffer.from(token, 'base64');
  const text = raw.length > 4 ? raw.subarray(4).toString('utf8') : '';
  const colon = text.indexOf(':');
  if (colon > 0 && /^[\w.-]+\/[\w.-]+\/[\w.-]+$/.test(text.slice(0, colon))) return text.slice(0, colon);
  return `sha256:${createHash('sha256').update(token).digest('hex')}`;
}

type Slot = { kind: 'agent' } | { kind: 'key'; output: string } | { kind: 'b64'; output: string };

const NONCE = randomBytes(6).toString('hex');
const MARK = new RegExp(`"__fleet_${NONCE}_(agent|key|b64)_(\\d+)__"`, 'g');
const mark = (kind: string, i = 0): string => `__fleet_${NONCE}_${kind}_${i}__`;

export class ParsedPolicy {
  readonly policyId: string;
  readonly revisionIdx: number;
  readonly actionId: string;
  /** Outputs whose agents need an API key minted by this server, whatever the store. */
  readonly esOutputs: EsOutput[] = [];
  /**
   * Every Elasticsearch output: esOutputs and those whose policy gives an `api_key`. The embedded store
   * sends that key as given (docs/compatibility.md); on Elasticsearch the agent gets a key of its own, as
   * from upstream, whose policy_output.go always inserts the minted key.
   */
  readonly allEsOutputs: EsOutput[] = [];
  /** Why this revision cannot be sent (upstream answers such check-ins with 500). */
  readonly error: string | undefined;
  /** The POLICY_CHANGE action as JSON text with a hole per slot. */
  readonly template: TextTemplate;
  /** The configuration for OpAMP agents (the policy's `opamp` section), kept out of what Elastic Agents get. */
  readonly opamp: RemoteConfig | undefined;
  private readonly slots: Slot[] = [];
  /** Output name → the key its policy gives, sent where OutputKeys sends no key of its own. */
  private readonly given = new Map<string, string>();

  constructor(readonly hit: Hit<PolicyDoc>, lookupSecret: SecretLookup) {
    const doc = hit._source;
    this.policyId = doc.policy_id;
    this.revisionIdx = doc.revision_idx;
    this.actionId = `policy:${doc.policy_id}:${doc.revision_idx}`;
    let error: string | undefined;
    // Only the policy keys agents know go out; the opamp section is for OpAMP agents alone.
    const data = prepareData(doc.data, lookupSecret);
    this.opamp = remoteConfigOf(doc.data['opamp']);
    const outputs = (data['outputs'] ?? {}) as Record<string, JsonObject>;
    if (Object.keys(outputs).length === 0) error = 'processPolicy: output section not found';
    const permissions = (doc.data.output_permissions ?? {}) as Record<string, RoleMap>;
    const esNames: string[] = [];
    for (const [name, output] of Object.entries(outputs)) {
      const type = output['type'];
      if (type === 'elasticsearch' || type === 'remote_elasticsearch') {
        const roles = permissions[name];
        if (!roles) {
          error ??= 'output permission sections not found';
          continue;
        }
        let remote: JsonObject | undefined;
        if (type === 'remote_elasticsearch') {
          // The connection is kept for minting keys there; agents get an ordinary output without the token.
          const { type: _t, api_key: _k, ...connection } = output;
          remote = connection;
          output['type'] = 'elasticsearch';
          delete output['service_token'];
        }
        const given = typeof output['api_key'] === 'string' && output['api_key'] !== '' ? output['api_key'] : undefined;
        const es: EsOutput = { name, roles, permissionsHash: permissionsHash(roles), ...(remote ? { remote, connectionHash: connectionHash(remote) } : {}) };
        if (given === undefined) this.esOutputs.push(es);
        else this.given.set(name, given);
        this.allEsOutputs.push(es);
        esNames.push(name);
        output['api_key'] = mark('key', esNames.length - 1);
      } else if (type !== 'logstash' && type !== 'kafka') {
        error ??= `unknown output type: ${String(type)}`;
      }
    }
    const exporters = data['exporters'];
    if (exporters && typeof exporters === 'object' && !Array.isArray(exporters)) {
      for (const [exporterName, exporter] of Object.entries(exporters)) {
        const i = esNames.indexOf(exporterName.startsWith('elasticsearch/') ? exporterName.slice(14) : '');
        if (i >= 0 && exporter && typeof exporter === 'object' && !Array.isArray(exporter)) exporter['api_key'] = mark('b64', i);
      }
    }
    this.error = error;
    const action = {
      id: this.actionId,
      agent_id: mark('agent'),
      type: 'POLICY_CHANGE',
      created_at: doc['@timestamp'],
      input_type: '',
      data: { policy: data },
    };
    const text = JSON.stringify(action);
    const parts: string[] = [];
    let last = 0;
    for (const m of text.matchAll(MARK)) {
      parts.push(text.slice(last, m.index));
      const i = Number(m[2]);
      this.slots.push(m[1] === 'agent' ? { kind: 'agent' } : { kind: m[1] as 'key' | 'b64', output: esNames[i]! });
      last = m.index + m[0].length;
    }
    parts.push(text.slice(last));
    this.template = new TextTemplate(parts);
  }

  /** The JSON values of the template's holes for one agent. keys: output name → "id:key". */
  values(agentId: string, keys: Record<string, string>): string[] {
    return this.slots.map((slot) => JSON.stringify(slot.kind === 'agent' ? agentId
      : slot.kind === 'key' ? (keys[slot.output] ?? this.given.get(slot.output) ?? '')
        : Buffer.from(keys[slot.output] ?? this.given.get(slot.output) ?? '').toString('base64')));
  }
}

function isEmpty(v: unknown): boolean {
  if (v === undefined || v === null || v === '' || v === 0 || v === false) return true;
  if (Array.isArray(v)) return v.length === 0;
  if (typeof v === 'object') return Object.keys(v as object).length === 0;
  return false;
}

function prepareData(src: PolicyData, lookup: SecretLookup): JsonObject {
  const data = structuredClone(src) as unknown as JsonObject;
  const paths = new Set<string>();
  if (data['outputs']) data['outputs'] = resolveInline(data['outputs'], lookup, 'outputs', paths);
  if (Array.isArray(data['inputs'])) data['inputs'] = resolveInline(data['inputs'], lookup, 'inputs', paths);
  const agent = data['agent'];
  if (agent && typeof agent === 'object' && !Array.isArray(agent) && agent['download']) {
    agent['download'] = resolveInline(agent['download'], lookup, 'agent.download', paths);
  }
  if (data['fleet']) data['fleet'] = resolveInline(data['fleet'], lookup, 'fleet', paths);
  for (const s of OTEL_SECTIONS) if (data[s]) data[s] = resolveInline(data[s], lookup, s, paths);
  const outputs = (data['outputs'] ?? {}) as Record<string, JsonObject>;
  for (const [name, o] of Object.entries(outputs)) {
    if (o && o['type'] === 'remote_elasticsearch') paths.delete(`outputs.${name}.service_token`);
  }
  if (paths.size > 0) data['secret_paths'] = [...paths].sort() as Json;
  const out: JsonObject = {};
  for (const k of POLICY_KEYS) if (!isEmpty(data[k])) out[k] = data[k]!;
  return out;
}
