// The Elasticsearch double refuses what Elasticsearch refuses, where the adapter could come to rely on a
// leniency: mapping types and object paths of the Fleet templates, strict dates, dynamic mappings that
// hold later documents to their first types, CAS on the primary term too, data-stream write rules, bulk
// and update parsing, shard-level search limits, msearch headers, time values, and the API-key rights of
// the fleet-server service account (manage_own_api_key).
import { Client, errors } from '@elastic/elasticsearch';
import { EsDouble } from '../support/es-double/server';

let es: EsDouble;
let client: Client;

beforeAll(async () => {
  es = await new EsDouble({ refreshIntervalMs: 0 }).start();
  client = new Client({ node: es.url, auth: { bearer: es.serviceToken } });
});
afterAll(async () => {
  await client.close();
  await es.stop();
});

type Obj = Record<string, any>;

/** The status and error body of a call that must fail (200 and undefined if it did not). */
async function failure(p: Promise<unknown>): Promise<{ status: number; error?: Obj }> {
  try {
    await p;
    return { status: 200 };
  } catch (err) {
    if (!(err instanceof errors.ResponseError)) throw err;
    return { status: err.meta.statusCode!, error: (err.meta.body as Obj)?.['error'] };
  }
}

/** A raw request (bodies the typed client would not send). */
async function raw(method: string, path: string, body?: string, type = 'application/json'): Promise<{ status: number; body: Obj }> {
  const r = await fetch(`${es.url}${path}`, {
    method, headers: { authorization: `Bearer ${es.serviceToken}`, 'content-type': type }, ...(body !== undefined ? { body } : {}),
  });
  return { status: r.status, body: await r.json() as Obj };
}

const agent = (id: string, doc: Obj): Promise<unknown> => client.index({ index: '.fleet-agents', id, document: doc });

