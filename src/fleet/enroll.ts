// Enrollment: the enrollment token names a policy; the agent gets a new id (or replaces one it may
// replace) and an access API key minted by the store.
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import type { AgentDoc, EnrollmentKeyDoc, Json } from '../store/documents';
import { ConflictError, type Store } from '../store/port';
import { LruCache } from '../util/lru';
import { rfc3339 } from '../util/time';
import type { ApiKeyCredentials, Authenticator } from './auth';
import { badRequest, FleetError } from './errors';
import { localMetadataValidator, type EnrollRequest } from './messages';
import { policyBaseId } from './policy-id';
import { hashReplaceToken, replaceTokenMatches, type Pbkdf2Options } from './replace-token';
import { isPlainObject } from '../util/is-object';
import { API_KEY_NAME_MAX_CHARS, apiKeyNameFits, CONTROL } from './api-key-name';

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
  private readonly inFlightAgentIds = new Set<string>();
  /** SHA-256 of each static token's key: compared in constant time, whatever the lengths. */
  private readonly staticTokens: { digest: Buffer; policyId: string }[];

  constructor(
    private readonly store: Store,
    private readonly auth: Authenticator,
    private readonly opts: EnrollOptions,
    private readonly log: Logger,
  ) {
    const spt = opts.staticPolicyTokens;
    // The configuration refuses short keys at start; an empty one must never match a key-less header.
    this.staticTokens = spt.enabled
      ? spt.tokens.filter((t) => t.tokenKey !== '').map((t) => ({ digest: sha256(t.tokenKey), policyId: t.policyId }))
      : [];
  }

  /** Authenticates the enrollment token and finds what it enrolls into. */
  async authenticate(creds: ApiKeyCredentials): Promise<EnrollmentRecord> {
    if (this.staticTokens.length > 0) {
      // As upstream (handleEnroll.go retrieveStaticTokenEnrollmentToken), the secret alone is matched;
      // every token is compared, so the time taken says nothing about which one matched.
      const d = sha256(creds.key);
      let policyId: string | undefined;
      for (const t of this.staticTokens) if (timingSafeEqual(t.digest, d) && policyId === undefined) policyId = t.policyId;
      if (policyId !== undefined) {
        const policy = await this.store.latestPolicy(policyId);
        if (!policy) throw new FleetError('PolicyNotFound');
        return { policyId, namespaces: [] };
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
    // Upstream's words without the value: the type may be up to the body's 512 KiB, echoed and logged.
    if (!ENROLL_TYPES.has(req.type)) throw badRequest('unknown enroll request type');
    checkInput(req);
    const enrollmentId = req.enrollment_id || undefined;
    const agentId = req.id || undefined;
    // One enroll at a time per enrollment_id (upstream's de-duplicating queue) and per agent id: two at
    // once for one id would each mint a key and only one document can name it. The other is told to
    // retry, and its retry takes the replace path.
    const locks: [Set<string>, string][] = [];
    if (enrollmentId !== undefined) locks.push([this.inFlightEnrollmentIds, enrollmentId]);
    if (agentId !== undefined) locks.push([this.inFlightAgentIds, agentId]);
    if (locks.some(([held, id]) => held.has(id))) throw new FleetError('EnrollDuplicate');
    for (const [held, id] of locks) held.add(id);
    try {
      return await this.enrollLocked(record, agentVersion, req, enrollmentId);
    } finally {
      for (const [held, id] of locks) held.delete(id);
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
    // Hashed before a key is minted: a hash refused for load (replace-token.ts) then costs no key.
    const replaceToken = !existing && req.replace_token ? await hashReplaceToken(req.replace_token, this.opts.pbkdf2) : undefined;
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
            policy_base_id: policyBaseId(existing.policy_id ?? record.policyId),
            updated_at: now,
            audit_unenrolled_time: null,
            audit_unenrolled_reason: null,
            unenrolled_at: null,
            unenrolled_reason: null,
          },
          // Recorded only over the key this pass read: another process replacing the same agent at the
          // same time (the lock above is this process's) makes one of the two a ConflictError, which
          // invalidates its own key below and is told to retry. (A document with no key has nothing to
          // lose and no condition.)
          ...(existing.access_api_key_id ? { whileAccessKeyId: existing.access_api_key_id } : {}),
        }).catch((err: unknown) => {
          throw err instanceof ConflictError ? new FleetError('EnrollDuplicate') : err;
        });
      } else {
        const doc: AgentDoc = {
          active: true,
          policy_id: record.policyId,
          policy_base_id: policyBaseId(record.policyId),
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
        if (replaceToken !== undefined) doc.replace_token = replaceToken;
        // Created meanwhile by another enroll (another worker or instance): upstream treats the 409 as
        // success, and its key stays valid with no document naming it. Refused here, key and all; the
        // retry finds the document and replaces it (or is refused as any replace would be).
        if (!await this.store.createAgent(agentId, doc)) throw new FleetError('EnrollDuplicate');
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

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** Elasticsearch's bound on a document _id, which an agent id becomes. */
const ID_MAX_BYTES = 512;
/**
 * Refuses (400) what Elasticsearch would refuse when the agent is written, which would otherwise surface
 * as a 500 after a key was minted: an id Elasticsearch takes neither as a document id (over 512 bytes)
 * nor as an API key's name (over 256 characters, a leading `_`, spaces at either end), control characters
 * (also kept out of logs), and local metadata that is not an object (the field is mapped as one).
 */
function checkInput(req: EnrollRequest): void {
  const id = req.id;
  if (id && (Buffer.byteLength(id) > ID_MAX_BYTES || !apiKeyNameFits(id))) {
    throw badRequest(`id must be at most ${API_KEY_NAME_MAX_CHARS} characters and ${ID_MAX_BYTES} UTF-8 bytes, without control characters or spaces at either end, and not start with "_"`);
  }
  if (req.enrollment_id && (Buffer.byteLength(req.enrollment_id) > ID_MAX_BYTES || CONTROL.test(req.enrollment_id))) {
    throw badRequest(`enrollment_id must be at most ${ID_MAX_BYTES} UTF-8 bytes, without control characters`);
  }
  const local = req.metadata.local;
  if (local !== undefined && local !== null && !isPlainObject(local)) {
    throw badRequest('metadata.local must be an object');
  }
  if (local !== undefined && local !== null && !localMetadataValidator.check(local)) {
    throw badRequest('unable to decode enroll request', `metadata.local${localMetadataValidator.explain(local)}`);
  }
}

function recordOf(doc: EnrollmentKeyDoc): EnrollmentRecord {
  return { policyId: doc.policy_id ?? '', namespaces: doc.namespaces ?? [] };
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
