// API-key authentication with upstream's cache (api:<id>, TTL minus jitter) and agent identity checks.
// The cache keeps a peppered digest of the secret, never the secret itself. Digests are strings: a
// Buffer per cached key costs several times the memory, and with a random per-process pepper a timing
// difference in comparing digests reveals nothing about the secret.
import { hash, randomBytes } from 'node:crypto';
import type { AgentDoc, Hit } from '../store/documents';
import type { Store } from '../store/port';
import { LruCache } from '../util/lru';
import { FleetError } from './errors';

export interface ApiKeyCredentials {
  id: string;
  key: string;
}

export interface AuthOptions {
  ttlApiKeyMs: number;
  jitterApiKeyMs: number;
  capacity?: number;
}

export interface AuthStats {
  hits: number;
  misses: number;
}

export class Authenticator {
  private readonly cache: LruCache<string, string>;
  private readonly pepper = randomBytes(16).toString('base64');
  readonly stats: AuthStats = { hits: 0, misses: 0 };

  constructor(private readonly store: Store, private readonly opts: AuthOptions) {
    this.cache = new LruCache(opts.capacity ?? 200_000);
  }

  /** One-shot: a Hash object per check-in cost three times as much. */
  private digest(secret: string): string {
    return hash('sha256', this.pepper + secret, 'base64');
  }

  /** Any valid, enabled API key (upstream's authAPIKey). */
  async authenticate(creds: ApiKeyCredentials): Promise<void> {
    const d = this.digest(creds.key);
    const cached = this.cache.get(creds.id);
    if (cached !== undefined && cached === d) {
      this.stats.hits++;
      return;
    }
    this.stats.misses++;
    const check = await this.store.checkApiKey(creds.id, creds.key);
    if (check === 'invalid') throw new FleetError('Unauthorized');
    if (check === 'disabled') throw new FleetError('ApiKeyDisabled');
    this.cacheDigest(creds.id, d);
  }

  /** Marks a freshly minted key as valid so its first use needs no store lookup. */
  remember(id: string, key: string): void {
    this.cacheDigest(id, this.digest(key));
  }

  private cacheDigest(id: string, digest: string): void {
    const ttl = this.opts.ttlApiKeyMs - Math.random() * this.opts.jitterApiKeyMs;
    this.cache.set(id, digest, Math.max(1000, ttl));
  }

  forget(ids: Iterable<string>): void {
    for (const id of ids) this.cache.delete(id);
  }

  /**
   * An agent's access key, for the agent named in the path (check-in, acks) or, without a path id,
   * the agent that owns the key (artifacts, file delivery).
   */
  async authenticateAgent(creds: ApiKeyCredentials, agentId?: string): Promise<Hit<AgentDoc>> {
    await this.authenticate(creds);
    let agent: Hit<AgentDoc> | undefined;
    if (agentId !== undefined) {
      agent = await this.store.getAgent(agentId);
      // Upstream compares key ids before anything else, so a missing agent answers 403, not 404.
      if (!agent || agent._source.access_api_key_id !== creds.id) throw new FleetError('AgentIdentity');
    } else {
      agent = await this.store.findAgentByAccessKeyId(creds.id);
      if (!agent) throw new FleetError('AgentNotFound');
    }
    if (!agent._source.agent) throw new FleetError('AgentCorrupted');
    if (agent._source.access_api_key_id !== creds.id) throw new FleetError('AgentCorrupted');
    if (agentId !== undefined && agent._id !== agentId) throw new FleetError('AgentIdentity');
    if (!agent._source.active) {
      this.cache.delete(creds.id);
      throw new FleetError('AgentInactive');
    }
    return agent;
  }
}