describe('mappings of the Fleet templates', () => {
  test('local_metadata and upgrade_details are typed objects of fleet-agents.json, not dynamic ones', async () => {
    const hostname = await failure(agent('m1', { local_metadata: { host: { hostname: { first: 'a' } } } }));
    expect(hostname.status).toBe(400);
    expect(hostname.error).toMatchObject({ type: 'document_parsing_exception', reason: expect.stringContaining('failed to parse field [local_metadata.host.hostname] of type [text]') });
    const build = await failure(agent('m2', { local_metadata: { elastic: { agent: { build: 'abc' } } } }));
    expect(build.error?.['reason']).toContain('object mapping for [local_metadata.elastic.agent.build] tried to parse field [build] as object, but found a concrete value');
    // What elastic-agent reports while downloading ("1.5MBps") is not a double; a numeric string is coerced.
    expect((await failure(agent('m3', { upgrade_details: { state: 'UPG_EXTRACTING', metadata: { download_rate: '1.5MBps' } } }))).status).toBe(400);
    expect((await failure(agent('m3', { upgrade_details: { state: 'UPG_EXTRACTING', metadata: { download_rate: '1500', download_percent: 1 } } }))).status).toBe(200);
    expect((await failure(agent('m4', { upgrade_details: { metadata: { scheduled_at: 'soon' } } }))).status).toBe(400);
    // Unmapped fields under dynamic: false are kept but neither parsed nor searchable.
    await agent('m5', { local_metadata: { host: { extra: { any: ['thing', 1] } } }, policy_id: 'm5' });
    expect((await client.get<Obj>({ index: '.fleet-agents', id: 'm5' }))._source!['local_metadata']).toEqual({ host: { extra: { any: ['thing', 1] } } });
    const hits = await client.search({ index: '.fleet-agents', query: { term: { 'local_metadata.host.extra.any': 'thing' } } });
    expect(hits.hits.hits).toHaveLength(0);
  });

  test('date fields take strict_date_optional_time or epoch millis only; integers stay in range; binary is padded base64', async () => {
    for (const ok of ['2024-01-01T10:00:00Z', '2024-01-01T10:00:00.123456789+05:30', '2024-01-01', '2024', 1704067200000, '1704067200000']) {
      expect([ok, (await failure(agent('d1', { enrolled_at: ok }))).status]).toEqual([ok, 200]);
    }
    for (const bad of ['2024-01-01 10:00:00', 'Mon, 01 Jan 2024 00:00:00 GMT', '2024-02-30', '2024-01-01||+1d', 'now', '24-01-01']) {
      expect([bad, (await failure(agent('d2', { enrolled_at: bad }))).status]).toEqual([bad, 400]);
    }
    expect((await failure(agent('d3', { policy_revision_idx: 3_000_000_000 }))).status).toBe(400);
    expect((await failure(agent('d3', { policy_revision_idx: '' }))).status).toBe(200);
    const signed = (data: string): Promise<unknown> => client.index({ index: '.fleet-actions', id: 's1', document: { action_id: 's', signed: { data, signature: 'AAAA' } } });
    expect((await failure(signed('eyJhIjoxfQ=='))).status).toBe(200);
    expect((await failure(signed('eyJhIjoxfQ'))).status).toBe(400);
    expect((await failure(signed('a-b_'))).status).toBe(400);
  });

  test('a dynamic object maps a field on first sight and refuses later values of another type', async () => {
    const result = (id: string, response: Obj): Promise<unknown> => client.create({
      index: '.fleet-actions-results', id, document: { '@timestamp': '2030-01-01T00:00:00Z', action_id: 'r', agent_id: id, action_response: response },
    });
    expect((await failure(result('a1', { endpoint: { ack: true, when: '2030-01-01T00:00:00Z' } }))).status).toBe(200);
    expect((await failure(result('a2', { endpoint: { ack: 'yes' } }))).error).toMatchObject({
      type: 'document_parsing_exception', reason: expect.stringContaining('[action_response.endpoint.ack] of type [boolean]'),
    });
    expect((await failure(result('a3', { endpoint: 'done' }))).error?.['reason']).toContain('object mapping for [action_response.endpoint]');
    expect((await failure(result('a4', { endpoint: { when: 'later' } }))).status).toBe(400);
    expect((await failure(result('a5', { endpoint: { ack: false, extra: 1 } }))).status).toBe(200);
  });

  test('text fields are neither sortable nor aggregatable (fielddata is off)', async () => {
    await agent('t1', { last_checkin_message: 'hello', policy_id: 't' });
    const sort = await failure(client.search({ index: '.fleet-agents', sort: [{ last_checkin_message: 'asc' }] }));
    expect(sort.status).toBe(400);
    expect(sort.error).toMatchObject({ type: 'search_phase_execution_exception', root_cause: [{ type: 'illegal_argument_exception', reason: expect.stringContaining('Fielddata is disabled') }] });
    expect((await failure(client.search({ index: '.fleet-agents', size: 0, aggs: { m: { terms: { field: 'last_checkin_message' } } } }))).status).toBe(400);
    expect((await failure(client.search({ index: '.fleet-agents', sort: [{ 'last_checkin_message.keyword': 'asc' }] }))).status).toBe(200);
  });
});

