// The Elasticsearch store under faults, in process on the double: what agents are told (503 for cluster
// faults, 429 for push-back, never a 500), that an acknowledged write is stored, that a write retried
// after it landed is not stored twice, and that a check-in batch is sent in bounded requests.
import type { Client } from '@elastic/elasticsearch';
import pino from 'pino';
import { buildConfig, type BulkConfig } from '../../src/config/config';
import type { Bookkeeper } from '../../src/fleet/bookkeeping';
import { OpampService, type OpampMessage } from '../../src/fleet/opamp';
import type { ActionDoc, AgentDoc, PolicyDoc } from '../../src/store/documents';
import { Bulker } from '../../src/store/elasticsearch/bulker';
import { createClient, toStoreError } from '../../src/store/elasticsearch/connection';
import { EsStore, INDEX } from '../../src/store/elasticsearch/store';
import { StoreBusyError, StoreUnavailableError } from '../../src/store/port';
import { uuidBytes } from '../../src/util/uuid';
import { EsDouble } from '../support/es-double/server';
import { esOutput } from '../support/es-output';

const log = pino({ level: 'silent' });
let es: EsDouble;
let store: EsStore;

function makeStore(bulk: Partial<BulkConfig> = {}): EsStore {
  const config = buildConfig({ output: { elasticsearch: { hosts: [es.url], service_token: es.serviceToken } } });
  return new EsStore(config.elasticsearch!, { bulk: { ...config.server.bulk, flushIntervalMs: 5, ...bulk }, monitor: config.monitor }, log);
}

const agentDoc = (id: string): AgentDoc => ({ active: true, policy_id: 'p', type: 'PERMANENT', enrolled_at: '2026-01-01T00:00:00Z', agent: { id, version: '9.6.0' } } as AgentDoc);
const stored = (index: string, id: string): Record<string, unknown> | undefined => es.cluster.resolve(index)?.docs.get(id)?.source as Record<string, unknown> | undefined;
const docCount = (index: string): number => es.cluster.resolve(index)?.docs.size ?? 0;
const requests = (kind: string): number => es.stats.requests[kind] ?? 0;

beforeAll(async () => {
  es = await new EsDouble({ refreshIntervalMs: 0 }).start();
  store = makeStore();
  await store.ready();
  await Promise.all(['a1', 'a2', 'a3'].map((id) => store.createAgent(id, agentDoc(id))));
});
afterEach(() => es.faults.clear());
afterAll(async () => {
  await store?.close();
  await es?.stop();
});

describe('check-in bulk (bulkUpdateAgents)', () => {
  const checkin = (id: string, at: string) => ({ id, doc: { last_checkin: at, last_checkin_status: 'online' } as Partial<AgentDoc> });

  test('an item that failed makes the call throw 503 (the bookkeeper keeps the batch); the others are stored', async () => {
    es.faults.add({ match: 'bulk', itemStatus: 503, itemIds: ['a2'], times: 1 });
    const err = await store.bulkUpdateAgents(['a1', 'a2', 'a3'].map((id) => checkin(id, '2026-01-01T00:01:00Z'))).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect((err as Error).message).toMatch(/1 of 3/);
    expect(stored(INDEX.agents, 'a1')?.['last_checkin']).toBe('2026-01-01T00:01:00Z');
    expect(stored(INDEX.agents, 'a2')?.['last_checkin']).toBeUndefined();
    // The batch again: harmless for a1 and a3, and now a2's check-in is stored.
    await store.bulkUpdateAgents(['a1', 'a2', 'a3'].map((id) => checkin(id, '2026-01-01T00:01:00Z')));
    expect(stored(INDEX.agents, 'a2')?.['last_checkin']).toBe('2026-01-01T00:01:00Z');
  });

  test('a version conflict that outlasted retry_on_conflict is push-back (429); an agent deleted meanwhile (404) is not a failure', async () => {
    es.faults.add({ match: 'bulk', itemStatus: 409, itemIds: ['a1'], times: 1 });
    await expect(store.bulkUpdateAgents([checkin('a1', '2026-01-01T00:02:00Z')])).rejects.toBeInstanceOf(StoreBusyError);
    await expect(store.bulkUpdateAgents([checkin('gone', '2026-01-01T00:02:00Z'), checkin('a3', '2026-01-01T00:02:00Z')])).resolves.toBeUndefined();
    expect(stored(INDEX.agents, 'a3')?.['last_checkin']).toBe('2026-01-01T00:02:00Z');
  });

  test('an item refused for what it holds (400) is dropped, not kept: it would be refused at every flush and hold every later check-in back', async () => {
    es.faults.add({ match: 'bulk', itemStatus: 400, itemIds: ['a2'], times: 1 });
    await expect(store.bulkUpdateAgents(['a1', 'a2', 'a3'].map((id) => checkin(id, '2026-01-01T00:05:00Z')))).resolves.toBeUndefined();
    expect(stored(INDEX.agents, 'a1')?.['last_checkin']).toBe('2026-01-01T00:05:00Z');
    expect(stored(INDEX.agents, 'a3')?.['last_checkin']).toBe('2026-01-01T00:05:00Z');
  });

  test('the batch goes out in requests bounded by flush_threshold_cnt and flush_threshold_size, all of it stored', async () => {
    const ids = Array.from({ length: 10 }, (_, i) => `c${i}`);
    await Promise.all(ids.map((id) => store.createAgent(id, agentDoc(id))));
    const bounded = makeStore({ flushThresholdCount: 3, flushThresholdBytes: 1024 * 1024 });
    const big = makeStore({ flushThresholdCount: 1000, flushThresholdBytes: 2000 });
    try {
      let before = requests('bulk');
      await bounded.bulkUpdateAgents(ids.map((id) => checkin(id, '2026-01-01T00:03:00Z')));
      expect(requests('bulk') - before).toBe(4); // 3 + 3 + 3 + 1
      for (const id of ids) expect(stored(INDEX.agents, id)?.['last_checkin']).toBe('2026-01-01T00:03:00Z');

      // About 700 bytes an update: two to a 2,000-byte request.
      const meta = { host: { name: 'x'.repeat(600) } };
      before = requests('bulk');
      await big.bulkUpdateAgents(ids.map((id) => ({ id, doc: { last_checkin: '2026-01-01T00:04:00Z', local_metadata: meta } as Partial<AgentDoc> })));
      expect(requests('bulk') - before).toBe(5);
      for (const id of ids) expect(stored(INDEX.agents, id)?.['last_checkin']).toBe('2026-01-01T00:04:00Z');
    } finally {
      await bounded.close();
      await big.close();
    }
  });
});

