// The Elasticsearch double behaves as Elasticsearch documents it, seen through the official client the
// adapter uses: realtime GET vs refreshed search, seq_no and checkpoints, merge semantics, bulk item
// errors, the Fleet plugin APIs and the security APIs.
import { Client, errors } from '@elastic/elasticsearch';
import { EsDouble } from './support/es-double/server';
import { removeDir, tempDir } from './support/fleet-server';

let es: EsDouble;
let client: Client;

beforeAll(async () => {
  es = await new EsDouble({ refreshIntervalMs: 300 }).start();
  client = new Client({ node: es.url, auth: { bearer: es.serviceToken } });
});
afterAll(async () => {
  await client.close();
  await es.stop();
});

const statusOf = async (p: Promise<unknown>): Promise<number | undefined> => {
  try {
    await p;
    return 200;
  } catch (err) {
    return err instanceof errors.ResponseError ? err.meta.statusCode : undefined;
  }
};

test('product header, version info and service-token authentication', async () => {
  const info = await client.info();
  expect(info.version.number).toMatch(/^\d+\.\d+\.\d+$/);
  const bad = new Client({ node: es.url, auth: { bearer: 'nope' } });
  const err = await bad.info().catch((e: unknown) => e) as errors.ResponseError;
  expect(err.meta.statusCode).toBe(401);
  expect((err.meta.body as { error: { type: string } }).error.type).toBe('security_exception');
  expect(err.meta.headers?.['www-authenticate']).toBeDefined();
  await bad.close();
});

test('GET is realtime, search sees only refreshed writes, refresh=wait_for waits for the refresh', async () => {
  // No periodic refresh between the write and the search below, however slow the machine (CI once saw one).
  es.holdRefresh(true);
  const r = await client.index({ index: '.fleet-agents', id: 'a1', document: { active: true, type: 'PERMANENT', policy_id: 'p1' } });
  expect(r.result).toBe('created');
  expect(r._index).toBe('.fleet-agents-7');
  expect((await client.get({ index: '.fleet-agents', id: 'a1' })).found).toBe(true);
  const before = await client.search({ index: '.fleet-agents', query: { term: { policy_id: 'p1' } } });
  expect(before.hits.hits).toHaveLength(0);
  es.holdRefresh(false);
  const t0 = Date.now();
  const w = await client.index({ index: '.fleet-agents', id: 'a2', document: { active: true, policy_id: 'p1' }, refresh: 'wait_for' });
  expect(w.forced_refresh).toBeUndefined();
  expect(Date.now() - t0).toBeLessThan(2000);
  const after = await client.search({ index: '.fleet-agents', query: { term: { policy_id: 'p1' } } });
  expect(after.hits.hits.map((h) => h._id).sort()).toEqual(['a1', 'a2']);
  const forced = await client.index({ index: '.fleet-agents', id: 'a3', document: { active: false }, refresh: true });
  expect(forced.forced_refresh).toBe(true);
});

test('create conflicts, compare-and-set, partial merge keeping nulls, detect_noop, delete consumes a seq_no', async () => {
  await client.create({ index: '.fleet-agents', id: 'c1', document: { active: true, agent: { id: 'c1', version: '9.0.0' }, tags: ['a'] } });
  expect(await statusOf(client.create({ index: '.fleet-agents', id: 'c1', document: { active: true } }))).toBe(409);
  const cur = await client.get({ index: '.fleet-agents', id: 'c1' });
  expect(await statusOf(client.index({ index: '.fleet-agents', id: 'c1', document: {}, if_seq_no: cur._seq_no! + 5, if_primary_term: 1 }))).toBe(409);
  const u = await client.update({ index: '.fleet-agents', id: 'c1', doc: { agent: { version: '9.1.0' }, tags: ['b'], upgrade_started_at: null } });
  expect(u.result).toBe('updated');
  const doc = (await client.get<Record<string, unknown>>({ index: '.fleet-agents', id: 'c1' }))._source!;
  expect(doc).toEqual({ active: true, agent: { id: 'c1', version: '9.1.0' }, tags: ['b'], upgrade_started_at: null });
  const noop = await client.update({ index: '.fleet-agents', id: 'c1', doc: { tags: ['b'] } });
  expect(noop.result).toBe('noop');
  expect(noop._seq_no).toBe(u._seq_no);
  expect(await statusOf(client.update({ index: '.fleet-agents', id: 'missing', doc: { a: 1 } }))).toBe(404);
  const del = await client.delete({ index: '.fleet-agents', id: 'c1' });
  expect(del._seq_no).toBe(u._seq_no! + 1);
  expect(await statusOf(client.delete({ index: '.fleet-agents', id: 'c1' }))).toBe(404);
  // A wrong type for a mapped field is refused by the document parser.
  expect(await statusOf(client.index({ index: '.fleet-agents', id: 'bad', document: { policy_revision_idx: 'three' } }))).toBe(400);
});

