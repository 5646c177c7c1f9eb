// Two passes of output-key minting for one agent at once (an overlapping or retried first check-in, on
// one worker or two): each read the agent before either recorded a key. Both must answer with the key
// the document records, and no other key may stay valid with nothing to retire it. On every store.
import { randomUUID } from 'node:crypto';
import pino from 'pino';
import { OutputKeys } from '../src/fleet/output-keys';
import { ParsedPolicy } from '../src/fleet/parsed-policy';
import type { PolicyDoc } from '../src/store/documents';
import type { ApiKey, ApiKeyService, Store } from '../src/store/port';
import { STORE_KINDS, storeFixture } from './support/stores';

const policy = new ParsedPolicy({ _id: 'p1:1', _seq_no: 1, _source: {
  '@timestamp': new Date().toISOString(), policy_id: 'p1', revision_idx: 1, coordinator_idx: 1, default_fleet_server: false,
  data: { id: 'p1', revision: 1, outputs: { default: { type: 'elasticsearch', hosts: ['http://localhost:9200'] } },
    output_permissions: { default: { _elastic_agent_checks: { cluster: ['monitor'] } } } },
} as PolicyDoc }, () => undefined);

describe.each(STORE_KINDS)('%s store', (_name, make) => {
  const store = storeFixture(make);

  test('overlapping first passes answer the one recorded key; the other is undone or invalidated', async () => {
    const id = randomUUID();
    await store.createAgent(id, { active: true, type: 'PERMANENT', enrolled_at: new Date().toISOString(), agent: { id, version: '9.6.0' } });
    // Every key either pass mints, seen on its way out of the store.
    const minted: ApiKey[] = [];
    const watched = new Proxy(store, {
      get: (target, key) => {
        if (key === 'apiKeysFor') {
          return (...args: Parameters<Store['apiKeysFor']>): ApiKeyService => {
            const keys = target.apiKeysFor(...args);
            return { ...keys, createApiKey: async (req) => { const k = await keys.createApiKey(req); minted.push(k); return k; },
              invalidateApiKeys: (ids) => keys.invalidateApiKeys(ids), updateApiKeyRoles: (ids, r) => keys.updateApiKeyRoles(ids, r),
              getApiKeyRoles: (kid) => keys.getApiKeyRoles(kid) } as ApiKeyService;
          };
        }
        if (key === 'createOutputKeys' && target.createOutputKeys) {
          return async (...args: Parameters<NonNullable<Store['createOutputKeys']>>) => {
            const made = await target.createOutputKeys!(...args);
            minted.push(...made.map((m) => m.key));
            return made;
          };
        }
        return (target as unknown as Record<string | symbol, unknown>)[key];
      },
    });
    const keys = new OutputKeys(watched, undefined, pino({ level: 'silent' }));
    const [a, b] = await Promise.all([keys.keysFor(id, undefined, policy), keys.keysFor(id, undefined, policy)]);
    expect(a['default']).toMatch(/^[^:]+:.+$/);
    expect(b['default']).toBe(a['default']);
    const [keyId, secret] = a['default']!.split(':') as [string, string];
    expect((await store.getAgent(id))!._source.outputs!['default']!.api_key_id).toBe(keyId);
    expect(await store.checkApiKey(keyId, secret)).toBe('valid');
    expect(minted.length).toBeGreaterThanOrEqual(1);
    for (const k of minted.filter((m) => m.id !== keyId)) expect(await store.checkApiKey(k.id, k.key)).not.toBe('valid');
    await store.deleteAgent(id);
  });
});
