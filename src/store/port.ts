// The store port: what fleet logic needs from persistence, shaped by Fleet Server's use of the .fleet-*
// indices. Adapters: store/sqlite (embedded default) and store/elasticsearch (production).
import type {
  ActionDoc, ActionResultDoc, AgentDoc, AgentOutput, EnrollmentKeyDoc, Hit, Json, JsonObject, PolicyDoc, RoleMap,
} from './documents';
import type { ArtifactStore, DeliveryStore, UploadStore } from './file-ports';

export interface ApiKey {
  id: string;
  key: string;
}

export interface CreateApiKeyRequest {
  name: string;
  roleDescriptors: RoleMap;
  metadata: JsonObject;
}

export type ApiKeyCheck = 'valid' | 'disabled' | 'invalid';

/** An output API key to mint for an agent (createOutputKeys). */
export interface OutputKeyRequest {
  /** The output's name under the agent document's `outputs`. */
  output: string;
  request: CreateApiKeyRequest;
  /** Written to `outputs.<output>` after the new key's `api_key` (its secret's reference) and `api_key_id`. */
  entry: Partial<AgentOutput>;
}

export interface MintedOutputKey {
  output: string;
  key: ApiKey;
  /** The Fleet secret holding "id:key". */
  secretId: string;
}

/** How an agent document refers to a Fleet secret (upstream's inline reference). */
export function secretReference(secretId: string): string {
  return `$co.elastic.secret{${secretId}}`;
}

/** A value that is a whole secret reference; the secret's id is group 1. */
export const SECRET_REFERENCE = /^\$co\.elastic\.secret\{([^}]*)\}$/;

/** A partial document update with Elasticsearch's merge semantics, plus fields to remove. */
export interface DocUpdate<T> {
  id: string;
  doc: Partial<T> | Record<string, unknown>;
  unset?: string[];
  /**
   * Top-level fields of `doc` that replace the stored value whole instead of merging into it (an
   * OpAMP agent's effective_config: a merge would keep pipelines the Collector no longer runs).
   */
  replace?: string[];
  /**
   * Applied only while the stored document's `policy_id` is this one; otherwise nothing changes (not an
   * error). An agent's policy ack is written so, in one step, as upstream's ack script checks it.
   */
  whilePolicyId?: string;
  /**
   * Applied only while none of these outputs has an `api_key` recorded other than the one `doc` records
   * for it (so an update resent after a lost answer still applies); otherwise nothing changes and the
   * update rejects with ConflictError. A pass that minted keys records them so: another pass for the same
   * agent at the same time (an overlapping or retried check-in, on any worker) may have recorded its own,
   * and a key overwritten in the document would stay valid with nothing to retire it.
   */
  whileOutputKeysUnset?: string[];
  /**
   * Applied only while the stored document's `access_api_key_id` is this one (or already the one `doc`
   * records, so an update resent after a lost answer still applies); otherwise nothing changes and the
   * update rejects with ConflictError. A replacing enroll records its new key so: two replaces of one
   * agent at once (two workers, two instances) would otherwise both answer 200, and the key the document
   * no longer names would stay valid with nothing to retire it.
   */
  whileAccessKeyId?: string;
}

/** Change feed over an index in sequence-number order (ES global checkpoints, or the SQLite rowid). */
export interface ChangeFeed<T> {
  checkpoint(): Promise<number>;
  /**
   * Resolves with the documents whose sequence number is in (after, checkpoint] once the checkpoint
   * has advanced past `after`, or with no hits when `timeoutMs` passes first.
   */
  next(after: number, timeoutMs: number, signal: AbortSignal): Promise<{ checkpoint: number; hits: Hit<T>[] }>;
}

export interface PendingActionQuery {
  agentId: string;
  afterSeqNo: number;
  checkpoint: number;
  nowIso: string;
  limit: number;
}

/** A pending action with the agent's position in its `agents` list, for rollout scheduling. */
export interface PendingAction extends Hit<ActionDoc> {
  agentIndex: number;
  agentCount: number;
}