describe('document APIs', () => {
  test('GET with stored_fields returns no _source unless asked for', async () => {
    await raw('PUT', '/.fleet-fileds-tohost-data-agent/_create/f.0', JSON.stringify({ '@timestamp': 1, bid: 'f', data: 'AAEC' }));
    const stored = await raw('GET', '/.fleet-fileds-tohost-data-agent/_doc/f.0?stored_fields=data');
    expect(stored.status).toBe(200);
    expect(stored.body).not.toHaveProperty('_source');
    expect(stored.body['fields']).toEqual({ data: ['AAEC'] });
    expect((await raw('GET', '/.fleet-fileds-tohost-data-agent/_doc/f.0?stored_fields=data,_source')).body['_source']).toMatchObject({ bid: 'f' });
    const m = await raw('POST', '/_mget?stored_fields=data', JSON.stringify({ docs: [{ _index: '.fleet-fileds-tohost-data-agent', _id: 'f.0' }] }));
    expect(m.body['docs'][0]).not.toHaveProperty('_source');
  });

  test('compare-and-set checks the primary term too, and is validated as Elasticsearch validates it', async () => {
    const w = await client.index({ index: '.fleet-agents', id: 'cas', document: { active: true } });
    const wrongTerm = await failure(client.index({ index: '.fleet-agents', id: 'cas', document: {}, if_seq_no: w._seq_no!, if_primary_term: 2 }));
    expect(wrongTerm.status).toBe(409);
    expect(wrongTerm.error?.['reason']).toBe(`[cas]: version conflict, required seqNo [${w._seq_no}], primary term [2]. current document has seqNo [${w._seq_no}] and primary term [1]`);
    const missing = await failure(client.index({ index: '.fleet-agents', id: 'nobody', document: {}, if_seq_no: 0, if_primary_term: 1 }));
    expect(missing.error?.['reason']).toBe('[nobody]: version conflict, required seqNo [0], primary term [1]. but no document was found');
    expect((await failure(client.index({ index: '.fleet-agents', id: 'cas', document: {}, if_primary_term: 1 }))).error?.['reason'])
      .toBe('Validation Failed: 1: ifSeqNo is unassigned, but primary term is [1];');
    expect((await raw('PUT', '/.fleet-agents/_create/cas2?if_seq_no=0&if_primary_term=1', '{}')).body['error']['reason'])
      .toContain('create operations do not support compare and set');
    expect((await failure(client.delete({ index: '.fleet-agents', id: 'cas', if_seq_no: w._seq_no! }))).status).toBe(400);
    expect((await failure(client.index({ index: '.fleet-agents', id: 'cas', document: {}, op_type: 'upsert' as never }))).status).toBe(400);
  });

  test('data streams: an index op without an id is a create; by name only creates, through a backing index no new documents', async () => {
    const r = await client.bulk({ operations: [{ index: { _index: '.fleet-actions-results' } }, { '@timestamp': '2030-01-01T00:00:00Z', action_id: 'ds' }] });
    expect(Object.values(r.items[0]!)[0]!.status).toBe(201);
    const backing = Object.values(r.items[0]!)[0]!._index;
    expect((await failure(client.index({ index: '.fleet-actions-results', id: 'x', document: { '@timestamp': 1 } }))).status).toBe(400);
    expect((await failure(client.create({ index: backing, id: 'y', document: { '@timestamp': 1 } }))).error?.['reason']).toContain('targeting backing indices is disallowed');
    expect((await failure(client.update({ index: '.fleet-actions-results', id: 'x', doc: {} }))).error?.['reason']).toBe('only write ops with an op_type of create are allowed in data streams');
  });

  test('bulk action lines and update bodies are parsed strictly: an unknown key fails the whole request', async () => {
    const meta = await raw('POST', '/_bulk', `${JSON.stringify({ update: { _index: '.fleet-agents', _id: 'cas', retry_on_conflicts: 3 } })}\n{"doc":{}}\n`, 'application/x-ndjson');
    expect(meta.status).toBe(400);
    expect(meta.body['error']['reason']).toBe('Action/metadata line [1] contains an unknown parameter [retry_on_conflicts]');
    // Parsed whole before anything runs: the create before the malformed update is not written.
    const body = await raw('POST', '/_bulk', `${JSON.stringify({ create: { _index: '.fleet-agents', _id: 'first' } })}\n{}\n`
      + `${JSON.stringify({ update: { _index: '.fleet-agents', _id: 'cas' } })}\n{"doc":{},"refresh":true}\n`, 'application/x-ndjson');
    expect([body.status, body.body['error']['type']]).toEqual([400, 'x_content_parse_exception']);
    expect((await failure(client.get({ index: '.fleet-agents', id: 'first' }))).status).toBe(404);
    expect((await failure(client.update({ index: '.fleet-agents', id: 'cas', doc: {}, upsert_doc: {} } as never))).status).toBe(400);
    const refresh = await raw('POST', '/_bulk?refresh=yes', `${JSON.stringify({ delete: { _index: '.fleet-agents', _id: 'zz' } })}\n`, 'application/x-ndjson');
    expect(refresh.status).toBe(400);
  });
});

