// Per-agent API keys for the policy's Elasticsearch outputs: minted on first use, roles updated when
// the output permissions change, old keys retired. This is the work `policy_limit` paces when keys live
// in a remote Elasticsearch; agents whose keys are current pass straight through.
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { AgentDoc, AgentOutput, RetiredApiKey, RoleMap } from '../store/documents';
import { ConflictError, NotFoundError, SECRET_REFERENCE, secretReference, StoreBusyError, type ApiKeyService, type CreateApiKeyRequest, type OutputKeyRequest, type RemoteOutput, type Store } from '../store/port';
import { LruCache } from '../util/lru';
import type { TokenBucket } from '../util/token-bucket';
import { rfc3339 } from '../util/time';
import { FleetError } from './errors';
import { ParsedPolicy, type EsOutput } from './parsed-policy';
import { readSecrets } from './secrets';

const RDSTALE = /-\d+-rdstale$/;
/** Plain output keys kept in memory: one per agent of the largest limit profile, twice over (~200 B each). */
const PLAIN_KEYS_CAPACITY = 200_000;
/** Remote outputs' connections by connection hash, to find the cluster of a key minted before its output moved. */
const CONNECTIONS_CAPACITY = 256;

/**
 * An output's entry as this server records it, and a retired key: with a remote output's key, the
 * connection hash of the cluster that holds it (parsed-policy.ts connectionHash); '' once an output that
 * was remote has a key of the Fleet cluster; none for other keys of the Fleet cluster.
 */
type OutputEntry = AgentOutput & { connection_hash?: string };
type RetiredKey = RetiredApiKey & { connection_hash?: string };

/**
 * Elasticsearch's bounds on an API key's name (CreateApiKeyRequest.validate; also enroll.ts): at most
 * 256 characters (UTF-16 units), no leading `_`, nothing Java's trim() cuts at either end.
 */
const KEY_NAME_MAX = 256;
const TRIMMED_BY_JAVA = /^[\u0000-\u0020]|[\u0000-\u0020]$/;

/**
 * An output key's name: upstream's "<agent id>:<output name>" (generateOutputAPIKey) where Elasticsearch
 * takes it. Otherwise (a long agent id, or an output name ending in a space) it is cut to fit and ends in
 * a hash of the whole: Elasticsearch would refuse the key, and the agent would get a 500 at every
 * check-in. The key's metadata names the agent and the output in full.
 */
export function outputKeyName(agentId: string, output: string): string {
  const name = `${agentId}:${output}`;
  if (name.length <= KEY_NAME_MAX && !name.startsWith('_') && !TRIMMED_BY_JAVA.test(name)) return name;
  const tag = createHash('sha256').update(name).digest('hex').slice(0, 16);
  let head = name.replace(/^[_\u0000-\u0020]+/, '').slice(0, KEY_NAME_MAX - tag.length - 1);
  // Not half a surrogate pair.
  if (/[\uD800-\uDBFF]$/.test(head)) head = head.slice(0, -1);
  return `${head}~${tag}`;
}

/**
 * Plain output keys shared with the server's other processes (a cluster's workers, through their primary:
 * runtime/shared-secrets.ts), by the Fleet secret that holds each.
 */
export interface KeyShare {
  /** The key, if another process has made it known; undefined otherwise. */
  recall(secretId: string): Promise<string | undefined>;
  keep(secretId: string, plain: string): void;
  forget(secretIds: string[]): void;
}

export class OutputKeys {
  /** A retired key whose cluster this process does not know was logged at warn level (later ones at debug). */
  private unknownClusterTold = false;
  private readonly lastHealth = new Map<string, string>();
  /**
   * Plain keys by the Fleet secret that holds them. A secret never changes (a new key gets a new
   * secret), so a key minted or read once is not read again: a rollout reads no secret for agents this
   * process has served since it started, where it once read one per agent per rollout. The agent
   * document keeps only the reference, so the key stays unreadable at rest.
   */
  private readonly plainKeys = new LruCache<string, string>(PLAIN_KEYS_CAPACITY);
  /**
   * Remote connections seen in policies, by connection hash: a key retired when its output moved to
   * another cluster is invalidated where it was minted, which the current policy no longer names.
   * Upstream sends it to the output's current cluster, where it is unknown, and it stays valid.
   */
  private readonly connections = new LruCache<string, RemoteOutput>(CONNECTIONS_CAPACITY);
  /** Connections looked for in the policy history already (found or not): each is searched for once. */
  private readonly searched = new LruCache<string, true>(CONNECTIONS_CAPACITY);
  constructor(
    private readonly store: Store,
    private readonly pacer: TokenBucket | undefined,
    private readonly log: Logger,
    /** The agent's current policy revision, for where its remote outputs' keys live. */
    private readonly latestPolicy: (policyId: string) => Promise<ParsedPolicy | undefined> = async () => undefined,
    private readonly share?: KeyShare,
  ) {}