describe('writes retried after they landed (a gateway 504 on the way back)', () => {
  test('an action is stored once, and its hit is the stored document', async () => {
    const before = docCount(INDEX.actions);
    es.faults.add({ match: 'bulk', status: 504, afterServing: true, times: 1 });
    const action = { action_id: 'act-1', type: 'UPGRADE', agents: ['a1'], '@timestamp': '2026-01-01T00:00:00Z', expiration: '2099-01-01T00:00:00Z', data: {} } as unknown as ActionDoc;
    const [hit] = await store.createActions([action]);
    expect(docCount(INDEX.actions)).toBe(before + 1);
    expect(stored(INDEX.actions, hit!._id)?.['action_id']).toBe('act-1');
    expect(hit!._seq_no).toBe(es.cluster.resolve(INDEX.actions)!.docs.get(hit!._id)!.seqNo);
  });

  test('a policy revision is stored once', async () => {
    const before = docCount(INDEX.policies);
    es.faults.add({ match: String.raw`/\.fleet-policies/_(doc|create)`, status: 504, afterServing: true, times: 1 });
    const doc = { '@timestamp': '2026-01-01T00:00:00Z', policy_id: 'p', revision_idx: 2, coordinator_idx: 1, data: {}, default_fleet_server: false } as unknown as PolicyDoc;
    const hit = await store.addPolicyRevision(doc);
    expect(docCount(INDEX.policies)).toBe(before + 1);
    expect(hit._seq_no).toBe(es.cluster.resolve(INDEX.policies)!.docs.get(hit._id)!.seqNo);
  });

  test('an OpAMP enrolment is a success, not a failure that leaves the stored agent orphaned', async () => {
    const service = new OpampService(store, { enqueue: () => undefined } as unknown as Bookkeeper, async () => undefined, log);
    const uid = '0190a0a0-0000-7000-8000-0000000000aa';
    const msg: OpampMessage = { instanceUid: uuidBytes(uid)!, sequenceNum: 0, capabilities: ['ReportsStatus'], requestInstanceUid: false, disconnect: false };
    es.faults.add({ match: 'bulk', status: 504, afterServing: true, times: 1 });
    const reply = await service.handle({ policyId: 'p', namespaces: [] } as never, msg);
    expect(reply.error).toBeUndefined();
    expect(stored(INDEX.agents, uid)?.['type']).toBe('OPAMP');
  });

  test("OpAMP: another agent's document under that id (stored meanwhile) is still a conflict", async () => {
    const uid = '0190a0a0-0000-7000-8000-0000000000bb';
    let reads = 0;
    const fake = {
      getAgent: async () => (reads++ === 0 ? undefined : { _id: uid, _source: agentDoc(uid) }),
      createAgent: async () => false,
    } as unknown as EsStore;
    const service = new OpampService(fake, { enqueue: () => undefined } as unknown as Bookkeeper, async () => undefined, log);
    const msg: OpampMessage = { instanceUid: uuidBytes(uid)!, sequenceNum: 0, capabilities: [], requestInstanceUid: false, disconnect: false };
    expect((await service.handle({ policyId: 'p', namespaces: [] } as never, msg)).error?.type).toBe('Unavailable');
  });
});