test('bulk answers 200 with per-item results and errors; mget reports missing documents and indices', async () => {
  const r = await client.bulk({
    operations: [
      { create: { _index: '.fleet-actions-results', _id: 'x:1' } }, { '@timestamp': new Date().toISOString(), action_id: 'x', agent_id: '1' },
      { create: { _index: '.fleet-actions-results', _id: 'x:1' } }, { '@timestamp': new Date().toISOString(), action_id: 'x', agent_id: '1' },
      { index: { _index: '.fleet-actions-results', _id: 'x:2' } }, { '@timestamp': new Date().toISOString() },
      { update: { _index: '.fleet-agents', _id: 'nobody', retry_on_conflict: 3 } }, { doc: { active: false } },
    ],
  });
  expect(r.errors).toBe(true);
  expect(r.items.map((i) => Object.values(i)[0]!.status)).toEqual([201, 409, 400, 404]);
  expect(r.items[0]!.create!._index).toMatch(/^\.ds-\.fleet-actions-results-\d{4}\.\d{2}\.\d{2}-000001$/);
  expect(r.items[1]!.create!.error!.type).toBe('version_conflict_engine_exception');
  const m = await client.mget({ docs: [{ _index: '.fleet-agents', _id: 'a1' }, { _index: '.fleet-agents', _id: 'zz' }, { _index: 'nope', _id: '1' }] });
  expect(m.docs.map((d) => ('found' in d ? d.found : 'error'))).toEqual([true, false, 'error']);
});