  /**
   * Output name → remote connection for the agent's policy (empty for the embedded store or none). The
   * connections the agent's keys were minted in and this process has not seen (a remote output that moved
   * before it started, or was served by another worker) are looked for in the policy's history.
   */
  async remotesOf(agent: AgentDoc): Promise<RemoteOutputs> {
    const policy = agent.policy_id ? await this.latestPolicy(agent.policy_id) : undefined;
    const remotes: RemoteOutputs = new Map();
    for (const o of policy?.allEsOutputs ?? []) {
      if (!o.remote) continue;
      this.connections.set(o.connectionHash!, o.remote);
      remotes.set(o.name, { remote: o.remote, hash: o.connectionHash! });
    }
    if (agent.policy_id) await this.learnConnections(agent.policy_id, unseenConnections(agent, this.connections));
    return remotes;
  }

  /**
   * Upstream's own answer to "where was this key minted" is a search of the policy's last 100 revisions
   * (its remote-output clean-up); here it runs only for connections this process does not know, each
   * once, and stops at the newest revision that names them all. Best effort: a revision that cannot be
   * read or parsed is passed over.
   */
  private async learnConnections(policyId: string, hashes: Set<string>): Promise<void> {
    const wanted = [...hashes].filter((h) => !this.searched.get(h));
    if (wanted.length === 0 || !this.store.policyRevisions) return;
    for (const h of wanted) this.searched.set(h, true);
    let revisions;
    try {
      revisions = await this.store.policyRevisions(policyId, POLICY_HISTORY);
    } catch (err) {
      for (const h of wanted) this.searched.delete(h);
      this.log.warn({ err, 'fleet.policy.id': policyId }, 'policy history not read: where retired output API keys were minted stays unknown');
      return;
    }
    for (const hit of revisions) {
      const outputs = Object.values(hit._source.data?.outputs ?? {}) as { type?: string }[];
      if (!outputs.some((o) => o.type === 'remote_elasticsearch')) continue;
      try {
        const parsed = new ParsedPolicy(hit, await readSecrets(this.store, hit._source.data.secret_references ?? [], this.log));
        for (const o of parsed.allEsOutputs) if (o.remote) this.connections.set(o.connectionHash!, o.remote);
      } catch (err) {
        this.log.debug({ err, 'fleet.policy.id': policyId, 'fleet.policy.revision': hit._source.revision_idx }, 'policy revision not parsed for its remote outputs');
      }
      if (wanted.every((h) => this.connections.get(h) !== undefined)) return;
    }
  }

  /**
   * Where a key of `output` lives: the output's current cluster, unless the key was minted with another
   * connection (`hash`: a remote cluster's, '' the Fleet cluster's). Undefined when that connection is
   * no longer known here (the policy changed before this process started).
   */
  private clusterOf(remotes: RemoteOutputs, output: string, hash: string | undefined): ApiKeyService | undefined {
    const now = remotes.get(output);
    if (hash === undefined || hash === now?.hash) return this.store.apiKeysFor(now?.remote);
    if (hash === '') return this.store;
    const then = this.connections.get(hash);
    return then === undefined ? undefined : this.store.apiKeysFor(then);
  }

  /**
   * The "id:key" per output for this agent, creating or updating keys as needed and recording the
   * change in the agent document. `outputs` is the agent document's `outputs` as last read.
   */
  async keysFor(agentId: string, outputs: Record<string, AgentOutput> | undefined, policy: ParsedPolicy,
    signal?: AbortSignal): Promise<Record<string, string>> {
    try {
      return await this.pass(agentId, outputs, policy, signal);
    } catch (err) {
      if (!(err instanceof ConflictError)) throw err;
    }
    // Another pass for this agent (an overlapping or retried check-in, maybe on another worker) recorded
    // its keys first; this pass's were undone. The agent gets the recorded keys, read afresh.
    const fresh = await this.store.getAgent(agentId);
    if (!fresh) throw new NotFoundError(`agent ${agentId} not found`);
    try {
      return await this.pass(agentId, fresh._source.outputs, policy, signal);
    } catch (err) {
      if (!(err instanceof ConflictError)) throw err;
      throw new StoreBusyError(`agent ${agentId}: its output keys changed twice during one check-in`, { cause: err });
    }
  }