export interface AgentListQuery {
  policyId?: string;
  active?: boolean;
  limit?: number;
}

export interface StoreTraits {
  /** API-key operations cost a remote round trip (Elasticsearch), so fleet logic paces them. */
  remoteApiKeys: boolean;
  /**
   * Uploaded files expire by the store's own lifecycle (Elasticsearch's ILM on the fleet files data
   * streams); otherwise fleet logic removes abandoned uploads itself.
   */
  filesExpire: boolean;
}

/** The API-key operations of one cluster. */
export interface ApiKeyService {
  createApiKey(req: CreateApiKeyRequest): Promise<ApiKey>;
  getApiKeyRoles(id: string): Promise<RoleMap | undefined>;
  updateApiKeyRoles(ids: string[], roles: RoleMap): Promise<void>;
  invalidateApiKeys(ids: string[]): Promise<void>;
}

/** A `remote_elasticsearch` output's connection settings as the policy gives them (hosts, service_token, ssl, …). */
export type RemoteOutput = JsonObject;

export interface Store extends ApiKeyService {
  readonly kind: 'sqlite' | 'elasticsearch';
  /** Where keys for an output live: this store, or the remote cluster a `remote_elasticsearch` output names. */
  apiKeysFor(remote?: RemoteOutput): ApiKeyService;
  readonly traits: StoreTraits;
  /** Resolves once the store answers (and, with `requireVersion`, runs a version this server supports). */
  ready(requireVersion?: string): Promise<void>;
  /** A cheap read of the policies, for the self monitor: throws when the store cannot serve. */
  healthCheck(): Promise<void>;
  /**
   * Where the store itself knows writes are failing (the embedded store: disk full, I/O errors), fn
   * hears why, and undefined once a write succeeds again. Returns the unsubscribe.
   */
  watchWrites?(fn: WriteFaultListener): () => void;
  close(): Promise<void>;

  // Security: API keys (above) and Fleet secrets.
  checkApiKey(id: string, secret: string): Promise<ApiKeyCheck>;
  createSecret(value: string): Promise<string>;
  getSecret(id: string): Promise<string | undefined>;
  deleteSecrets(ids: string[]): Promise<void>;

  // .fleet-enrollment-api-keys
  findEnrollmentKey(apiKeyId: string): Promise<Hit<EnrollmentKeyDoc> | undefined>;
  listEnrollmentKeys(policyId?: string): Promise<Hit<EnrollmentKeyDoc>[]>;
  putEnrollmentKey(id: string, doc: EnrollmentKeyDoc): Promise<void>;
  updateEnrollmentKey(id: string, doc: Partial<EnrollmentKeyDoc>): Promise<void>;

  // .fleet-agents
  getAgent(id: string): Promise<Hit<AgentDoc> | undefined>;
  findAgentByEnrollmentId(enrollmentId: string): Promise<Hit<AgentDoc> | undefined>;
  findAgentByAccessKeyId(keyId: string): Promise<Hit<AgentDoc> | undefined>;
  /** Creates an agent document; false when the id exists already. */
  createAgent(id: string, doc: AgentDoc): Promise<boolean>;
  updateAgent(update: DocUpdate<AgentDoc>): Promise<void>;
  /**
   * Optional, for a store that mints its keys itself (no remoteApiKeys): mints each key, keeps its
   * "id:key" as a Fleet secret, and applies `update` to the agent's document with each key's entry
   * set at `outputs.<output>` — all in one write, or none of it (NotFoundError: no such agent). A
   * first check-in then waits for one commit instead of three. Without it, fleet logic makes the
   * same three writes one by one.
   */
  createOutputKeys?(agentId: string, keys: OutputKeyRequest[], update: DocUpdate<AgentDoc>): Promise<MintedOutputKey[]>;
  /** Many partial updates in one write (check-in bookkeeping). */
  bulkUpdateAgents(updates: DocUpdate<AgentDoc>[]): Promise<void>;
  deleteAgent(id: string): Promise<void>;
  listAgents(query: AgentListQuery): Promise<Hit<AgentDoc>[]>;

