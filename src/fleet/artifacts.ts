// Artifacts (upstream's handleArtifacts.go and dl/artifact.go): an agent may fetch an artifact only when
// its policy's artifact_manifest lists it with that decoded SHA-256. Fetched artifacts are cached
// (`ttl_artifact`), checked against their encoded SHA-256, and served as stored: still compressed.
import { createHash } from 'node:crypto';
import type { AgentDoc, Hit, JsonObject } from '../store/documents';
import type { Store } from '../store/port';
import { systemClock, type Clock } from '../util/clock';
import { LruCache } from '../util/lru';
import { FleetError } from './errors';
import type { PolicyMonitor } from './policy-monitor';

const HEX_SHA256 = /^[0-9a-f]{64}$/i;
/** Upstream's throttle: at most this many store fetches at once. */
const MAX_FETCHES = 8;
/** Upstream's ristretto bound for all caches together; artifacts are the only large entries. */
const CACHE_BYTES = 50 * 1024 * 1024;

export interface ArtifactStats {
  /** Served from the cache. */
  hits: number;
  /** Read from the store. */
  fetches: number;
  /** Refused by the fetch throttle. */
  throttled: number;
  /** Listed in the policy but not in the store. */
  notFound: number;
}

export class ArtifactService {
  private readonly cache = new LruCache<string, Buffer>(4096, { maxWeight: CACHE_BYTES, weigh: (b) => b.length });
  /** In-flight fetches by key: a second request for the same artifact waits for the first. */
  private readonly fetching = new Map<string, Promise<Buffer>>();
  readonly stats: ArtifactStats = { hits: 0, fetches: 0, throttled: 0, notFound: 0 };

  constructor(private readonly store: Store, private readonly policies: PolicyMonitor, private readonly ttlMs: number,
    private readonly clock: Clock = systemClock) {}

  /** The encoded bytes of artifact `id` with decoded SHA-256 `sha2`, if the agent's policy lists it. */
  async get(agent: Hit<AgentDoc>, id: string, sha2: string): Promise<Buffer> {
    if (!HEX_SHA256.test(sha2)) throw new FleetError('MalformedSha256');
    await this.authorize(agent, id, sha2);
    const key = `${id}:${sha2}`;
    const cached = this.cache.get(key, this.clock.now());
    if (cached) {
      this.stats.hits++;
      return cached;
    }
    let pending = this.fetching.get(key);
    if (!pending) {
      if (this.fetching.size >= MAX_FETCHES) {
        this.stats.throttled++;
        throw new FleetError('ArtifactThrottled');
      }
      pending = this.fetch(id, sha2).finally(() => this.fetching.delete(key));
      this.fetching.set(key, pending);
    }
    return pending;
  }

  private async authorize(agent: Hit<AgentDoc>, id: string, sha2: string): Promise<void> {
    const policyId = agent._source.policy_id || agent._source.agent_policy_id;
    if (!policyId) throw new FleetError('NoPolicyId');
    const policy = await this.policies.latest(policyId);
    const inputs = policy?.hit._source.data.inputs;
    const listed = Array.isArray(inputs) && inputs.some((input) => {
      const manifest = (input as JsonObject | null)?.['artifact_manifest'] as JsonObject | undefined;
      const entry = (manifest?.['artifacts'] as JsonObject | undefined)?.[id] as JsonObject | undefined;
      return entry?.['decoded_sha256'] === sha2;
    });
    if (!listed) throw new FleetError('ArtifactNotAuthorized');
  }

  private async fetch(id: string, sha2: string): Promise<Buffer> {
    this.stats.fetches++;
    const doc = await this.store.artifacts.findArtifact(id, sha2);
    if (!doc) {
      this.stats.notFound++;
      throw new FleetError('NotFound');
    }
    const bytes = Buffer.from(doc.body, 'base64');
    // Upstream's defensive checks: what the store returned is what was asked for, and intact.
    if (doc.identifier !== id || doc.decoded_sha256 !== sha2
      || createHash('sha256').update(bytes).digest('hex') !== doc.encoded_sha256.toLowerCase()) {
      throw new FleetError('ArtifactCorrupted');
    }
    this.cache.set(`${id}:${sha2}`, bytes, this.ttlMs, this.clock.now());
    return bytes;
  }
}