  /** One pass of keysFor over `outputs`; ConflictError when another recorded keys for an output this pass minted. */
  private async pass(agentId: string, outputs: Record<string, AgentOutput> | undefined, policy: ParsedPolicy,
    signal?: AbortSignal): Promise<Record<string, string>> {
    const current: Record<string, OutputEntry> = { ...(outputs ?? {}) };
    const update: Record<string, Partial<OutputEntry>> = {};
    const unset: string[] = [];
    const keys: Record<string, string> = {};
    // The embedded store sends a key the policy gives as it is, and mints remote outputs' keys itself (so
    // where a remote output points does not matter to it).
    const embedded = this.store.kind !== 'elasticsearch';
    const esOutputs = embedded ? policy.esOutputs : policy.allEsOutputs;
    // A store that mints its own keys records them with the agent's update in one write (a first
    // check-in: one commit instead of three); keys minted elsewhere are made one by one, as they may fail apart.
    const oneWrite = this.store.createOutputKeys !== undefined && !this.store.traits.remoteApiKeys;
    const toMint: { out: EsOutput; request: CreateApiKeyRequest }[] = [];
    // Keys minted one by one are recorded by the single write at the end: until then a failure (a later
    // output, a secret, the pacer's wait cancelled) would leave them valid and in no document, and each
    // retry would mint more. Those are invalidated as the pass gives up.
    const unrecorded: MintedKey[] = [];
    /** Outputs this pass mints a key for: recorded only while no other pass has recorded one. */
    const minting: string[] = [];
    /**
     * Outputs whose recorded key this pass annotates (its connection, first seen): written only while the
     * document still records that key, or a pass at an older revision could stamp the old cluster's
     * connection on a key a newer pass has just minted elsewhere, which would then look moved.
     */
    const annotating: string[] = [];

    try {
      for (const out of esOutputs) {
        let cur = current[out.name];
        const cluster = this.store.apiKeysFor(out.remote);
        if (out.remote) this.connections.set(out.connectionHash!, out.remote);
        let plain: string | undefined;
        if (cur?.api_key) {
          // A key recorded with another connection is in a cluster the output no longer points at (upstream
          // re-keys on hasConfigChanged). Entries without one (older, or a Go fleet-server's) are taken to
          // be where the output points now, and the connection is recorded for next time.
          const moved = !embedded && cur.connection_hash !== undefined && cur.connection_hash !== (out.connectionHash ?? '');
          plain = moved ? undefined : await this.plainKey(cur.api_key);
          if (plain === undefined) {
            const fields = { 'fleet.agent.id': agentId, 'fleet.policy.output.name': out.name, 'fleet.policy.apiKeyIDs': [cur.api_key_id] };
            if (moved) this.log.info(fields, 'output points at another cluster: minting a new API key there');
            // Upstream answers 500 for a secret gone missing, at every check-in; a new key mends it.
            else this.log.warn(fields, 'output API key secret not found: minting a new API key');
            cur = await this.takeOut(agentId, out.name, cur);
            current[out.name] = cur;
          } else if (!embedded && out.connectionHash !== undefined && cur.connection_hash === undefined) {
            update[out.name] = { api_key_id: cur.api_key_id, connection_hash: out.connectionHash, type: 'elasticsearch' };
            annotating.push(out.name);
          }
        }
        if (plain === undefined) {
          const request: CreateApiKeyRequest = {
            name: outputKeyName(agentId, out.name),
            roleDescriptors: out.roles,
            metadata: { agent_id: agentId, managed: true, managed_by: 'fleet-server', output_name: out.name, type: 'output' },
          };
          // Recorded as "elasticsearch" for remote outputs too, as upstream's agentDocOutputType: its ack
          // clean-up looks at no other type. Keys are found by output name (remotesOf), not by type.
          const entry: Partial<OutputEntry> = { permissions_hash: out.permissionsHash, to_retire_api_key_ids: cur ? withRetired(cur, out.name) : [], type: 'elasticsearch' };
          // '' replaces a remote connection's hash once the output is no longer remote: the Fleet cluster's key.
          if (!embedded && (out.connectionHash !== undefined || cur?.connection_hash !== undefined)) entry.connection_hash = out.connectionHash ?? '';
          minting.push(out.name);
          if (oneWrite) {
            toMint.push({ out, request });
            update[out.name] = entry;
            current[out.name] = { ...(cur ?? { type: entry.type }), ...entry } as OutputEntry;
            continue;
          }
          await this.pace(signal);
          let key: { id: string; key: string };
          try {
            key = await cluster.createApiKey(request);
            if (out.remote) await this.remoteHealth(out.name, 'HEALTHY', '');
          } catch (err) {
            if (!out.remote) throw err;
            // As upstream: a remote cluster that refuses is reported DEGRADED, and the policy still goes out without a key.
            const message = err instanceof Error ? err.message : String(err);
            this.log.warn({ err, output: out.name }, 'remote output API key creation failed');
            await this.remoteHealth(out.name, 'DEGRADED', message);
            keys[out.name] = '';
            continue;
          }
          const plainKey = `${key.id}:${key.key}`;
          const made: MintedKey = { cluster, id: key.id, secretId: undefined };
          unrecorded.push(made);
          const secretId = await this.store.createSecret(plainKey);
          made.secretId = secretId;
          this.remember(secretId, plainKey);
          const minted = { api_key: secretReference(secretId), api_key_id: key.id, ...entry };
          update[out.name] = minted;
          keys[out.name] = plainKey;
          current[out.name] = { ...(cur ?? { type: entry.type }), ...minted } as OutputEntry;
          continue;
        }
        if (cur!.permissions_hash !== out.permissionsHash) {
          await this.pace(signal);
          const oldRoles = (await cluster.getApiKeyRoles(cur!.api_key_id)) ?? {};
          await cluster.updateApiKeyRoles([cur!.api_key_id], mergeStaleRoles(oldRoles, out.roles));
          update[out.name] = { ...update[out.name], permissions_hash: out.permissionsHash, ...(cur!.type === 'remote_elasticsearch' ? { type: 'elasticsearch' } : {}) };
        }
        keys[out.name] = plain;
      }

      // An output the policy no longer has: retire its key under the first current output (one per pass).
      const first = esOutputs[0]?.name;
      if (first) {
        const gone = Object.keys(current).find((name) => !esOutputs.some((o) => o.name === name)
          && !(name in (policy.hit._source.data.outputs ?? {})));
        if (gone) {
          const old = current[gone]!;
          const retired: RetiredKey[] = [
            ...((update[first]?.to_retire_api_key_ids ?? current[first]?.to_retire_api_key_ids) ?? []),
            { id: old.api_key_id, retired_at: rfc3339(), output: gone, ...(old.connection_hash !== undefined ? { connection_hash: old.connection_hash } : {}) },
          ];
          update[first] = { ...update[first], to_retire_api_key_ids: retired };
          unset.push(`outputs.${gone}`);
        }
      }
    } catch (err) {
      await this.discard(agentId, unrecorded);
      throw err;
    }

    if (toMint.length > 0) {
      const requests: OutputKeyRequest[] = toMint.map(({ out, request }) => ({ output: out.name, request, entry: update[out.name]! }));
      for (const r of requests) delete update[r.output];
      // A conflict undoes the whole write, the keys' rows with it.
      const minted = await this.store.createOutputKeys!(agentId, requests,
        { id: agentId, doc: { outputs: update } as Partial<AgentDoc>, unset, whileOutputKeysUnset: [...minting, ...annotating] });
      for (const m of minted) {
        const plain = `${m.key.id}:${m.key.key}`;
        this.remember(m.secretId, plain);
        keys[m.output] = plain;
      }
      for (const { out } of toMint) if (out.remote) await this.remoteHealth(out.name, 'HEALTHY', '');
    } else if (Object.keys(update).length > 0 || unset.length > 0) {
      // A failed write keeps its keys: whether it was applied is not known (a timeout may have been), and
      // invalidating keys the document records would leave the agent with dead ones until its permissions change.
      const guarded = [...minting, ...annotating];
      const record = { id: agentId, doc: { outputs: update } as Partial<AgentDoc>, unset, ...(guarded.length ? { whileOutputKeysUnset: guarded } : {}) };
      try {
        await this.store.updateAgent(record);
      } catch (err) {
        // Known not applied: the keys this pass minted are in no document.
        if (err instanceof ConflictError) await this.discard(agentId, unrecorded);
        throw err;
      }
    }
    return keys;
  }

