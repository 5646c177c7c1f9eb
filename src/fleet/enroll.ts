// Enrollment: the enrollment token names a policy; the agent gets a new id (or replaces one it may
// replace) and an access API key minted by the store.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { AgentDoc, EnrollmentKeyDoc, Json } from '../store/documents';
import type { Store } from '../store/port';
import { LruCache } from '../util/lru';
import { rfc3339 } from '../util/time';
import type { ApiKeyCredentials, Authenticator } from './auth';
import { badRequest, FleetError } from './errors';
import type { EnrollRequest } from './messages';
import { hashReplaceToken, replaceTokenMatches, type Pbkdf2Options } from './replace-token';

export interface EnrollmentRecord {
  policyId: string;
  namespaces: string[];
}

export interface EnrollResponseItem {
  id: string;
  active: boolean;
  policy_id: string;
  type: string;
  enrolled_at: string;
  user_provided_metadata: Json;
  local_metadata: Json;
  access_api_key_id: string;
  access_api_key: string;
  status: 'online';
  tags: string[];
}

export interface EnrollOptions {
  staticPolicyTokens: { enabled: boolean; tokens: { tokenKey: string; policyId: string }[] };
  pbkdf2: Pbkdf2Options;
  ttlEnrollKeyMs: number;
}

const ENROLL_TYPES = new Set(['PERMANENT', 'EPHEMERAL', 'TEMPORARY']);

const ACCESS_ROLE = {
  'fleet-apikey-access': {
    cluster: [],
    applications: [{ application: 'fleet', privileges: ['no-privileges'], resources: ['*'] }],
  },
};

export class EnrollService {
  private readonly records = new LruCache<string, EnrollmentRecord>(10_000);
  private readonly inFlightEnrollmentIds = new Set<string>();

  constructor(
    private readonly store: Store,
    private readonly auth: Authenticator,
    private readonly opts: EnrollOptions,
    private readonly log: Logger,
  ) {}

  /** Authenticates the enrollment token and finds what it enrolls into. */
  async authenticate(creds: ApiKeyCredentials): Promise<EnrollmentRecord> {
    const spt = this.opts.staticPolicyTokens;
    if (spt.enabled) {
      const token = spt.tokens.find((t) => t.tokenKey === creds.key);
      if (token) {
        const policy = await this.store.latestPolicy(token.policyId);
        if (!policy) throw new FleetError('PolicyNotFound');
        return { policyId: token.policyId, namespaces: [] };
      }
    }
    await this.auth.authenticate(creds);
    const cached = this.records.get(creds.id);
    if (cached) return cached;
    const key = await this.store.findEnrollmentKey(creds.id);
    // Upstream answers 500 ("hit count mismatch 0"); a key that enrolls nothing is an auth failure.
    if (!key) throw new FleetError('Unauthorized');
    const record = recordOf(key._source);
    // The cache spares a remote store an enrollment storm; a local lookup is cheaper than stale
    // answers, so there revocation takes effect at once.
    if (this.store.traits.remoteApiKeys) this.records.set(creds.id, record, this.opts.ttlEnrollKeyMs);
    return record;
  }

  async enroll(record: EnrollmentRecord, agentVersion: string, req: EnrollRequest): Promise<EnrollResponseItem> {
    if (!ENROLL_TYPES.has(req.type)) throw badRequest('unknown enroll request type', req.type);
    const enrollmentId = req.enrollment_id || undefined;
    if (enrollmentId !== undefined) {
      if (this.inFlightEnrollmentIds.has(enrollmentId)) throw new FleetError('EnrollDuplicate');
      this.inFlightEnrollmentIds.add(enrollmentId);
    }
    try {
      return await this.enrollLocked(record, agentVersion, req, enrollmentId);
    } finally {
      if (enrollmentId !== undefined) this.inFlightEnrollmentIds.delete(enrollmentId);
    }
  }