test('query subset: term, terms, range with date math, exists, bool, ids, sort with missing last, _source filtering, top_hits', async () => {
  const now = Date.now();
  const iso = (ms: number): string => new Date(ms).toISOString();
  await client.bulk({
    refresh: true,
    operations: [
      { index: { _index: '.fleet-actions', _id: 'd1' } }, { action_id: 'A', type: 'UPGRADE', agents: ['x', 'y'], expiration: iso(now + 3600e3), '@timestamp': iso(now), data: { v: 1 } },
      { index: { _index: '.fleet-actions', _id: 'd2' } }, { action_id: 'B', type: 'UNENROLL', agents: ['y'], expiration: iso(now - 3600e3), '@timestamp': iso(now - 1000) },
      { index: { _index: '.fleet-actions', _id: 'd3' } }, { action_id: 'C', type: 'SETTINGS', agents: ['z'], '@timestamp': iso(now - 2000) },
    ],
  });
  const ids = async (query: object, extra: object = {}): Promise<string[]> =>
    (await client.search({ index: '.fleet-actions', query, ...extra })).hits.hits.map((h) => h._id!);
  expect(await ids({ term: { agents: 'y' } })).toEqual(expect.arrayContaining(['d1', 'd2']));
  expect(await ids({ range: { expiration: { gt: 'now' } } })).toEqual(['d1']);
  expect(await ids({ range: { expiration: { lte: 'now-30m' } } })).toEqual(['d2']);
  expect(await ids({ bool: { must_not: [{ exists: { field: 'expiration' } }] } })).toEqual(['d3']);
  expect(await ids({ bool: { filter: [{ terms: { type: ['UPGRADE', 'SETTINGS'] } }, { ids: { values: ['d1', 'd2', 'd3'] } }] } })).toEqual(expect.arrayContaining(['d1', 'd3']));
  // `data` is stored with enabled:false: it is in _source but cannot be queried.
  expect(await ids({ term: { 'data.v': 1 } })).toEqual([]);
  expect(await ids({ match_all: {} }, { sort: [{ expiration: 'desc' }] })).toEqual(['d1', 'd2', 'd3']);
  expect(await ids({ match_all: {} }, { sort: ['expiration'] })).toEqual(['d2', 'd1', 'd3']);
  const r = await client.search({ index: '.fleet-actions', query: { ids: { values: ['d1'] } }, _source: { excludes: ['agents'] }, seq_no_primary_term: true });
  expect(r.hits.hits[0]!._source).not.toHaveProperty('agents');
  expect(typeof r.hits.hits[0]!._seq_no).toBe('number');
  await expect(client.search({ index: '.fleet-actions', query: { match_all: {} }, sort: ['data.v'] })).rejects.toThrow(/No mapping found/);
  await expect(client.search({ index: '.fleet-actions', query: { fuzzy_thing: {} } as never })).rejects.toThrow(/unknown query/);

  await client.bulk({
    refresh: true,
    operations: [1, 2, 3].flatMap((rev) => [{ index: { _index: '.fleet-policies' } }, { policy_id: 'p', revision_idx: rev, '@timestamp': iso(now), data: { id: 'p', revision: rev } }])
      .concat([{ index: { _index: '.fleet-policies' } }, { policy_id: 'q', revision_idx: 7, '@timestamp': iso(now), data: { id: 'q', revision: 7 } }] as never[]),
  });
  const agg = await client.search({
    index: '.fleet-policies', size: 0,
    aggs: { policy_id: { terms: { field: 'policy_id', size: 10000 }, aggs: { revision_idx: { top_hits: { size: 1, sort: [{ revision_idx: 'desc' }] } } } } },
  });
  const buckets = (agg.aggregations as { policy_id: { buckets: { key: string; revision_idx: { hits: { hits: { _source: { revision_idx: number } }[] } } }[] } }).policy_id.buckets;
  expect(buckets.map((b) => [b.key, b.revision_idx.hits.hits[0]!._source.revision_idx])).toEqual([['p', 3], ['q', 7]]);
  const missing = await client.search({ index: '.fleet-nothing', ignore_unavailable: true, size: 0, aggs: { x: { terms: { field: 'policy_id' } } } });
  expect(missing.aggregations).toBeUndefined();
  expect(await statusOf(client.search({ index: '.fleet-nothing' }))).toBe(404);
});

test('global checkpoints: missing index 404, long poll wakes on a write, times out with timed_out:true', async () => {
  expect(await statusOf(client.fleet.globalCheckpoints({ index: '.fleet-empty' }))).toBe(404);
  const cp = (await client.fleet.globalCheckpoints({ index: '.fleet-agents' })).global_checkpoints[0]!;
  const t0 = Date.now();
  const timedOut = await client.fleet.globalCheckpoints({ index: '.fleet-agents', wait_for_advance: true, checkpoints: [cp], timeout: '300ms' });
  expect(timedOut.timed_out).toBe(true);
  expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
  const waiting = client.fleet.globalCheckpoints({ index: '.fleet-agents', wait_for_advance: true, wait_for_index: true, checkpoints: [cp], timeout: '30s' });
  setTimeout(() => void client.index({ index: '.fleet-agents', id: 'wake', document: { active: true } }), 100);
  const woke = await waiting;
  expect(woke.timed_out).toBe(false);
  expect(woke.global_checkpoints[0]).toBe(cp + 1);
  // _fleet_search waits for a refresh covering the checkpoint, and refuses one never issued.
  const s = await client.fleet.search({ index: '.fleet-agents', wait_for_checkpoints: [cp + 1], query: { ids: { values: ['wake'] } } });
  expect(s.hits.hits).toHaveLength(1);
  expect(await statusOf(client.fleet.search({ index: '.fleet-agents', wait_for_checkpoints: [cp + 100], query: { match_all: {} } }))).toBe(400);
  const ms = await client.fleet.msearch({ searches: [{ index: '.fleet-agents', wait_for_checkpoints: [cp + 1] } as never, { query: { ids: { values: ['wake'] } } }] });
  expect(((ms as unknown as { responses: unknown[] }).responses[0] as { hits: { hits: unknown[] } }).hits.hits).toHaveLength(1);
});