  /**
   * Takes a recorded key out of the agent's document before another is minted for its output: retired
   * (invalidated after the next policy ack, in the cluster it was minted in) and its api_key cleared, only
   * while the document still records that key. A pass that finds another key recorded meanwhile starts
   * over (ConflictError) and is answered with it, so two passes never both replace one key.
   */
  private async takeOut(agentId: string, output: string, cur: OutputEntry): Promise<OutputEntry> {
    const entry = { api_key: '', api_key_id: cur.api_key_id, to_retire_api_key_ids: withRetired(cur, output) };
    await this.store.updateAgent({ id: agentId, doc: { outputs: { [output]: entry } } as Partial<AgentDoc>, whileOutputKeysUnset: [output] });
    return { ...cur, ...entry };
  }

  /** Keys minted by a pass that failed before recording them: invalidated and their secrets deleted, best effort. */
  private async discard(agentId: string, minted: MintedKey[]): Promise<void> {
    if (minted.length === 0) return;
    const byCluster = new Map<ApiKeyService, Set<string>>();
    for (const m of minted) addKey(byCluster, m.cluster, m.id);
    for (const [cluster, ids] of byCluster) {
      await cluster.invalidateApiKeys([...ids]).catch((err: unknown) =>
        this.log.warn({ err, 'fleet.agent.id': agentId, 'fleet.policy.apiKeyIDs': [...ids] }, 'unrecorded output API keys not invalidated'));
    }
    const secrets = minted.flatMap((m) => (m.secretId === undefined ? [] : [m.secretId]));
    await this.deleteSecrets(secrets).catch((err: unknown) =>
      this.log.warn({ err, 'fleet.agent.id': agentId }, 'secrets of unrecorded output API keys not deleted'));
  }

