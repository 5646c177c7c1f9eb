// Administration without Kibana: policies, enrollment tokens, agents and actions, written the way
// Kibana's Fleet writes them, through the same store port.
import { randomUUID } from 'node:crypto';
import { enrollmentTokenPrefix, type ActionDoc, type ActionResultDoc, type AgentDoc, type EnrollmentKeyDoc, type Hit, type Json, type JsonObject, type PolicyData, type PolicyDoc, type RoleMap } from '../store/documents';
import type { Store } from '../store/port';
import { parseDuration } from '../util/duration';
import { describeError } from '../util/error-text';
import { isoTime, rfc3339 } from '../util/time';
import { ACTION_TYPES } from './actions';
import { policyBaseId } from './policy-id';
import { isPlainObject } from '../util/is-object';
import { API_KEY_NAME_MAX_CHARS, apiKeyNameFits } from './api-key-name';

export class AdminError extends Error {
  override readonly name = 'AdminError';
}

/** What `policy put` accepts: an agent policy as Kibana would compile it (id required). */
export interface PolicyInput {
  id: string;
  name?: string;
  namespace?: string;
  outputs?: Record<string, JsonObject>;
  inputs?: Json[];
  agent?: Json;
  fleet?: Json;
  output_permissions?: Record<string, RoleMap>;
  default_fleet_server?: boolean;
  unenroll_timeout?: number;
  [k: string]: unknown;
}

/** Kibana's baseline privileges for an Elasticsearch output when the policy names none. */
function defaultPermissions(): RoleMap {
  return {
    _elastic_agent_checks: { cluster: ['monitor'] },
    _elastic_agent_monitoring: {
      indices: [{ names: ['logs-elastic_agent*-*', 'metrics-elastic_agent*-*'], privileges: ['auto_configure', 'create_doc'] }],
    },
    default: {
      indices: [{ names: ['logs-*-*', 'metrics-*-*', 'traces-*-*', 'synthetics-*-*'], privileges: ['auto_configure', 'create_doc'] }],
    },
  };
}

/**
 * Privilege names Elasticsearch documents (Elasticsearch privileges reference, through 9.6; deprecated
 * and serverless-only names kept), as it compares them: lower case. An agent's output key is minted
 * with its policy's output_permissions, and Elasticsearch refuses a role naming a privilege it does not
 * know: every check-in of the policy's agents then failed with a 500. A name a later Elasticsearch adds
 * is refused here until it is listed (`policy put --force` takes it); an action pattern (`indices:…`,
 * `cluster:…`) is always taken.
 */
const INDEX_PRIVILEGES = new Set(['all', 'auto_configure', 'create', 'create_doc', 'create_index', 'create_view', 'cross_cluster_replication',
  'cross_cluster_replication_internal', 'delete', 'delete_index', 'delete_view', 'index', 'maintenance', 'manage', 'manage_data_stream_lifecycle',
  'manage_failure_store', 'manage_follow_index', 'manage_ilm', 'manage_leader_index', 'manage_view', 'monitor', 'none', 'read',
  'read_cross_cluster', 'read_failure_store', 'read_view_metadata', 'view_index_metadata', 'write']);
const CLUSTER_PRIVILEGES = new Set(['all', 'cancel_task', 'clone_api_key', 'create_snapshot', 'cross_cluster_replication', 'cross_cluster_search',
  'delegate_pki', 'grant_api_key', 'manage', 'manage_api_key', 'manage_autoscaling', 'manage_behavioral_analytics', 'manage_ccr',
  'manage_connector', 'manage_data_frame_transforms', 'manage_data_stream_global_retention', 'manage_enrich', 'manage_ilm',
  'manage_index_templates', 'manage_inference', 'manage_ingest_pipelines', 'manage_logstash_pipelines', 'manage_ml', 'manage_oidc',
  'manage_own_api_key', 'manage_pipeline', 'manage_project_routing', 'manage_reindex', 'manage_rollup', 'manage_saml',
  'manage_search_application', 'manage_search_query_rules', 'manage_search_synonyms', 'manage_security', 'manage_service_account',
  'manage_slm', 'manage_token', 'manage_transform', 'manage_user_profile', 'manage_watcher', 'monitor', 'monitor_connector',
  'monitor_data_frame_transforms', 'monitor_data_stream_global_retention', 'monitor_enrich', 'monitor_esql', 'monitor_inference',
  'monitor_ml', 'monitor_reindex', 'monitor_rollup', 'monitor_snapshot', 'monitor_stats', 'monitor_text_structure', 'monitor_transform',
  'monitor_watcher', 'none', 'post_behavioral_analytics_event', 'read_ccr', 'read_connector_secrets', 'read_fleet_secrets', 'read_ilm',
  'read_pipeline', 'read_project_routing', 'read_security', 'read_slm', 'transport_client', 'write_connector_secrets', 'write_fleet_secrets']);