test('secrets and API keys: create, read, authenticate, update roles, invalidate', async () => {
  const { id } = await client.fleet.postSecret({ value: 'shh' } as never) as unknown as { id: string };
  expect((await client.fleet.getSecret({ id }) as unknown as { value: string }).value).toBe('shh');
  await client.fleet.deleteSecret({ id });
  expect(await statusOf(client.fleet.getSecret({ id }))).toBe(404);

  const key = await client.security.createApiKey({ name: 'agent-1', role_descriptors: { r: { cluster: [] } }, metadata: { managed: true } });
  const who = await client.security.authenticate(undefined, { headers: { authorization: `ApiKey ${key.encoded}` } });
  expect(who.api_key?.id).toBe(key.id);
  expect(who.enabled).toBe(true);
  // An API key without privileges may authenticate and nothing else.
  expect(await statusOf(client.search({ index: '.fleet-agents' }, { headers: { authorization: `ApiKey ${key.encoded}` } }))).toBe(403);
  const upd = await client.security.bulkUpdateApiKeys({ ids: [key.id, 'nope'], role_descriptors: { r2: { cluster: ['monitor'] } } });
  expect(upd.updated).toEqual([key.id]);
  expect(upd.errors?.count).toBe(1);
  const got = await client.security.getApiKey({ id: key.id, owner: true });
  expect(Object.keys(got.api_keys[0]!.role_descriptors!)).toEqual(['r2']);
  const missing = await client.security.getApiKey({ id: 'nope', owner: true }).catch((e: errors.ResponseError) => e);
  expect((missing as errors.ResponseError).meta.statusCode).toBe(404);
  expect((missing as errors.ResponseError).meta.body).toEqual({ api_keys: [] });
  const inv = await client.security.invalidateApiKey({ ids: [key.id], owner: true });
  expect(inv.invalidated_api_keys).toEqual([key.id]);
  const denied = await client.security.authenticate(undefined, { headers: { authorization: `ApiKey ${key.encoded}` } }).catch((e: errors.ResponseError) => e);
  expect((denied as errors.ResponseError).meta.statusCode).toBe(401);
  expect(JSON.stringify((denied as errors.ResponseError).meta.body)).toContain('has been invalidated');
});

test('fault injection: a 429 on chosen calls, then service as usual', async () => {
  es.faults.add({ match: 'search', status: 429, times: 1 });
  expect(await statusOf(client.search({ index: '.fleet-agents' }))).toBe(429);
  expect(await statusOf(client.search({ index: '.fleet-agents' }))).toBe(200);
  es.faults.add({ match: 'bulk', itemStatus: 429, times: 1 });
  const r = await client.bulk({ operations: [{ index: { _index: '.fleet-agents', _id: 'f1' } }, { active: true }] });
  expect(r.items[0]!.index!.status).toBe(429);
  expect(r.items[0]!.index!.error!.type).toBe('es_rejected_execution_exception');
});

test('--data keeps the cluster across restarts: documents, sequence numbers, API keys', async () => {
  const dir = tempDir();
  const first = await new EsDouble({ dataDir: dir }).start();
  const c1 = new Client({ node: first.url, auth: { bearer: first.serviceToken } });
  await c1.index({ index: '.fleet-agents', id: 'kept', document: { active: true }, refresh: true });
  const key = await c1.security.createApiKey({ name: 'kept' });
  await c1.close();
  await first.stop();
  const second = await new EsDouble({ dataDir: dir, serviceToken: first.serviceToken }).start();
  const c2 = new Client({ node: second.url, auth: { bearer: second.serviceToken } });
  try {
    const doc = await c2.get({ index: '.fleet-agents', id: 'kept' });
    expect(doc.found).toBe(true);
    expect((await c2.search({ index: '.fleet-agents', query: { ids: { values: ['kept'] } } })).hits.hits).toHaveLength(1);
    expect((await c2.fleet.globalCheckpoints({ index: '.fleet-agents' })).global_checkpoints[0]).toBe(doc._seq_no);
    expect((await c2.security.authenticate(undefined, { headers: { authorization: `ApiKey ${key.encoded}` } })).api_key?.id).toBe(key.id);
  } finally {
    await c2.close();
    await second.stop();
    removeDir(dir);
  }
});