  /** Records a remote output's health when it changes (one document per change, not per agent). */
  private async remoteHealth(output: string, state: 'HEALTHY' | 'DEGRADED', message: string): Promise<void> {
    const key = `${state}:${message}`;
    if (this.lastHealth.get(output) === key) return;
    this.lastHealth.set(output, key);
    await this.store.writeOutputHealth({ output, state, message }).catch((err) => this.log.warn({ err, output }, 'output health not recorded'));
  }

  /** Whether key work may wait for policy_limit's pacer (so is worth a signal that ends the wait). */
  get paced(): boolean {
    return this.pacer !== undefined && !this.pacer.unlimited;
  }

  private async pace(signal?: AbortSignal): Promise<void> {
    if (this.pacer) await this.pacer.take(signal);
  }

  /** The plain "id:key" an entry's api_key stands for; undefined when its secret is gone (or empty). */
  private async plainKey(apiKey: string): Promise<string | undefined> {
    const m = SECRET_REFERENCE.exec(apiKey);
    if (!m) return apiKey;
    const id = m[1]!;
    const known = this.plainKeys.get(id);
    if (known !== undefined) return known;
    const shared = await this.share?.recall(id);
    if (shared !== undefined) {
      this.plainKeys.set(id, shared);
      return shared;
    }
    const v = await this.store.getSecret(id);
    if (v === undefined || v === '') return undefined;
    this.remember(id, v);
    return v;
  }

  private remember(secretId: string, plain: string): void {
    this.plainKeys.set(secretId, plain);
    this.share?.keep(secretId, plain);
  }

  /** Output keys' secrets deleted, and forgotten here and by the processes sharing them. */
  async deleteSecrets(secretIds: string[]): Promise<void> {
    // Most acks retire nothing; in a worker an empty call would still be a round trip to the store owner.
    if (secretIds.length === 0) return;
    for (const id of secretIds) this.plainKeys.delete(id);
    await this.store.deleteSecrets(secretIds);
    // After the delete: a process that asked meanwhile may have read the secret and shared it again.
    this.share?.forget(secretIds);
  }

