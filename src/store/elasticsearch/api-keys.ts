// API keys in one cluster through `_security`: create, authenticate (an agent's key, by `ApiKey`
// header), read roles, bulk-update roles, invalidate. Calls are bounded by a semaphore so they never
// take every connection from the bulker; a call waiting to be retried gives its slot back meanwhile.
import type { Client } from '@elastic/elasticsearch';
import type { RoleMap } from '../documents';
import type { ApiKey, ApiKeyCheck, ApiKeyService, CreateApiKeyRequest } from '../port';
import type { Semaphore } from '../../util/semaphore';
import { statusIn, statusOf, toStoreError, withRetries } from './connection';

export class EsApiKeys implements ApiKeyService {
  constructor(private readonly client: Client, private readonly security: Semaphore) {}

  /**
   * Not retried, by this server nor by the client (maxRetries 0): a 504 or a dropped connection may
   * come after the key was minted, and a retry would mint a second one while the first is never stored
   * or invalidated. The failure is told to the agent (503/429), which retries the whole request.
   */
  async createApiKey(req: CreateApiKeyRequest): Promise<ApiKey> {
    const r = await withRetries('create API key', () => this.security.run(() => this.client.security.createApiKey({
      name: req.name, role_descriptors: req.roleDescriptors as never, metadata: req.metadata, refresh: false,
    }, { maxRetries: 0 })), 0);
    return { id: r.id, key: r.api_key };
  }

  /**
   * Asked once (beyond the client's own immediate retries): a request's key, any client's, must not hold
   * a slot of the semaphore through 20 s of backoff, nor wait for one that long. A refusal goes back to
   * the agent, which retries: 429 in upstream's words (ElasticsearchAPIKeyAuthLimit), else 503.
   */
  async checkApiKey(id: string, secret: string): Promise<ApiKeyCheck> {
    let r: Awaited<ReturnType<Client['security']['authenticate']>>;
    try {
      r = await this.security.run(() => this.client.security.authenticate(undefined, {
        headers: { authorization: `ApiKey ${Buffer.from(`${id}:${secret}`).toString('base64')}` },
      }));
    } catch (err) {
      if (statusOf(err) === 401) return 'invalid';
      throw toStoreError(err, 'authenticate API key', { apiKeyAuth: true });
    }
    if (r.api_key?.id !== undefined && r.api_key.id !== id) return 'invalid';
    return r.enabled ? 'valid' : 'disabled';
  }

  async getApiKeyRoles(id: string): Promise<RoleMap | undefined> {
    try {
      const r = await withRetries('read API key', () => this.security.run(() => this.client.security.getApiKey({ id, owner: true })));
      const key = r.api_keys[0];
      return key && !key.invalidated ? (key.role_descriptors as RoleMap | undefined) ?? {} : undefined;
    } catch (err) {
      if (statusIn(err) === 404) return undefined;
      throw err;
    }
  }

  async updateApiKeyRoles(ids: string[], roles: RoleMap): Promise<void> {
    if (ids.length === 0) return;
    await withRetries('update API keys', () => this.security.run(() => this.client.security.bulkUpdateApiKeys({ ids, role_descriptors: roles as never })));
  }

  async invalidateApiKeys(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await withRetries('invalidate API keys', () => this.security.run(() => this.client.security.invalidateApiKey({ ids, owner: true })));
  }

  close(): Promise<void> {
    return this.client.close();
  }
}