describe('search limits', () => {
  test('from + size beyond index.max_result_window fails the shard (400, the cause as root cause); no shard, no failure', async () => {
    const r = await failure(client.search({ index: '.fleet-agents', from: 9999, size: 2 }));
    expect(r.status).toBe(400);
    expect(r.error).toMatchObject({
      type: 'search_phase_execution_exception', reason: 'all shards failed',
      root_cause: [{ type: 'illegal_argument_exception', reason: expect.stringContaining('Result window is too large, from + size must be less than or equal to: [10000] but was [10001]') }],
      caused_by: { type: 'illegal_argument_exception' },
    });
    expect((await failure(client.search({ index: 'no-such-index', ignore_unavailable: true, from: 9999, size: 2 }))).status).toBe(200);
    expect((await failure(client.search({ index: '.fleet-agents', size: 10000 }))).status).toBe(200);
    expect((await failure(client.search({ index: '.fleet-agents', size: -1 }))).status).toBe(400);
  });

  test('a terms query takes at most 65,536 terms, a top_hits window at most 100', async () => {
    const terms = (n: number): Promise<unknown> => client.search({ index: '.fleet-agents', query: { terms: { policy_id: Array.from({ length: n }, (_, i) => `p${i}`) } } });
    expect((await failure(terms(65_536))).status).toBe(200);
    const over = await failure(terms(65_537));
    expect(over.status).toBe(400);
    expect(over.error?.['root_cause'][0]['reason']).toContain('The number of terms [65537] used in the Terms Query request has exceeded the allowed maximum of [65536]');
    const topHits = await failure(client.search({ index: '.fleet-agents', size: 0, aggs: { p: { terms: { field: 'policy_id' }, aggs: { h: { top_hits: { size: 101 } } } } } }));
    expect(topHits.status).toBe(400);
  });

  test('msearch header lines: unknown keys fail the request; wait_for_checkpoints only on the Fleet endpoint', async () => {
    const lines = (header: Obj): string => `${JSON.stringify(header)}\n{"query":{"match_all":{}}}\n`;
    const plain = await raw('POST', '/_msearch', lines({ index: '.fleet-agents', wait_for_checkpoints: [0] }), 'application/x-ndjson');
    expect([plain.status, plain.body['error']['reason']]).toEqual([400, 'key [wait_for_checkpoints] is not supported in the metadata section']);
    expect((await raw('POST', '/_fleet/_fleet_msearch', lines({ index: '.fleet-agents', wait_for_checkpoints: [0] }), 'application/x-ndjson')).status).toBe(200);
    expect((await raw('POST', '/_msearch', lines({ index: '.fleet-agents', ignore_unavailble: true }), 'application/x-ndjson')).status).toBe(400);
    expect((await raw('POST', '/_msearch', lines({ index: '.fleet-agents', ignore_unavailable: true }), 'application/x-ndjson')).status).toBe(200);
  });

  test('_count takes ignore_unavailable; by-query conflicts is proceed or abort, refresh a boolean', async () => {
    expect((await client.count({ index: 'no-such-index', ignore_unavailable: true })).count).toBe(0);
    expect((await raw('POST', '/.fleet-agents/_delete_by_query?conflicts=ignore', '{"query":{"match_none":{}}}')).status).toBe(400);
    expect((await raw('POST', '/.fleet-agents/_delete_by_query?refresh=yes', '{"query":{"match_none":{}}}')).status).toBe(400);
  });

  test('_update_by_query: a document the mapping refuses is a failure of the answer (its status), even with conflicts=proceed', async () => {
    await client.index({ index: '.fleet-agents', id: 'ubq', document: { policy_id: 'ubq', policy_revision_idx: 1 }, refresh: true });
    const r = await raw('POST', '/.fleet-agents/_update_by_query?conflicts=proceed', JSON.stringify({
      query: { term: { policy_id: 'ubq' } }, script: { source: "ctx._source.policy_revision_idx = 'two'" },
    }));
    expect(r.status).toBe(400);
    expect(r.body).toMatchObject({ updated: 0, failures: [{ id: 'ubq', status: 400, cause: { type: 'document_parsing_exception' } }] });
    expect((await client.get<Obj>({ index: '.fleet-agents', id: 'ubq' }))._source!['policy_revision_idx']).toBe(1);
  });
});