  /**
   * After an agent acknowledges a policy: drop stale roles from its output keys and invalidate the
   * keys it retired (upstream's ack clean-up), each in the cluster that holds it. Best effort, as
   * upstream's updateAPIKey and invalidateAPIKeys (handleAck.go): a failure is logged and the ack goes
   * on, since the next policy ack cleans up again. Throws only when an output key cannot be read and
   * the agent turns out to be inactive (upstream's ErrUpdatingInactiveAgent): its keys were invalidated
   * by an unenroll, and its ack must not be recorded.
   */
  async cleanUpAfterAck(agentId: string, agent: AgentDoc): Promise<void> {
    let remotes: RemoteOutputs;
    try {
      remotes = await this.remotesOf(agent);
    } catch (err) {
      // Without the policy a remote output's keys would be looked for in the wrong cluster.
      this.log.warn({ err, 'fleet.agent.id': agentId }, 'API key clean-up skipped: the agent\'s policy could not be read');
      return;
    }
    const invalidate = new Map<ApiKeyService, Set<string>>();
    const secrets = new Set<string>();
    const unknown: string[] = [];
    for (const [name, out] of Object.entries(agent.outputs ?? {}) as [string, OutputEntry][]) {
      // remote_elasticsearch: entries this server wrote before it recorded remote outputs as upstream does.
      if ((out.type !== 'elasticsearch' && out.type !== 'remote_elasticsearch') || !out.api_key_id) continue;
      const cluster = this.clusterOf(remotes, name, out.connection_hash);
      if (cluster) await this.dropStaleRoles(agentId, name, cluster, out.api_key_id);
      for (const r of (out.to_retire_api_key_ids ?? []) as RetiredKey[]) {
        if (r.id === out.api_key_id) continue;
        const where = this.clusterOf(remotes, r.output ?? name, r.connection_hash);
        // Left for a later ack (the records stay): this process knows no longer where the key was minted.
        if (!where) {
          unknown.push(r.id);
          continue;
        }
        addKey(invalidate, where, r.id);
        if (r.secret_id) secrets.add(r.secret_id);
      }
    }
    if (unknown.length > 0) {
      // Each such agent's every ack comes here (the records stay): said at warn level once per process.
      const level = this.unknownClusterTold ? 'debug' : 'warn';
      this.unknownClusterTold = true;
      this.log[level]({ 'fleet.agent.id': agentId, 'fleet.policy.apiKeyIDs': unknown }, 'retired output API keys not invalidated: the cluster they were minted in is not known to this process');
    }
    for (const [cluster, ids] of invalidate) {
      await cluster.invalidateApiKeys([...ids]).catch((err: unknown) =>
        this.log.warn({ err, 'fleet.agent.id': agentId, 'fleet.policy.apiKeyIDs': [...ids] }, 'retired output API keys not invalidated'));
    }
    await this.deleteSecrets([...secrets]).catch((err: unknown) =>
      this.log.warn({ err, 'fleet.agent.id': agentId }, 'secrets of retired output API keys not deleted'));
  }

  /** The key's `-rdstale` roles removed; a key that cannot be read stops the clean-up only for an inactive agent. */
  private async dropStaleRoles(agentId: string, output: string, cluster: ApiKeyService, keyId: string): Promise<void> {
    let roles: RoleMap | undefined;
    try {
      roles = await cluster.getApiKeyRoles(keyId);
    } catch (err) {
      if (!(await this.isActive(agentId))) throw new FleetError('AgentInactive', 'updating inactive agent', { cause: err });
      this.log.warn({ err, 'fleet.agent.id': agentId, 'fleet.policy.output.name': output, 'fleet.policy.apiKeyIDs': [keyId] }, 'output API key roles not read');
      return;
    }
    if (!roles) return;
    const kept = Object.fromEntries(Object.entries(roles).filter(([role]) => !role.endsWith('-rdstale')));
    if (Object.keys(kept).length === Object.keys(roles).length) return;
    await cluster.updateApiKeyRoles([keyId], kept).catch((err: unknown) =>
      this.log.warn({ err, 'fleet.agent.id': agentId, 'fleet.policy.output.name': output, 'fleet.policy.apiKeyIDs': [keyId] }, 'output API key roles not updated'));
  }

  /** Read afresh, as upstream's isAgentActive; a failed read counts as active (so the ack goes on). */
  private async isActive(agentId: string): Promise<boolean> {
    try {
      return (await this.store.getAgent(agentId))?._source.active !== false;
    } catch (err) {
      this.log.warn({ err, 'fleet.agent.id': agentId }, 'agent not read to check it is active');
      return true;
    }
  }

