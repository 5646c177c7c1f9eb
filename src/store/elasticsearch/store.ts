// The store port on Elasticsearch: documents in the .fleet-* indices exactly as Kibana's Fleet and
// upstream Fleet Server read and write them, API keys and secrets through the security and Fleet
// APIs, reads and writes batched by the bulker, changes followed through global checkpoints.
import type { Client } from '@elastic/elasticsearch';
import { createHash, randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { BulkConfig, ElasticsearchOutputConfig, MonitorConfig } from '../../config/config';
import type { ActionDoc, ActionResultDoc, AgentDoc, EnrollmentKeyDoc, Hit, PolicyDoc, RoleMap } from '../documents';
import type {
  AgentListQuery, ApiKey, ApiKeyCheck, ApiKeyService, ChangeFeed, RemoteOutput, CreateApiKeyRequest, DocUpdate, PendingAction, PendingActionQuery, Store,
} from '../port';
import { ConflictError, NotFoundError, StoreBusyError, StoreUnavailableError } from '../port';
import { Bulker, type ItemResult } from './bulker';
import { EsItemError } from './item-error';
import { EsChangeFeed } from './change-feed';
import { EsApiKeys } from './api-keys';
import { createClient, statusIn, statusOf, toStoreError, UNREACHABLE, withRetries } from './connection';
import { buildConfig } from '../../config/config';
import { filter, LATEST_POLICIES, pendingActions, term } from './queries';
import { Backoff, sleep } from '../../util/backoff';
import { Semaphore } from '../../util/semaphore';
import { MERGE_AND_REMOVE, MERGE_AND_REMOVE_WHILE_ACCESS_KEY, MERGE_AND_REMOVE_WHILE_KEYS_UNSET, MERGE_AND_REMOVE_WHILE_POLICY } from './scripts';
import { EsUploads } from './uploads';
import { EsDeliveries } from './deliveries';
import { EsArtifacts } from './artifacts';
import { VERSION } from '../../version';
import { isoTime } from '../../util/time';
import { jsonEqual } from '../../util/json-equal';

type Obj = Record<string, unknown>;

export const INDEX = {
  agents: '.fleet-agents',
  enrollmentKeys: '.fleet-enrollment-api-keys',
  policies: '.fleet-policies',
  actions: '.fleet-actions',
  actionResults: '.fleet-actions-results',
} as const;

const OUTPUT_HEALTH = 'logs-fleet_server.output_health-default';
/** Remote clusters' clients kept (one per distinct remote output configuration), the least recently used closed beyond. */
const REMOTE_CLIENTS = 32;
/** How long a client dropped from that set stays open: a check-in may have taken it just before, for a call or two. */
const DROPPED_CLIENT_GRACE_MS = 60_000;

interface SearchHit<T> {
  _id: string;
  _seq_no?: number;
  _source: T;
}

function hitsOf<T>(r: Obj): Hit<T>[] {
  const hits = ((r['hits'] as Obj | undefined)?.['hits'] ?? []) as SearchHit<T>[];
  return hits.map((h) => (h._seq_no === undefined ? { _id: h._id, _source: h._source } : { _id: h._id, _seq_no: h._seq_no, _source: h._source }));
}

function itemFailed(r: ItemResult, what: string, opts: { update?: boolean } = {}): Error {
  return toStoreError(new EsItemError(r.status, r.error?.type ?? 'unknown', r.error?.reason ?? `status ${r.status}`), what, opts) as Error;
}

/** The version this server needs: Elasticsearch must be the same minor or newer (upstream's rule). */
export function versionSupported(esVersion: string, fleetVersion: string): boolean {
  const [em = 0, en = 0] = esVersion.toLowerCase().replace(/-snapshot$/, '').split('.').map(Number);
  const [fm = 0, fn = 0] = fleetVersion.split('.').map(Number);
  return em > fm || (em === fm && en >= fn);
}

export interface EsStoreOptions {
  bulk: BulkConfig;
  monitor: MonitorConfig;
}

export class EsStore implements Store {
  readonly kind = 'elasticsearch' as const;
  readonly traits = { remoteApiKeys: true, filesExpire: true };
  readonly policyChanges: ChangeFeed<PolicyDoc>;
  readonly actionChanges: ChangeFeed<ActionDoc>;
  readonly client: Client;
  private readonly monitorClient: Client;
  readonly bulker: Bulker;
  readonly uploads: EsUploads;
  readonly deliveries: EsDeliveries;
  readonly artifacts: EsArtifacts;

  /** API-key calls share the connections with the bulker: upstream bounds them to max_conn_per_host − flush_max_pending. */
  private readonly keys: EsApiKeys;
  /** Remote clusters' key services by configuration, the most recently used last. */
  private readonly remotes = new Map<string, EsApiKeys>();
  /** Those dropped from `remotes`, each closed when its grace ends (or with the store). */
  private readonly dropped = new Map<EsApiKeys, NodeJS.Timeout>();

  /** The bulker's thresholds, which also bound each `_bulk` of a check-in batch. */
  private readonly bulkConfig: BulkConfig;

  constructor(config: ElasticsearchOutputConfig, opts: EsStoreOptions, private readonly log: Logger) {
    this.bulkConfig = opts.bulk;
    this.client = createClient(config, { maxRetries: config.maxRetries, requestTimeoutMs: config.timeoutMs });
    this.keys = new EsApiKeys(this.client, new Semaphore(Math.max(1, config.maxConnPerHost - opts.bulk.flushMaxPending)));
    // The monitors' long polls: no retries (a failed poll is simply polled again) and no short timeout.
    this.monitorClient = createClient(config, { maxRetries: 0, requestTimeoutMs: opts.monitor.pollTimeoutMs + 60_000 });
    this.bulker = new Bulker(this.client, opts.bulk, log);
    this.uploads = new EsUploads(this.client);
    this.deliveries = new EsDeliveries(this.client);
    this.artifacts = new EsArtifacts(this.client);
    this.policyChanges = new EsChangeFeed<PolicyDoc>(this.monitorClient, { index: INDEX.policies, fetchSize: opts.monitor.fetchSize });
    // Expired actions are never dispatched (upstream's action monitor filters them).
    this.actionChanges = new EsChangeFeed<ActionDoc>(this.monitorClient, {
      index: INDEX.actions, fetchSize: opts.monitor.fetchSize, filters: () => [{ range: { expiration: { gt: isoTime() } } }],
    });
  }

  /**
   * Connects and checks the cluster's version. With `requireVersion` (agent mode, as upstream) an older
   * cluster is refused; otherwise it is only warned about, since upstream's standalone mode skips the check.
   */
  async ready(requireVersion?: string): Promise<void> {
    let version: string;
    try {
      version = (await this.client.info()).version.number;
    } catch (err) {
      throw toStoreError(err, 'connecting to Elasticsearch');
    }
    const supported = versionSupported(version, requireVersion ?? VERSION);
    if (!supported && requireVersion) {
      throw new StoreUnavailableError(`failed version compatibility check with elasticsearch (Agent: ${requireVersion}, Elasticsearch: ${version}): unsupported version`);
    }
    if (!supported) this.log.warn({ 'elasticsearch.version': version }, `Elasticsearch ${version} is older than this Fleet Server (${VERSION}); upgrade Elasticsearch first`);
    this.log.info({ 'elasticsearch.version': version }, 'connected to Elasticsearch');
  }

  async healthCheck(): Promise<void> {
    await this.search(INDEX.policies, { size: 0, query: { match_all: {} } });
  }

  async close(): Promise<void> {
    await this.bulker.drain();
    for (const timer of this.dropped.values()) clearTimeout(timer);
    const remotes = [...this.remotes.values(), ...this.dropped.keys()];
    this.remotes.clear();
    this.dropped.clear();
    await Promise.allSettled([this.client.close(), this.monitorClient.close(), ...remotes.map((k) => k.close())]);
  }

  /** A search through the bulker; a missing index is an empty answer. */
  private async search<T>(index: string, body: Obj): Promise<Hit<T>[]> {
    return hitsOf<T>(await this.searchRaw(index, body));
  }

  private async searchRaw(index: string, body: Obj, waitForCheckpoint?: number): Promise<Obj> {
    try {
      return await this.bulker.search(index, body, { ignoreUnavailable: waitForCheckpoint === undefined, waitForCheckpoint });
    } catch (err) {
      if (err instanceof EsItemError && err.type === 'index_not_found_exception') return { hits: { hits: [] } };
      throw toStoreError(err, `search ${index}`);
    }
  }

  private async write(op: 'index' | 'create' | 'update' | 'delete', index: string, id: string | undefined, source: Obj | undefined,
    opts: { refresh?: boolean; retryOnConflict?: number } = {}): Promise<ItemResult> {
    try {
      return await this.bulker.write(op, index, id, source, opts);
    } catch (err) {
      throw toStoreError(err, `${op} ${index}`);
    }
  }

  // ---- security ----

  createApiKey(req: CreateApiKeyRequest): Promise<ApiKey> {
    return this.keys.createApiKey(req);
  }

  checkApiKey(id: string, secret: string): Promise<ApiKeyCheck> {
    return this.keys.checkApiKey(id, secret);
  }

  getApiKeyRoles(id: string): Promise<RoleMap | undefined> {
    return this.keys.getApiKeyRoles(id);
  }

  updateApiKeyRoles(ids: string[], roles: RoleMap): Promise<void> {
    return this.keys.updateApiKeyRoles(ids, roles);
  }

  invalidateApiKeys(ids: string[]): Promise<void> {
    return this.keys.invalidateApiKeys(ids);
  }

  /**
   * Keys for a `remote_elasticsearch` output live in the cluster it names, reached with its own
   * service token; one client per distinct output configuration. Every edit of a remote output is a new
   * configuration, so only the REMOTE_CLIENTS most recently used are kept, and the others closed.
   */
  apiKeysFor(remote?: RemoteOutput): ApiKeyService {
    if (!remote) return this.keys;
    const id = JSON.stringify(remote);
    let keys = this.remotes.get(id);
    if (keys) {
      this.remotes.delete(id);
    } else {
      const cfg = buildConfig({ output: { elasticsearch: remote } }).elasticsearch!;
      const client = createClient(cfg, { maxRetries: cfg.maxRetries, requestTimeoutMs: cfg.timeoutMs });
      keys = new EsApiKeys(client, new Semaphore(Math.max(1, cfg.maxConnPerHost)));
    }
    this.remotes.set(id, keys);
    for (const [oldId, old] of this.remotes) {
      if (this.remotes.size <= REMOTE_CLIENTS) break;
      this.remotes.delete(oldId);
      this.drop(old);
    }
    return keys;
  }

  private drop(keys: EsApiKeys): void {
    const timer = setTimeout(() => {
      this.dropped.delete(keys);
      keys.close().catch((err: unknown) => this.log.debug({ err }, 'remote output client not closed'));
    }, DROPPED_CLIENT_GRACE_MS);
    timer.unref();
    this.dropped.set(keys, timer);
  }

  /**
   * Not retried (nor by the client: maxRetries 0): a 504 or a dropped connection may come after the
   * secret was stored, and a retry would store a second one that nothing refers to. The caller's
   * failure (503) makes the whole request be retried.
   */
  async createSecret(value: string): Promise<string> {
    const r = await withRetries('create secret', () => this.client.fleet.postSecret({ value } as never, { maxRetries: 0 }), 0) as unknown as { id: string };
    return r.id;
  }

  async getSecret(id: string): Promise<string | undefined> {
    try {
      const r = await withRetries('read secret', () => this.client.fleet.getSecret({ id })) as unknown as { value: string };
      return r.value;
    } catch (err) {
      if (statusIn(err) === 404) return undefined;
      throw err;
    }
  }

  async deleteSecrets(ids: string[]): Promise<void> {
    await Promise.all(ids.map(async (id) => {
      try {
        await withRetries('delete secret', () => this.client.fleet.deleteSecret({ id }));
      } catch (err) {
        if (statusOf(err) !== 404) throw err;
      }
    }));
  }

  // ---- .fleet-enrollment-api-keys ----

  async findEnrollmentKey(apiKeyId: string): Promise<Hit<EnrollmentKeyDoc> | undefined> {
    const hits = await this.search<EnrollmentKeyDoc>(INDEX.enrollmentKeys, { query: filter(term('api_key_id', apiKeyId), term('active', true)) });
    if (hits.length > 1) throw new Error(`FindEnrollmentAPIKey: hit count mismatch ${hits.length}`);
    return hits[0];
  }

  listEnrollmentKeys(policyId?: string): Promise<Hit<EnrollmentKeyDoc>[]> {
    return this.search<EnrollmentKeyDoc>(INDEX.enrollmentKeys, {
      size: 10000, query: policyId === undefined ? { match_all: {} } : filter(term('policy_id', policyId)), sort: [{ created_at: { order: 'asc', unmapped_type: 'date' } }],
    });
  }

  async putEnrollmentKey(id: string, doc: EnrollmentKeyDoc): Promise<void> {
    // Kibana writes enrollment keys with refresh=wait_for: enrollment searches for them at once.
    await withRetries('write enrollment key', () => this.client.index({ index: INDEX.enrollmentKeys, id, document: doc, refresh: 'wait_for' }));
  }

  async updateEnrollmentKey(id: string, doc: Partial<EnrollmentKeyDoc>): Promise<void> {
    try {
      await withRetries('update enrollment key', () => this.client.update({ index: INDEX.enrollmentKeys, id, doc, refresh: 'wait_for', retry_on_conflict: 3 }));
    } catch (err) {
      if (statusIn(err) === 404) throw new NotFoundError(`enrollment key ${id} not found`);
      throw toStoreError(err, 'update enrollment key', { update: true });
    }
  }

  // ---- .fleet-agents ----

  async getAgent(id: string): Promise<Hit<AgentDoc> | undefined> {
    try {
      const r = await this.bulker.read(INDEX.agents, id);
      return r ? { _id: r._id, _seq_no: r._seq_no, _source: r._source as AgentDoc } : undefined;
    } catch (err) {
      throw toStoreError(err, 'read agent');
    }
  }

  async findAgentByEnrollmentId(enrollmentId: string): Promise<Hit<AgentDoc> | undefined> {
    // Upstream refreshes .fleet-agents first: a duplicate enrolling right now must be found.
    await withRetries('refresh agents', () => this.client.indices.refresh({ index: INDEX.agents, ignore_unavailable: true }));
    return (await this.search<AgentDoc>(INDEX.agents, { version: true, query: filter(term('enrollment_id', enrollmentId)) }))[0];
  }

  async findAgentByAccessKeyId(keyId: string): Promise<Hit<AgentDoc> | undefined> {
    return (await this.search<AgentDoc>(INDEX.agents, { version: true, query: filter(term('access_api_key_id', keyId)) }))[0];
  }

  async createAgent(id: string, doc: AgentDoc): Promise<boolean> {
    const r = await this.write('create', INDEX.agents, id, doc as Obj, { refresh: true });
    if (r.status === 409) return false;
    if (r.status >= 300) throw itemFailed(r, 'create agent');
    return true;
  }

  private updateBody(u: DocUpdate<AgentDoc>): Obj {
    // Most updates (a check-in batch's every item) are a partial doc: told apart at once.
    const keysUnset = u.whileOutputKeysUnset?.length ? 1 : 0;
    if (u.whilePolicyId === undefined && !keysUnset && u.whileAccessKeyId === undefined && !u.unset?.length && !u.replace?.length) return { doc: u.doc };
    if ((u.whilePolicyId !== undefined ? 1 : 0) + keysUnset + (u.whileAccessKeyId !== undefined ? 1 : 0) > 1) throw new Error('an update has one condition: whilePolicyId, whileOutputKeysUnset or whileAccessKeyId');
    // A partial doc can neither remove fields nor check the policy; the merge-and-remove script does all at once.
    const params = { doc: u.doc, remove: u.unset ?? [], replace: u.replace ?? [] };
    if (u.whileAccessKeyId !== undefined) {
      return { script: { source: MERGE_AND_REMOVE_WHILE_ACCESS_KEY, lang: 'painless', params: { ...params, access_key_id: u.whileAccessKeyId } } };
    }
    if (u.whileOutputKeysUnset?.length) {
      return { script: { source: MERGE_AND_REMOVE_WHILE_KEYS_UNSET, lang: 'painless', params: { ...params, keys_unset: u.whileOutputKeysUnset } } };
    }
    if (u.whilePolicyId === undefined) return { script: { source: MERGE_AND_REMOVE, lang: 'painless', params } };
    return { script: { source: MERGE_AND_REMOVE_WHILE_POLICY, lang: 'painless', params: { ...params, policy_id: u.whilePolicyId } } };
  }

  async updateAgent(update: DocUpdate<AgentDoc>): Promise<void> {
    const r = await this.write('update', INDEX.agents, update.id, this.updateBody(update), { refresh: true, retryOnConflict: 3 });
    if (r.status === 404) throw new NotFoundError(`agent ${update.id} not found`);
    if (r.status >= 300) throw itemFailed(r, 'update agent', { update: true });
    // The script's no-op: the only way a guarded update answers noop.
    if (update.whileOutputKeysUnset?.length && r.result === 'noop') throw new ConflictError(`agent ${update.id}: an output key was recorded meanwhile`);
    if (update.whileAccessKeyId !== undefined && r.result === 'noop') throw new ConflictError(`agent ${update.id}: its access key changed meanwhile`);
  }

  /**
   * Check-in bookkeeping. Upstream (internal/pkg/checkin/bulk.go) hands the batch to its bulker, which
   * sends it in `_bulk` requests of at most flush_threshold_cnt operations and flush_threshold_size
   * bytes; so here, one request after another. One request for the whole batch could pass
   * http.max_content_length or the request timeout at 100,000 agents, and then fail every time.
   * A request is refreshed when it writes an ack position, so the next check-in's search sees it.
   *
   * An item that failed for a passing reason (429, a 409 after retry_on_conflict, 5xx) makes the call
   * throw, so the bookkeeper keeps the batch for its next flush instead of losing the check-ins; writing
   * the items that did land once more is harmless: they are the same partial documents. An item refused
   * for what it holds (400: a mapping conflict, the field limit) would be refused at every flush and keep
   * the whole batch, and every check-in after it, from ever being written: it is logged and dropped.
   * A 404 is an agent deleted meanwhile.
   */
  async bulkUpdateAgents(updates: DocUpdate<AgentDoc>[]): Promise<void> {
    const { flushThresholdCount: maxCount, flushThresholdBytes: maxBytes } = this.bulkConfig;
    const failed: ItemResult[] = [];
    const refused: ItemResult[] = [];
    let chunk: string[][] = [];
    let bytes = 0;
    let refresh = false;
    const send = async (): Promise<void> => {
      const items = await this.directBulk('check-in bulk', chunk, refresh);
      for (const r of items) {
        if (r.status === 429 || r.status === 409 || r.status >= 500) failed.push(r);
        else if (r.status >= 300 && r.status !== 404) refused.push(r);
      }
      chunk = [];
      bytes = 0;
      refresh = false;
    };
    for (const u of updates) {
      // Serialized once, here: the size is then exact, and the client sends the lines as they are.
      const op = [JSON.stringify({ update: { _id: u.id, _index: INDEX.agents, retry_on_conflict: 3 } }), JSON.stringify(this.updateBody(u))];
      const size = Buffer.byteLength(op[0]!) + Buffer.byteLength(op[1]!) + 2;
      if (chunk.length > 0 && (chunk.length >= maxCount || bytes + size > maxBytes)) await send();
      chunk.push(op);
      bytes += size;
      refresh ||= (u.doc as Obj)['action_seq_no'] !== undefined;
    }
    if (chunk.length > 0) await send();
    if (refused.length > 0) {
      const first = refused[0]!;
      this.log.warn({ 'error.type': first.error?.type, 'error.message': first.error?.reason, 'http.response.status_code': first.status, dropped: refused.length },
        'check-in bulk: Elasticsearch refused agent updates for what they hold; dropped');
    }
    if (failed.length > 0) throw this.checkinFailed(failed, updates.length);
  }

  /** The error for check-in updates that failed: busy when Elasticsearch only pushed back (429, or 409 after retry_on_conflict). */
  private checkinFailed(failed: ItemResult[], total: number): Error {
    const first = failed.find((r) => r.status !== 429 && r.status !== 409) ?? failed[0]!;
    const what = `check-in bulk: ${failed.length} of ${total} agent updates failed`;
    const err = itemFailed(first, what, { update: true });
    if (err instanceof StoreUnavailableError || err instanceof StoreBusyError) return err;
    return new StoreUnavailableError(`${what}: ${err.message}`, { cause: err, clientMessage: UNREACHABLE });
  }

  /**
   * One `_bulk` request outside the bulker (a batch that is already whole; lines may be serialized
   * already). Items Elasticsearch rejects with 429 are sent again with backoff; the final item results
   * come back in order.
   */
  private async directBulk(what: string, ops: (Obj | string)[][], refresh: boolean | 'wait_for'): Promise<ItemResult[]> {
    const results: ItemResult[] = new Array(ops.length);
    let pending = ops.map((_, i) => i);
    const backoff = new Backoff();
    for (;;) {
      const operations = pending.flatMap((i) => ops[i]!);
      const r = await withRetries(what, () => this.client.bulk({ operations, ...(refresh ? { refresh } : {}) }));
      const rejected: number[] = [];
      r.items.forEach((it, k) => {
        const item = Object.values(it)[0] as unknown as ItemResult;
        results[pending[k]!] = item;
        if (item.status === 429) rejected.push(pending[k]!);
      });
      if (rejected.length === 0 || backoff.attempts >= 5) return results;
      await sleep(backoff.next());
      pending = rejected;
    }
  }

  async deleteAgent(id: string): Promise<void> {
    const r = await this.write('delete', INDEX.agents, id, undefined, { refresh: true });
    if (r.status >= 300 && r.status !== 404) throw itemFailed(r, 'delete agent');
  }

  listAgents(query: AgentListQuery): Promise<Hit<AgentDoc>[]> {
    const clauses: Obj[] = [];
    if (query.policyId !== undefined) clauses.push(term('policy_id', query.policyId));
    if (query.active !== undefined) clauses.push(term('active', query.active));
    return this.search<AgentDoc>(INDEX.agents, {
      size: Math.min(query.limit ?? 10000, 10000), query: clauses.length ? filter(...clauses) : { match_all: {} },
      sort: [{ enrolled_at: { order: 'asc', unmapped_type: 'date' } }],
    });
  }

  // ---- .fleet-policies ----

  async latestPolicies(): Promise<Hit<PolicyDoc>[]> {
    const r = await this.searchRaw(INDEX.policies, LATEST_POLICIES);
    const agg = (r['aggregations'] as Obj | undefined)?.['policy_id'] as { buckets: { revision_idx: Obj }[] } | undefined;
    return (agg?.buckets ?? []).flatMap((b) => hitsOf<PolicyDoc>(b.revision_idx));
  }

  async latestPolicy(policyId: string): Promise<Hit<PolicyDoc> | undefined> {
    return (await this.search<PolicyDoc>(INDEX.policies, {
      size: 1, seq_no_primary_term: true, query: filter(term('policy_id', policyId)), sort: [{ revision_idx: 'desc' }],
    }))[0];
  }

  async policyRevisions(policyId: string, limit: number): Promise<Hit<PolicyDoc>[]> {
    return this.search<PolicyDoc>(INDEX.policies, { size: limit, query: filter(term('policy_id', policyId)), sort: [{ revision_idx: 'desc' }] });
  }

  async addPolicyRevision(doc: PolicyDoc): Promise<Hit<PolicyDoc>> {
    // Kibana writes revisions with refresh=wait_for, under an id made of the policy id and the revision
    // (agent_policy.ts deployPolicies: uuidv5(`${policy_id}:${revision_idx}`, uuidv5.DNS)); the monitors
    // find them through the checkpoint. Ours is a create under that id: a writer that read the same
    // latest revision meets 409 and takes the next one, so no revision is stored twice (the policy
    // monitor would drop the second, no newer than what agents have). A 409 may also be our own write,
    // landed before a 502/504 or a reset on the way back made it go again: the stored document is then
    // the one we sent (the same content in the same millisecond is one revision either way).
    for (let rev = doc.revision_idx; rev < doc.revision_idx + 100; rev++) {
      const next: PolicyDoc = rev === doc.revision_idx ? doc : { ...doc, revision_idx: rev, data: { ...doc.data, revision: rev } };
      const id = policyRevisionId(doc.policy_id, rev);
      try {
        const r = await withRetries('write policy', () => this.client.create({ index: INDEX.policies, id, document: next, refresh: 'wait_for' }));
        return { _id: r._id, _seq_no: r._seq_no, _source: next };
      } catch (err) {
        if (statusIn(err) !== 409) throw err;
      }
      let stored;
      try {
        stored = await this.bulker.read(INDEX.policies, id);
      } catch (err) {
        throw toStoreError(err, 'write policy');
      }
      if (stored && jsonEqual(stored._source, JSON.parse(JSON.stringify(next)))) return { _id: id, _seq_no: stored._seq_no, _source: next };
    }
    throw new StoreBusyError(`write policy ${doc.policy_id}: revisions ${doc.revision_idx} to ${doc.revision_idx + 99} were all written by others meanwhile`);
  }

  /** The `_seq_no` of a document this server has just written (a realtime read: no refresh needed). */
  private async storedSeqNo(index: string, id: string, what: string): Promise<number | undefined> {
    let r;
    try {
      r = await this.bulker.read(index, id);
    } catch (err) {
      throw toStoreError(err, what);
    }
    if (!r) throw new StoreUnavailableError(`${what}: ${index}/${id} answered 409 but cannot be read`, { clientMessage: UNREACHABLE });
    return r._seq_no;
  }

  // ---- .fleet-actions ----

  async createActions(docs: ActionDoc[]): Promise<Hit<ActionDoc>[]> {
    if (docs.length === 0) return [];
    // Kibana writes actions with refresh=wait_for, under ids of its own (random UUIDs); so do we, as
    // creates, so that a `_bulk` retried after it landed (a 502/504 or a reset on the way back) meets
    // 409 instead of storing each action twice (an UPGRADE or UNENROLL delivered twice). The 409 is our
    // own write.
    const ids = docs.map(() => randomUUID());
    const items = await this.directBulk('write actions', docs.map((d, i) => [{ create: { _index: INDEX.actions, _id: ids[i]! } }, d as Obj]), 'wait_for');
    const hits: Hit<ActionDoc>[] = [];
    for (const [i, item] of items.entries()) {
      if (item.status === 409) hits.push({ _id: ids[i]!, _seq_no: await this.storedSeqNo(INDEX.actions, ids[i]!, 'write action'), _source: docs[i]! });
      else if (item.status >= 300) throw itemFailed(item, 'write action');
      else hits.push({ _id: item._id, _seq_no: item._seq_no, _source: docs[i]! });
    }
    return hits;
  }

  /**
   * Without its `agents` list unless asked (the admin CLI's `actions show`), as upstream's dl.FindAction:
   * acks and upgrade_details need the type, and a rollout's list (one id per agent) would otherwise be
   * carried on every lookup.
   */
  async findAction(actionId: string, opts: { withAgents?: boolean } = {}): Promise<Hit<ActionDoc> | undefined> {
    return (await this.search<ActionDoc>(INDEX.actions, {
      seq_no_primary_term: true, query: filter(term('action_id', actionId)), sort: ['_seq_no'], size: 1,
      ...(opts.withAgents ? {} : { _source: { excludes: ['agents'] } }),
    }))[0];
  }

  async actionSeqNo(docId: string): Promise<number | undefined> {
    const hits = await this.search<Obj>(INDEX.actions, { seq_no_primary_term: true, _source: ['_seq_no'], query: filter(term('_id', docId)) });
    return hits[0]?._seq_no;
  }

  /**
   * Pending actions, through `_fleet_msearch` waiting for the checkpoint. As upstream, the `agents`
   * list is not fetched, so a pending action keeps its own `start_time` (rollout spreading applies to
   * actions dispatched live).
   */
  async pendingActions(q: PendingActionQuery): Promise<PendingAction[]> {
    if (q.checkpoint < 0 || q.checkpoint <= q.afterSeqNo) return [];
    const r = await this.searchRaw(INDEX.actions, pendingActions(q.agentId, q.afterSeqNo, q.checkpoint, q.nowIso, q.limit), q.checkpoint);
    return hitsOf<ActionDoc>(r).map((h) => ({ ...h, agentIndex: 0, agentCount: 1 }));
  }

  listActions(limit: number): Promise<Hit<ActionDoc>[]> {
    return this.search<ActionDoc>(INDEX.actions, { size: Math.min(limit, 10000), seq_no_primary_term: true, sort: [{ '@timestamp': 'desc' }], query: { match_all: {} } });
  }

  async deleteExpiredActions(before: Date): Promise<number> {
    try {
      const r = await withRetries('delete expired actions', () => this.client.deleteByQuery({
        index: INDEX.actions, conflicts: 'proceed', refresh: true, query: filter({ range: { expiration: { lte: isoTime(before.getTime()) } } }),
      }));
      return r.deleted ?? 0;
    } catch (err) {
      // No actions index yet: nothing to delete (upstream ignores the 404 too).
      if (statusOf(err) === 404) return 0;
      throw err;
    }
  }

  async writeOutputHealth(h: { output: string; state: 'HEALTHY' | 'DEGRADED'; message: string }): Promise<void> {
    const r = await this.write('create', OUTPUT_HEALTH, undefined, {
      '@timestamp': isoTime(), output: h.output, state: h.state, message: h.message,
      data_stream: { dataset: 'fleet_server.output_health', type: 'logs', namespace: 'default' },
    }, { refresh: true });
    if (r.status >= 300) throw itemFailed(r, 'write output health');
  }

  // ---- .fleet-actions-results ----

  async createActionResults(results: { id: string; doc: ActionResultDoc }[]): Promise<void> {
    const items = await Promise.all(results.map((x) => this.write('create', INDEX.actionResults, x.id, x.doc as Obj, { refresh: true })));
    // A result already stored for this action and agent is kept (upstream ignores the 409).
    const failed = items.find((r) => r.status >= 300 && r.status !== 409);
    if (failed) throw itemFailed(failed, 'write action result');
  }

  listActionResults(actionId: string): Promise<Hit<ActionResultDoc>[]> {
    return this.search<ActionResultDoc>(INDEX.actionResults, { size: 10000, query: filter(term('action_id', actionId)), sort: [{ '@timestamp': 'asc' }] });
  }
}

const DNS_NAMESPACE = Buffer.from('6ba7b8109dad11d180b400c04fd430c8', 'hex');

/** Kibana's id for a policy revision: the version-5 UUID (RFC 4122, SHA-1) of `<policy id>:<revision>` in the DNS namespace. */
export function policyRevisionId(policyId: string, revision: number): string {
  const h = createHash('sha1').update(DNS_NAMESPACE).update(`${policyId}:${revision}`, 'utf8').digest();
  h[6] = (h[6]! & 0x0f) | 0x50;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}