// Action patterns as Elasticsearch tells them from names (IndexPrivilege's and ClusterPrivilegeResolver's matchers).
const indexPrivilegeKnown = (p: string): boolean => INDEX_PRIVILEGES.has(p.toLowerCase()) || /^(indices:|internal:transport\/proxy\/indices:)/i.test(p);
const clusterPrivilegeKnown = (p: string): boolean =>
  CLUSTER_PRIVILEGES.has(p.toLowerCase()) || /^(cluster:|indices:admin\/template\/|indices:admin\/index_template\/)/i.test(p);

/** output_permissions (output → role name → role descriptor): the shape and the privilege names Elasticsearch would refuse. */
function checkPermissions(permissions: unknown, knownPrivilegesOnly: boolean): void {
  if (permissions === undefined || permissions === null) return;
  if (!isPlainObject(permissions)) throw new AdminError('policy.output_permissions must map output names to roles');
  for (const [output, roles] of Object.entries(permissions)) {
    if (!isPlainObject(roles)) throw new AdminError(`policy.output_permissions.${output} must map role names to role descriptors`);
    for (const [role, d] of Object.entries(roles)) {
      const at = `policy.output_permissions.${output}.${role}`;
      if (!isPlainObject(d)) throw new AdminError(`${at} must be a role descriptor (cluster, indices, …)`);
      const names = (v: unknown, what: string): string[] => {
        const list = typeof v === 'string' ? [v] : v;
        if (!Array.isArray(list) || list.some((x) => typeof x !== 'string')) throw new AdminError(`${at}.${what} must be a list of names`);
        return list as string[];
      };
      for (const p of d['cluster'] === undefined ? [] : names(d['cluster'], 'cluster')) {
        if (knownPrivilegesOnly && !clusterPrivilegeKnown(p)) throw new AdminError(`${at}.cluster: unknown cluster privilege ${JSON.stringify(p)} (Elasticsearch would refuse the agents' API keys; --force for one a later Elasticsearch knows)`);
      }
      const indices = d['indices'] ?? d['index'];
      if (indices === undefined) continue;
      if (!Array.isArray(indices)) throw new AdminError(`${at}.indices must be a list of {names, privileges}`);
      indices.forEach((e: unknown, i) => {
        if (!isPlainObject(e) || e['names'] === undefined || e['privileges'] === undefined) throw new AdminError(`${at}.indices[${i}] needs names and privileges`);
        names(e['names'], `indices[${i}].names`);
        for (const p of names(e['privileges'], `indices[${i}].privileges`)) {
          if (knownPrivilegesOnly && !indexPrivilegeKnown(p)) throw new AdminError(`${at}.indices[${i}].privileges: unknown index privilege ${JSON.stringify(p)} (Elasticsearch would refuse the agents' API keys; --force for one a later Elasticsearch knows)`);
        }
      });
    }
  }
}

/** What a token list shows: never the token (the embedded store cannot give it back), a prefix to tell tokens apart. */
export interface EnrollmentTokenSummary {
  id: string;
  name: string;
  policy_id: string;
  active: boolean;
  prefix: string;
  created_at?: string;
}

export function enrollmentTokenSummary(h: Hit<EnrollmentKeyDoc>): EnrollmentTokenSummary {
  const d = h._source;
  const out: EnrollmentTokenSummary = {
    id: h._id, name: d.name ?? '', policy_id: d.policy_id ?? '', active: d.active, prefix: d.api_key_prefix ?? enrollmentTokenPrefix(d.api_key),
  };
  if (d.created_at !== undefined) out.created_at = d.created_at;
  return out;
}

export class Admin {
  constructor(private readonly store: Store) {}

