// Two passes of output-key minting for one agent at once (an overlapping or retried first check-in, on
// one worker or two): each read the agent before either recorded a key. Both must answer with the key
// the document records, and no other key may stay valid with nothing to retire it. On every store.
import { randomUUID } from 'node:crypto';
import pino from 'pino';
import { OutputKeys } from '../src/fleet/output-keys';
import { ParsedPolicy } from '../src/fleet/parsed-policy';
import type { PolicyDoc } from '../src/store/documents';
import type { ApiKey, ApiKeyService, Store } from '../src/store/port';
import { EsDouble } from './support/es-double/server';
import { esStore, STORE_KINDS, storeFixture } from './support/stores';

const policy = new ParsedPolicy({ _id: 'p1:1', _seq_no: 1, _source: {
  '@timestamp': new Date().toISOString(), policy_id: 'p1', revision_idx: 1, coordinator_idx: 1, default_fleet_server: false,
  data: { id: 'p1', revision: 1, outputs: { default: { type: 'elasticsearch', hosts: ['http://localhost:9200'] } },
    output_permissions: { default: { _elastic_agent_checks: { cluster: ['monitor'] } } } },
} as PolicyDoc }, () => undefined);

/** `store` with every key minted through it recorded in `minted`, and each one-write minting's outcome in `writes`. */
function watched(store: Store, minted: ApiKey[], writes: string[]): Store {
  return new Proxy(store, {
    get: (target, key) => {
      if (key === 'apiKeysFor') {
        return (...args: Parameters<Store['apiKeysFor']>): ApiKeyService => {
          const keys = target.apiKeysFor(...args);
          return { createApiKey: async (req) => { const k = await keys.createApiKey(req); minted.push(k); return k; },
            invalidateApiKeys: (ids) => keys.invalidateApiKeys(ids), updateApiKeyRoles: (ids, r) => keys.updateApiKeyRoles(ids, r),
            getApiKeyRoles: (kid) => keys.getApiKeyRoles(kid) } as ApiKeyService;
        };
      }
      if (key === 'createOutputKeys' && target.createOutputKeys) {
        return async (...args: Parameters<NonNullable<Store['createOutputKeys']>>) => {
          try {
            const made = await target.createOutputKeys!(...args);
            minted.push(...made.map((m) => m.key));
            writes.push('recorded');
            return made;
          } catch (err) {
            writes.push((err as Error).name);
            throw err;
          }
        };
      }
      const v = (target as unknown as Record<string | symbol, unknown>)[key];
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

async function newAgent(store: Store): Promise<string> {
  const id = randomUUID();
  await store.createAgent(id, { active: true, type: 'PERMANENT', enrolled_at: new Date().toISOString(), agent: { id, version: '9.6.0' } });
  return id;
}

describe.each(STORE_KINDS)('%s store', (_name, make) => {
  const store = storeFixture(make);

  test('overlapping first passes answer the one recorded key; the other is undone or invalidated', async () => {
    const id = await newAgent(store);
    const minted: ApiKey[] = [];
    const writes: string[] = [];
    const keys = new OutputKeys(watched(store, minted, writes), undefined, pino({ level: 'silent' }));
    const [a, b] = await Promise.all([keys.keysFor(id, undefined, policy), keys.keysFor(id, undefined, policy)]);
    expect(a['default']).toMatch(/^[^:]+:.+$/);
    expect(b['default']).toBe(a['default']);
    const [keyId, secret] = a['default']!.split(':') as [string, string];
    expect((await store.getAgent(id))!._source.outputs!['default']!.api_key_id).toBe(keyId);
    expect(await store.checkApiKey(keyId, secret)).toBe('valid');
    if (store.createOutputKeys && !store.traits.remoteApiKeys) {
      // Minted with the record in one write: the second pass's write was refused whole, keys included.
      expect(writes.sort()).toEqual(['ConflictError', 'recorded']);
      expect(minted.map((k) => k.id)).toEqual([keyId]);
    } else {
      // Minted one by one in the cluster: both passes made a key; the one not recorded is invalidated.
      expect(minted).toHaveLength(2);
      const other = minted.find((k) => k.id !== keyId)!;
      expect(await store.checkApiKey(other.id, other.key)).toBe('invalid');
    }
    await store.deleteAgent(id);
  });
});

test('Elasticsearch: a record resent after its answer was lost (applied, then 504) keeps the key it recorded valid', async () => {
  const es = await new EsDouble().start();
  const store = esStore([es.url], es.serviceToken);
  try {
    const id = await newAgent(store);
    const minted: ApiKey[] = [];
    // The record is the pass's only agent update: its bulk request lands, and the gateway answers 504.
    const lossy = new Proxy(watched(store, minted, []), {
      get: (target, key) => (key === 'updateAgent'
        ? (u: Parameters<Store['updateAgent']>[0]) => {
          es.faults.add({ match: 'bulk', status: 504, afterServing: true, times: 1 });
          return target.updateAgent(u);
        }
        : (target as unknown as Record<string | symbol, unknown>)[key]),
    });
    const keys = await new OutputKeys(lossy, undefined, pino({ level: 'silent' })).keysFor(id, undefined, policy);
    const [keyId, secret] = keys['default']!.split(':') as [string, string];
    expect(minted.map((k) => k.id)).toEqual([keyId]);
    expect((await store.getAgent(id))!._source.outputs!['default']!.api_key_id).toBe(keyId);
    expect(await store.checkApiKey(keyId, secret)).toBe('valid');
  } finally {
    await store.close();
    await es.stop();
  }
});