  // .fleet-policies (one document per revision)
  latestPolicies(): Promise<Hit<PolicyDoc>[]>;
  latestPolicy(policyId: string): Promise<Hit<PolicyDoc> | undefined>;
  /**
   * A policy's revisions, newest first, at most `limit` (Elasticsearch: where an output key retired
   * when its remote output moved was minted, as upstream searches the policy history). Absent where
   * keys live in the one store (the embedded store).
   */
  policyRevisions?(policyId: string, limit: number): Promise<Hit<PolicyDoc>[]>;
  /**
   * Stores a new revision at doc.revision_idx or, when another writer has taken that one meanwhile, at
   * the next free one (revision_idx and data.revision alike); returns the document as stored.
   */
  addPolicyRevision(doc: PolicyDoc): Promise<Hit<PolicyDoc>>;
  readonly policyChanges: ChangeFeed<PolicyDoc>;

  // .fleet-actions
  createActions(docs: ActionDoc[]): Promise<Hit<ActionDoc>[]>;
  /**
   * An action by its action_id. Its `agents` list (one id per agent of a rollout) may be left out, as
   * upstream's FindAction leaves it: acks and upgrade details need the type; `withAgents` asks for it.
   */
  findAction(actionId: string, opts?: { withAgents?: boolean }): Promise<Hit<ActionDoc> | undefined>;
  actionSeqNo(docId: string): Promise<number | undefined>;
  pendingActions(query: PendingActionQuery): Promise<PendingAction[]>;
  listActions(limit: number): Promise<Hit<ActionDoc>[]>;
  /** Deletes actions that expired at or before `before` (upstream's hourly clean-up); returns how many. */
  deleteExpiredActions(before: Date): Promise<number>;
  readonly actionChanges: ChangeFeed<ActionDoc>;

  /** Records a remote output's health (upstream's logs-fleet_server.output_health-default); a no-op where there is no cluster. */
  writeOutputHealth(health: { output: string; state: 'HEALTHY' | 'DEGRADED'; message: string }): Promise<void>;

  // Files: uploads (.fleet-fileds-fromhost-*), deliveries (.fleet-fileds-tohost-*, libraries), artifacts.
  readonly uploads: UploadStore;
  readonly deliveries: DeliveryStore;
  readonly artifacts: ArtifactStore;

  // .fleet-actions-results
  /** Creates result documents; an existing id is kept (409 ignored, as upstream). */
  createActionResults(results: { id: string; doc: ActionResultDoc }[]): Promise<void>;
  listActionResults(actionId: string): Promise<Hit<ActionResultDoc>[]>;
}

export type WriteFaultListener = (fault: string | undefined) => void;

export type { Json };

/** A document that must exist does not. */
export class NotFoundError extends Error {
  override readonly name = 'NotFoundError';
}

/** An update's condition did not hold: the document changed meanwhile (DocUpdate.whileOutputKeysUnset). */
export class ConflictError extends Error {
  override readonly name = 'ConflictError';
}

/**
 * A store fault agents are told about: the message is for the logs, `clientMessage` for the client (no
 * paths, no hosts), and `clientError` the error name the client gets where upstream has one of its own.
 */
abstract class StoreFault extends Error {
  readonly clientMessage: string | undefined;
  readonly clientError: string | undefined;

  constructor(message: string, options?: { cause?: unknown; clientMessage?: string; clientError?: string }) {
    super(message, options);
    this.clientMessage = options?.clientMessage;
    this.clientError = options?.clientError;
  }
}

/** The store cannot be reached, refused the server's credentials or cannot write; agents are told 503. */
export class StoreUnavailableError extends StoreFault {
  override readonly name = 'StoreUnavailableError';
}

/** The store is applying back-pressure (too much pending work); agents are told 429. */
export class StoreBusyError extends StoreFault {
  override readonly name = 'StoreBusyError';
}