  /** `opts.force`: privilege names this server does not know are taken (one a later Elasticsearch knows). */
  async putPolicy(input: PolicyInput, opts: { force?: boolean } = {}): Promise<Hit<PolicyDoc>> {
    if (!isPlainObject(input)) throw new AdminError('policy must be an object');
    if (input.id === undefined || input.id === null || input.id === '') throw new AdminError('policy.id is required');
    // YAML reads `id: 5` as a number; a policy id is a string everywhere it is used (and compared).
    if (typeof input.id !== 'string') throw new AdminError(`policy.id must be a string (write it in quotes: id: "${String(input.id)}")`);
    const outputs = input.outputs ?? {};
    if (typeof outputs !== 'object' || Array.isArray(outputs) || Object.keys(outputs).length === 0) {
      throw new AdminError('policy.outputs must name at least one output');
    }
    checkPermissions(input.output_permissions, !opts.force);
    const permissions: Record<string, RoleMap> = { ...(input.output_permissions ?? {}) };
    for (const [name, o] of Object.entries(outputs)) {
      if (!o || typeof o !== 'object' || typeof o['type'] !== 'string') throw new AdminError(`policy.outputs.${name}.type is required`);
      if ((o['type'] === 'elasticsearch' || o['type'] === 'remote_elasticsearch') && !permissions[name]) permissions[name] = defaultPermissions();
    }
    // The next revision as far as this read goes; should another writer take it meanwhile, the store
    // writes the one after (and returns the document as written).
    const latest = await this.store.latestPolicy(input.id);
    const revision = (latest?._source.revision_idx ?? 0) + 1;
    const { id, name, namespace: _n, default_fleet_server, unenroll_timeout, output_permissions: _p, ...rest } = input;
    const data: PolicyData = {
      ...rest,
      id,
      revision,
      outputs,
      inputs: input.inputs ?? [],
      output_permissions: permissions,
    };
    const doc: PolicyDoc = {
      '@timestamp': isoTime(),
      policy_id: id,
      revision_idx: revision,
      coordinator_idx: 1,
      data,
      default_fleet_server: default_fleet_server ?? false,
    };
    if (unenroll_timeout !== undefined) doc.unenroll_timeout = unenroll_timeout;
    if (name !== undefined) doc['name'] = name;
    return this.store.addPolicyRevision(doc);
  }

  listPolicies(): Promise<Hit<PolicyDoc>[]> {
    return this.store.latestPolicies();
  }

  async showPolicy(id: string): Promise<Hit<PolicyDoc>> {
    const p = await this.store.latestPolicy(id);
    if (!p) throw new AdminError(`policy ${id} not found`);
    return p;
  }

  async createEnrollmentToken(policyId: string, name?: string, namespaces?: string[]): Promise<Hit<EnrollmentKeyDoc>> {
    await this.showPolicy(policyId);
    const id = randomUUID();
    const keyName = name ?? `Default (${id})`;
    if (!apiKeyNameFits(keyName)) {
      throw new AdminError(`--name must be 1 to ${API_KEY_NAME_MAX_CHARS} characters, without control characters or spaces at either end, and not start with "_" (it names the token's API key)`);
    }
    const key = await this.store.createApiKey({
      name: keyName,
      // As Kibana: an empty role map would give the key a snapshot of its creator's (Fleet Server's) privileges.
      roleDescriptors: {
        'fleet-apikey-enroll': { cluster: [], index: [], applications: [{ application: 'fleet', privileges: ['no-privileges'], resources: ['*'] }] },
      },
      metadata: { managed_by: 'fleet', managed: true, type: 'enroll', policy_id: policyId },
    });
    const now = rfc3339();
    const doc: EnrollmentKeyDoc = {
      active: true,
      api_key_id: key.id,
      api_key: Buffer.from(`${key.id}:${key.key}`).toString('base64'),
      name: keyName,
      policy_id: policyId,
      created_at: now,
    };
    if (namespaces && namespaces.length > 0) doc.namespaces = namespaces;
    await this.store.putEnrollmentKey(id, doc);
    return { _id: id, _source: doc };
  }

  async listEnrollmentTokens(policyId?: string): Promise<EnrollmentTokenSummary[]> {
    return (await this.store.listEnrollmentKeys(policyId)).map(enrollmentTokenSummary);
  }

  async revokeEnrollmentToken(id: string): Promise<void> {
    const all = await this.store.listEnrollmentKeys();
    const found = all.find((k) => k._id === id || k._source.api_key_id === id);
    if (!found) throw new AdminError(`enrollment token ${id} not found`);
    await this.store.updateEnrollmentKey(found._id, { active: false, updated_at: rfc3339() });
    await this.store.invalidateApiKeys([found._source.api_key_id]);
  }