  /**
   * Every key of an agent, by the cluster that holds it: the access key here, output keys where their
   * output lives (retired keys under the output they were retired from).
   */
  async keysByCluster(agent: AgentDoc): Promise<Map<ApiKeyService, Set<string>>> {
    const remotes = await this.remotesOf(agent);
    const out = new Map<ApiKeyService, Set<string>>();
    const unknown: string[] = [];
    const add = (cluster: ApiKeyService | undefined, id: string): void => {
      if (cluster) addKey(out, cluster, id);
      else unknown.push(id);
    };
    if (agent.access_api_key_id) addKey(out, this.store, agent.access_api_key_id);
    for (const [name, o] of Object.entries(agent.outputs ?? {}) as [string, OutputEntry][]) {
      if (o.api_key_id) add(this.clusterOf(remotes, name, o.connection_hash), o.api_key_id);
      for (const r of (o.to_retire_api_key_ids ?? []) as RetiredKey[]) add(this.clusterOf(remotes, r.output ?? name, r.connection_hash), r.id);
    }
    if (unknown.length > 0) {
      this.log.warn({ 'fleet.policy.apiKeyIDs': unknown, 'fleet.agent.id': agent.agent?.id }, 'output API keys not invalidated: the cluster they were minted in is not known to this process');
    }
    return out;
  }
}

/** A key minted by the current pass, not yet recorded in the agent's document. */
interface MintedKey {
  cluster: ApiKeyService;
  id: string;
  secretId: string | undefined;
}

function addKey(byCluster: Map<ApiKeyService, Set<string>>, cluster: ApiKeyService, id: string): void {
  let ids = byCluster.get(cluster);
  if (!ids) byCluster.set(cluster, (ids = new Set()));
  ids.add(id);
}

/** Output name → remote connection and its connection hash, from the agent's current policy. */
export type RemoteOutputs = Map<string, { remote: RemoteOutput; hash: string }>;

/** The entry's retired keys with its current one added (once: upstream's painless appends a record only once). */
function withRetired(cur: OutputEntry, output: string): RetiredKey[] {
  const retired: RetiredKey[] = [...(cur.to_retire_api_key_ids ?? [])];
  if (!cur.api_key_id || retired.some((r) => r.id === cur.api_key_id)) return retired;
  const secretId = SECRET_REFERENCE.exec(cur.api_key ?? '')?.[1];
  retired.push({
    id: cur.api_key_id, retired_at: rfc3339(), output,
    ...(secretId ? { secret_id: secretId } : {}),
    ...(cur.connection_hash !== undefined ? { connection_hash: cur.connection_hash } : {}),
  });
  return retired;
}

/** New roles, plus every old role kept under "<base>-<n>-rdstale" until the agent acknowledges. */
export function mergeStaleRoles(oldRoles: RoleMap, newRoles: RoleMap): RoleMap {
  const out: RoleMap = { ...newRoles };
  for (const [name, desc] of Object.entries(oldRoles)) {
    const base = name.replace(RDSTALE, '');
    for (let n = 0; n < 100; n++) {
      const candidate = `${base}-${n}-rdstale`;
      if (!(candidate in out)) {
        out[candidate] = desc;
        break;
      }
    }
  }
  return out;
}

/** The output secret ids an agent document references (for deletion at unenroll). */
export function outputSecretIds(agent: AgentDoc): string[] {
  const ids: string[] = [];
  for (const out of Object.values(agent.outputs ?? {})) {
    const m = SECRET_REFERENCE.exec(out.api_key ?? '');
    if (m) ids.push(m[1]!);
    for (const r of out.to_retire_api_key_ids ?? []) if (r.secret_id) ids.push(r.secret_id);
  }
  return ids;
}

/** How many revisions back the history is searched, as upstream's remote-output clean-up searches. */
const POLICY_HISTORY = 100;

/** The remote connections the agent's keys (recorded and retired) were minted in that `known` lacks. */
function unseenConnections(agent: AgentDoc, known: LruCache<string, RemoteOutput>): Set<string> {
  const out = new Set<string>();
  const note = (hash: string | undefined): void => {
    if (hash && known.get(hash) === undefined) out.add(hash);
  };
  for (const o of Object.values(agent.outputs ?? {}) as OutputEntry[]) {
    note(o.connection_hash);
    for (const r of (o.to_retire_api_key_ids ?? []) as RetiredKey[]) note(r.connection_hash);
  }
  return out;
}