  private async enrollLocked(record: EnrollmentRecord, agentVersion: string, req: EnrollRequest,
    enrollmentId: string | undefined): Promise<EnrollResponseItem> {
    if (enrollmentId !== undefined) {
      const dup = await this.store.findAgentByEnrollmentId(enrollmentId);
      // Only a duplicate that never checked in is removed: it is the leftover of a retried enroll.
      if (dup && !dup._source.last_checkin) {
        await this.retireAgent(dup._id, dup._source);
      }
    }

    let agentId = req.id || '';
    let existing: AgentDoc | undefined;
    if (agentId !== '') {
      const found = await this.store.getAgent(agentId);
      if (found && !found._source.active) {
        await this.store.deleteAgent(agentId);
      } else if (found) {
        await this.checkReplaceable(found._source, req.replace_token ?? '', record.policyId);
        existing = found._source;
      }
    } else {
      agentId = randomUUID();
    }

    const localMetadata = rewriteAgentId(req.metadata.local, agentId);
    const tags = [...new Set(req.metadata.tags ?? [])].sort();
    const key = await this.store.createApiKey({
      name: agentId,
      roleDescriptors: ACCESS_ROLE,
      metadata: { agent_id: agentId, managed: true, managed_by: 'fleet-server', type: 'access' },
    });
    const now = rfc3339();
    try {
      if (existing) {
        await this.store.updateAgent({
          id: agentId,
          doc: {
            namespaces: record.namespaces,
            local_metadata: localMetadata,
            access_api_key_id: key.id,
            agent: { id: agentId, version: agentVersion },
            tags,
            policy_revision_idx: 0,
            policy_base_id: baseId(existing.policy_id ?? record.policyId),
            updated_at: now,
            audit_unenrolled_time: null,
            audit_unenrolled_reason: null,
            unenrolled_at: null,
            unenrolled_reason: null,
          },
        });
      } else {
        const doc: AgentDoc = {
          active: true,
          policy_id: record.policyId,
          policy_base_id: baseId(record.policyId),
          namespaces: record.namespaces,
          type: req.type,
          enrolled_at: now,
          local_metadata: localMetadata,
          access_api_key_id: key.id,
          action_seq_no: [-1],
          agent: { id: agentId, version: agentVersion },
          tags,
        };
        if (enrollmentId !== undefined) doc.enrollment_id = enrollmentId;
        if (req.replace_token) doc.replace_token = await hashReplaceToken(req.replace_token, this.opts.pbkdf2);
        // A concurrent create of the same id is treated as success, as upstream does with a 409.
        await this.store.createAgent(agentId, doc);
      }
    } catch (err) {
      await this.store.invalidateApiKeys([key.id]).catch(() => undefined);
      throw err;
    }
    // The replaced agent's old key, once the document names the new one: best effort, outside the
    // try above, whose clean-up would otherwise invalidate the key the document now names. An old key left
    // valid no longer authenticates the agent (its document names the new key); forgetting it ends any
    // cached authentication.
    const oldKeyId = existing?.access_api_key_id;
    if (oldKeyId && oldKeyId !== key.id) {
      await this.store.invalidateApiKeys([oldKeyId]).catch((err: unknown) =>
        this.log.warn({ err, 'fleet.agent.id': agentId, 'fleet.policy.apiKeyIDs': [oldKeyId] }, 'replaced agent\'s old API key not invalidated'));
      this.auth.forget([oldKeyId]);
    }
    this.auth.remember(key.id, key.key);
    this.log.info({ 'fleet.agent.id': agentId, 'fleet.policy.id': record.policyId }, 'Elastic Agent successfully enrolled');
    return {
      id: agentId,
      active: true,
      policy_id: existing?.policy_id ?? record.policyId,
      type: existing?.type ?? req.type,
      enrolled_at: existing?.enrolled_at ?? now,
      user_provided_metadata: existing ? (existing.user_provided_metadata ?? null) : null,
      local_metadata: localMetadata,
      access_api_key_id: key.id,
      access_api_key: Buffer.from(`${key.id}:${key.key}`).toString('base64'),
      status: 'online',
      tags,
    };
  }

  private async checkReplaceable(agent: AgentDoc, token: string, policyId: string): Promise<void> {
    if (!agent.replace_token || token === '') throw new FleetError('AgentNotReplaceable');
    const ok = await replaceTokenMatches(token, agent.replace_token);
    if (ok === undefined) throw new FleetError('AgentCorrupted');
    if (!ok || agent.policy_id !== policyId) throw new FleetError('AgentNotReplaceable');
  }

  private async retireAgent(id: string, doc: AgentDoc): Promise<void> {
    if (doc.access_api_key_id) {
      await this.store.invalidateApiKeys([doc.access_api_key_id]);
      this.auth.forget([doc.access_api_key_id]);
    }
    await this.store.deleteAgent(id);
  }
}

function recordOf(doc: EnrollmentKeyDoc): EnrollmentRecord {
  return { policyId: doc.policy_id ?? '', namespaces: doc.namespaces ?? [] };
}

/** A policy id with any "#..." suffix removed. */
function baseId(policyId: string): string {
  const i = policyId.indexOf('#');
  return i < 0 ? policyId : policyId.slice(0, i);
}

/** local_metadata.elastic.agent.id, when present, is replaced by the enrolled id. */
function rewriteAgentId(local: unknown, agentId: string): Json {
  if (local === undefined || local === null) return null;
  if (typeof local !== 'object' || Array.isArray(local)) return local as Json;
  const elastic = (local as Record<string, any>)['elastic'];
  if (elastic && typeof elastic === 'object' && elastic.agent && typeof elastic.agent === 'object' && 'id' in elastic.agent) {
    return { ...(local as object), elastic: { ...elastic, agent: { ...elastic.agent, id: agentId } } } as Json;
  }
  return local as Json;
}