  listAgents(opts: { policyId?: string; active?: boolean } = {}): Promise<Hit<AgentDoc>[]> {
    return this.store.listAgents(opts);
  }

  async showAgent(id: string): Promise<Hit<AgentDoc>> {
    const a = await this.store.getAgent(id);
    if (!a) throw new AdminError(`agent ${id} not found`);
    return a;
  }

  /**
   * Refuses ids no enrolled agent has: an action or a file for an agent that does not exist, or that was
   * unenrolled (it checks in no more), waits for nobody, and a mistyped id would go unnoticed. (The
   * command line's --force skips this, for agents yet to enroll, or to enroll again under the same id.)
   */
  async requireAgents(ids: string[]): Promise<void> {
    const found = await Promise.all(ids.map((id) => this.store.getAgent(id)));
    const unknown = ids.filter((_, i) => !found[i]);
    const unenrolled = ids.filter((_, i) => found[i] && !found[i]!._source.active);
    if (unknown.length === 0 && unenrolled.length === 0) return;
    const what = [
      ...(unknown.length > 0 ? [`no agent ${unknown.join(', ')}`] : []),
      ...(unenrolled.length > 0 ? [`agent ${unenrolled.join(', ')} ${unenrolled.length === 1 ? 'is' : 'are'} unenrolled`] : []),
    ];
    throw new AdminError(`${what.join('; ')} (see agents list --all); give --force for agents yet to enroll`);
  }

  /** `knownAgents`: every agent named must exist and be enrolled (requireAgents). */
  async createAction(o: {
    type: string; agents: string[]; data?: Json; expiration?: string; startTime?: string;
    rolloutDuration?: string | number; inputType?: string; timeout?: number; knownAgents?: boolean;
  }): Promise<Hit<ActionDoc>> {
    const type = o.type.toUpperCase();
    if (!(ACTION_TYPES as readonly string[]).includes(type)) throw new AdminError(`unknown action type ${o.type}; one of ${ACTION_TYPES.join(', ')}`);
    // Kibana moves the agent to the policy before it writes the action; the action alone moves nothing.
    if (type === 'POLICY_REASSIGN') throw new AdminError('POLICY_REASSIGN moves an agent to another policy: use fleet-server agents reassign AGENT_ID --policy POLICY_ID');
    return this.writeAction({ ...o, type });
  }

  /**
   * Moves an agent to another policy as Kibana's reassignAgent does (services/agents/reassign.ts): its
   * policy_id (and policy_base_id) become the new policy's and its policy_revision_idx is cleared, so its
   * next check-in is given the new policy whatever revision it reports (upstream's checkin, §3.5); then a
   * POLICY_REASSIGN action naming the policy records the move.
   */
  async reassignAgent(agentId: string, policyId: string): Promise<Hit<ActionDoc>> {
    await this.showPolicy(policyId);
    const agent = await this.showAgent(agentId);
    if (!agent._source.active) throw new AdminError(`agent ${agentId} is unenrolled`);
    if (agent._source.policy_id === policyId) throw new AdminError(`agent ${agentId} is on policy ${policyId} already`);
    await this.store.updateAgent({
      id: agentId, doc: { policy_id: policyId, policy_base_id: policyBaseId(policyId), policy_revision_idx: null, updated_at: rfc3339() },
    });
    // The two writes are not one transaction (nor are they in Kibana, whose order this is): the move
    // stands once the agent is written, and whoever reads a failure must not take it for "nothing happened".
    try {
      return await this.writeAction({ type: 'POLICY_REASSIGN', agents: [agentId], data: { policy_id: policyId } });
    } catch (err) {
      throw new AdminError(`agent ${agentId} moved to policy ${policyId}; recording the POLICY_REASSIGN action failed: ${describeError(err)}`, { cause: err });
    }
  }