describe('API keys and secrets are not retried (a retry would mint a second one)', () => {
  test('a 504 after the key was minted: one key, and 503 for the agent to retry', async () => {
    const before = es.security.keys.size;
    es.faults.add({ match: 'api_key_create', status: 504, afterServing: true, times: 1 });
    await expect(store.createApiKey({ name: 'k', roleDescriptors: {}, metadata: {} } as never)).rejects.toBeInstanceOf(StoreUnavailableError);
    expect(es.security.keys.size).toBe(before + 1);
  });

  test('a 504 after the secret was stored: one secret, and 503', async () => {
    const before = requests('secret_post');
    es.faults.add({ match: 'secret_post', status: 504, afterServing: true, times: 1 });
    await expect(store.createSecret('s3cret')).rejects.toBeInstanceOf(StoreUnavailableError);
    expect(requests('secret_post') - before).toBe(1);
  });
});

describe('failures are 503 or 429, never raw', () => {
  test.each([408, 425, 413])('%i → 503', async (status) => {
    es.faults.add({ match: 'api_key_create', status, times: 1 });
    await expect(store.createApiKey({ name: 'k', roleDescriptors: {}, metadata: {} } as never)).rejects.toBeInstanceOf(StoreUnavailableError);
  });

  test('an answer that is not JSON (a proxy page) → 503', async () => {
    es.faults.add({ match: 'msearch', rawBody: '<html><body>Bad gateway</body></html>', times: 1 });
    await expect(store.healthCheck()).rejects.toBeInstanceOf(StoreUnavailableError);
    const client = createClient(esOutput(es.url, { serviceToken: es.serviceToken }), { maxRetries: 0, requestTimeoutMs: 5000 });
    try {
      es.faults.add({ match: 'info', rawBody: '<html>', times: 1 });
      const err = await client.info().catch((e: unknown) => e);
      expect(toStoreError(err, 'info')).toBeInstanceOf(StoreUnavailableError);
    } finally {
      await client.close();
    }
  });

  test("an update's version conflict after retry_on_conflict → 429", async () => {
    es.faults.add({ match: 'bulk', itemStatus: 409, times: 1 });
    await expect(store.updateAgent({ id: 'a1', doc: { tags: ['x'] } })).rejects.toBeInstanceOf(StoreBusyError);
    await store.putEnrollmentKey('ek1', { api_key_id: 'k', api_key: 'x', policy_id: 'p', active: true } as never);
    es.faults.add({ match: 'update', status: 409, times: 1 });
    await expect(store.updateEnrollmentKey('ek1', { active: false })).rejects.toBeInstanceOf(StoreBusyError);
  });
});

describe('bulker: operations waiting to be retried after an item 429', () => {
  test('stay counted until settled: new work sees the bound, and drain waits for them', async () => {
    let calls = 0;
    const client = {
      bulk: async () => {
        calls++;
        return { errors: calls === 1, items: [{ update: { _id: 'x', status: calls === 1 ? 429 : 200, ...(calls === 1 ? { error: { type: 'es_rejected_execution_exception', reason: 'r' } } : {}) } }] };
      },
    } as unknown as Client;
    const bulker = new Bulker(client, { flushIntervalMs: 1, flushThresholdCount: 10, flushThresholdBytes: 1 << 20, flushMaxPending: 1, maxPendingOperations: 1 }, log);
    const order: string[] = [];
    const write = bulker.write('update', 'i', 'x', { doc: {} }).then((r) => { order.push(`write ${r.status}`); });
    while (calls < 1) await new Promise((r) => setImmediate(r));
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    // Sleeping before its retry (at least 250 ms): still one operation waiting.
    expect(calls).toBe(1);
    expect(bulker.pending).toBe(1);
    await expect(bulker.write('update', 'i', 'y', { doc: {} })).rejects.toBeInstanceOf(StoreBusyError);
    const drained = bulker.drain().then(() => { order.push('drained'); });
    await Promise.all([write, drained]);
    expect(order).toEqual(['write 200', 'drained']);
    expect(bulker.pending).toBe(0);
  });
});