describe('Fleet plugin parameters', () => {
  test('time values need a unit (0 and -1 aside); checkpoints are longs', async () => {
    await agent('g1', { active: true });
    const noUnit = await raw('GET', '/.fleet-agents/_fleet/global_checkpoints?wait_for_advance=true&checkpoints=100&timeout=1000');
    expect([noUnit.status, noUnit.body['error']['type']]).toEqual([400, 'parse_exception']);
    const cp = await raw('GET', '/.fleet-agents/_fleet/global_checkpoints?wait_for_advance=true&checkpoints=abc&timeout=10ms');
    expect([cp.status, cp.body['error']['type']]).toEqual([400, 'number_format_exception']);
    const ok = await raw('GET', '/.fleet-agents/_fleet/global_checkpoints?wait_for_advance=true&checkpoints=100&timeout=10ms');
    expect(ok.body).toMatchObject({ timed_out: true });
  });
});

describe('security APIs for the fleet-server service account (manage_own_api_key)', () => {
  test('reading or invalidating keys needs owner=true (or its own user and realm)', async () => {
    const key = await client.security.createApiKey({ name: 'own-1', role_descriptors: { r: { cluster: [] } } });
    expect((await failure(client.security.getApiKey({ id: key.id }))).status).toBe(403);
    expect((await client.security.getApiKey({ id: key.id, owner: true })).api_keys).toHaveLength(1);
    expect((await client.security.getApiKey({ id: key.id, username: 'elastic/fleet-server', realm_name: '_service_account' })).api_keys).toHaveLength(1);
    expect((await failure(client.security.invalidateApiKey({ ids: [key.id] }))).status).toBe(403);
    expect((await failure(client.security.invalidateApiKey({ ids: [], owner: true }))).error?.['reason']).toBe('Validation Failed: 1: Field [ids] cannot be an empty array;');
  });

  test('owner=true without ids invalidates every key the caller owns', async () => {
    const a = await client.security.createApiKey({ name: 'own-a' });
    const b = await client.security.createApiKey({ name: 'own-b' });
    const r = await client.security.invalidateApiKey({ owner: true });
    expect(r.invalidated_api_keys).toEqual(expect.arrayContaining([a.id, b.id]));
  });

  test('role descriptors are parsed and their privileges validated', async () => {
    const create = (roles: Obj): Promise<unknown> => client.security.createApiKey({ name: 'roles', role_descriptors: roles as never });
    expect((await failure(create({ w: { indices: [{ names: ['logs-*'], privileges: ['auto_configure', 'create_doc', 'indices:data/write/bulk*'] }], cluster: ['monitor'] } }))).status).toBe(200);
    const unknown = await failure(create({ w: { indices: [{ names: ['logs-*'], privileges: ['create_docs'] }] } }));
    expect(unknown.status).toBe(400);
    expect(unknown.error?.['reason']).toContain('unknown index privilege [create_docs]');
    expect((await failure(create({ w: { cluster: ['monitr'] } }))).error?.['reason']).toContain('unknown cluster privilege [monitr]');
    const missing = await failure(create({ w: { indices: [{ names: ['logs-*'] }] } }));
    expect(missing.error).toMatchObject({ type: 'x_content_parse_exception', caused_by: { reason: 'failed to parse indices privileges for role [w]. missing required [privileges] field' } });
    expect((await failure(create({ w: { indexes: [] } }))).status).toBe(400);
    expect((await failure(client.security.bulkUpdateApiKeys({ ids: ['x'], role_descriptors: { w: { cluster: ['nope'] } } }))).status).toBe(400);
  });
});