  private async writeAction(o: {
    type: string; agents: string[]; data?: Json; expiration?: string; startTime?: string;
    rolloutDuration?: string | number; inputType?: string; timeout?: number; knownAgents?: boolean;
  }): Promise<Hit<ActionDoc>> {
    const type = o.type;
    if (o.agents.length === 0) throw new AdminError('--agents must name at least one agent');
    const data = isPlainObject(o.data) ? o.data : undefined;
    if (type === 'CANCEL' && !(data && 'target_id' in data)) {
      throw new AdminError('CANCEL needs --data \'{"target_id":"<action id>"}\'');
    }
    // An UPGRADE without a version gives the agent nothing to upgrade to: it could only fail there.
    if (type === 'UPGRADE' && !(typeof data?.['version'] === 'string' && data['version'] !== '')) {
      throw new AdminError('UPGRADE needs --data \'{"version":"<agent version>"}\'');
    }
    if (o.timeout !== undefined && !(Number.isSafeInteger(o.timeout) && o.timeout >= 0)) throw new AdminError(`timeout ${o.timeout} must be a whole number of seconds, 0 or more`);
    const now = Date.now();
    const expiration = absoluteTime(o.expiration, now) ?? isoTime(now + 30 * 24 * 3600_000);
    // An action past its expiration is never delivered: it would sit in the store doing nothing.
    if (Date.parse(expiration) <= now) throw new AdminError(`--expiration ${o.expiration} is in the past (${expiration})`);
    const start = absoluteTime(o.startTime, now);
    if (start && Date.parse(start) >= Date.parse(expiration)) throw new AdminError(`--start-time ${o.startTime} (${start}) is not before the expiration (${expiration})`);
    const doc: ActionDoc = {
      action_id: randomUUID(),
      '@timestamp': isoTime(now),
      expiration,
      type,
      agents: o.agents,
    };
    if (o.data !== undefined) doc.data = o.data;
    if (start) doc.start_time = start;
    if (o.rolloutDuration !== undefined) {
      const secs = typeof o.rolloutDuration === 'number' ? o.rolloutDuration : parseDuration(o.rolloutDuration) / 1000;
      doc.rollout_duration_seconds = Math.round(secs);
    }
    if (o.inputType) doc.input_type = o.inputType;
    if (o.timeout !== undefined) doc.timeout = o.timeout;
    if (o.knownAgents) await this.requireAgents(o.agents);
    const [hit] = await this.store.createActions([doc]);
    return hit!;
  }

  async showAction(actionId: string): Promise<{ action: Hit<ActionDoc>; results: Hit<ActionResultDoc>[] }> {
    const action = await this.store.findAction(actionId, { withAgents: true });
    if (!action) throw new AdminError(`action ${actionId} not found`);
    return { action, results: await this.store.listActionResults(actionId) };
  }

  listActions(limit = 100): Promise<Hit<ActionDoc>[]> {
    return this.store.listActions(limit);
  }

  /**
   * Zero-config start: with no policy at all, create a default policy and (`withToken`) an enrollment
   * token so a fresh install can enroll agents at once. Returns the token when one was created: it is
   * freshly minted, as a stored one cannot be read back.
   */
  /**
   * The first start's set-up: with no policy at all, the default policy (`created`); with it the only
   * policy and no enrollment token yet (a first start that then failed, the port taken), nothing made
   * but the hint still due. A token with `withToken`. Undefined once the store is set up otherwise.
   */
  async ensureDefaultPolicy(fleetUrl: string, o: { withToken: boolean }): Promise<{ policyId: string; created: boolean; token?: string } | undefined> {
    const policyId = 'default-policy';
    const policies = await this.store.latestPolicies();
    if (policies.length > 1 || (policies.length === 1 && policies[0]!._source.policy_id !== policyId)) return undefined;
    const created = policies.length === 0;
    if (created) {
      await this.putPolicy({
        id: policyId,
        name: 'Default policy',
        outputs: { default: { type: 'elasticsearch', hosts: ['http://localhost:9200'] } },
        inputs: [],
        agent: { monitoring: { enabled: false, logs: false, metrics: false } },
        fleet: { hosts: [fleetUrl] },
      });
    } else if ((await this.store.listEnrollmentKeys()).length > 0) {
      return undefined;
    }
    if (!o.withToken) return { policyId, created };
    const t = await this.createEnrollmentToken(policyId, 'Default');
    return { policyId, created, token: t._source.api_key };
  }
}

/** "2026-01-01T00:00:00Z", or a duration from now ("1h", "30m"). */
function absoluteTime(v: string | undefined, now: number): string | undefined {
  if (v === undefined || v === '') return undefined;
  if (/^[0-9.]+(ns|us|µs|ms|s|m|h)/.test(v)) return isoTime(now + parseDuration(v));
  const t = Date.parse(v);
  if (Number.isNaN(t)) throw new AdminError(`invalid time ${v}: give RFC3339 or a duration like 1h`);
  return isoTime(t);
}
