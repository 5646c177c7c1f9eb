// The Elasticsearch file ports write and read the documents upstream Fleet Server and Kibana do, so a
// diagnostics upload lands where Kibana's "Request diagnostics" download reads it: upload metadata and
// CBOR chunk documents, the READY update, integration libraries and Kibana's artifacts, and the double's
// CBOR, stored-field and painless script-field behaviour they rely on.
import { randomBytes, randomUUID } from 'node:crypto';
import { decode } from 'cbor-x/index-no-eval';
import { ChunkEncoder, type ChunkHeader } from '../src/store/elasticsearch/cbor-chunk';
import type { EsStore } from '../src/store/elasticsearch/store';
import type { UploadRecord } from '../src/store/file-ports';
import { StoreBusyError, StoreUnavailableError } from '../src/store/port';
import { encodeCbor } from './support/es-double/cbor';
import { EsDouble } from './support/es-double/server';
import { removeDir, tempDir } from './support/fleet-server';
import { closeEsStoreOnDouble, esStoreOnDouble } from './support/stores';
import { collect, pieces, sha256 } from './support/bytes';

type Obj = Record<string, unknown>;

/** A chunk document from its pieces, as the adapter writes one. */
function encodeChunk(h: ChunkHeader, pieces: Uint8Array[]): Buffer {
  const e = new ChunkEncoder(h, pieces.reduce((n, p) => n + p.length, 0));
  for (const p of pieces) e.push(p);
  return e.finish();
}

let es: EsDouble;
let store: EsStore;

beforeAll(async () => ({ es, store } = await esStoreOnDouble()));
afterAll(() => closeEsStoreOnDouble({ es, store }));




/** A request to the double as any client makes it; JSON or CBOR in and out. */
async function call(method: string, path: string, body?: unknown, opts: { cbor?: boolean; accept?: string } = {}): Promise<{ status: number; body: Obj }> {
  const headers: Record<string, string> = { authorization: `Bearer ${es.serviceToken}` };
  if (body !== undefined) headers['content-type'] = opts.cbor ? 'application/cbor' : 'application/json';
  if (opts.accept) headers['accept'] = opts.accept;
  const payload = body === undefined ? undefined : opts.cbor ? new Uint8Array(encodeCbor(body)) : JSON.stringify(body);
  const res = await fetch(`${es.url}${path}`, { method, headers, ...(payload === undefined ? {} : { body: payload }) });
  const raw = Buffer.from(await res.arrayBuffer());
  const type = res.headers.get('content-type') ?? '';
  return { status: res.status, body: (type.includes('cbor') ? decode(raw) : raw.length ? JSON.parse(raw.toString()) : {}) as Obj };
}

/** The double's stored source of a document, as Elasticsearch holds it after parsing the request. */
function stored(index: string, id: string): Obj | undefined {
  return es.cluster.resolve(index)?.docs.get(id)?.source;
}

async function newUpload(size: number): Promise<UploadRecord> {
  const agentId = randomUUID();
  const actionId = randomUUID();
  const uploadId = randomUUID();
  const now = Date.now();
  const ok = await store.uploads.createUpload('agent', `${actionId}.${agentId}`, {
    action_id: actionId, agent_id: agentId, src: 'agent', upload_id: uploadId, upload_start: now, '@timestamp': now, namespaces: ['default'],
    file: { name: 'diag.zip', mime_type: 'application/zip', size, ChunkSize: 4, Status: 'AWAITING_UPLOAD' },
  });
  expect(ok).toBe(true);
  return (await store.uploads.findUpload(uploadId))!;
}

describe('upload documents as upstream writes them', () => {
  test('metadata: in the fromhost-meta data stream under <action_id>.<agent_id>, found by upload_id', async () => {
    const u = await newUpload(6);
    const r = await call('POST', '/.fleet-fileds-fromhost-meta-*/_search', { query: { term: { upload_id: u.uploadId } } });
    const hits = (r.body['hits'] as { hits: { _index: string; _id: string; _source: Obj }[] }).hits;
    expect(hits).toHaveLength(1);
    expect(hits[0]!._index).toMatch(/^\.ds-\.fleet-fileds-fromhost-meta-agent-/);
    expect(hits[0]!._id).toBe(`${u.actionId}.${u.agentId}`);
    expect(hits[0]!._source).toMatchObject({ upload_id: u.uploadId, file: { Status: 'AWAITING_UPLOAD', ChunkSize: 4 } });
  });

  test('chunks: a CBOR map of exactly @timestamp, last, bid, sha2 and data; the final chunk says last', async () => {
    const u = await newUpload(6);
    const parts = [Buffer.from('abcd'), Buffer.from('ef')];
    for (const n of [0, 1]) {
      await store.uploads.putChunk(u, { n, last: n === 1, sha2: sha256(parts[n]!), timestampMs: 1_700_000_000_123 }, pieces(parts[n]!));
    }
    for (const n of [0, 1]) {
      const doc = stored('.fleet-fileds-fromhost-data-agent', `${u.id}.${n}`)!;
      expect(Object.keys(doc).sort()).toEqual(['@timestamp', 'bid', 'data', 'last', 'sha2']);
      expect(doc['@timestamp']).toBe(1_700_000_000_123);
      expect(doc['last']).toBe(n === 1);
      expect(doc['bid']).toBe(u.id);
      expect(doc['sha2']).toBe(sha256(parts[n]!));
      expect(doc['data']).toBeInstanceOf(Uint8Array);
      expect(Buffer.from(doc['data'] as Uint8Array)).toEqual(parts[n]);
    }
    // The from-host data template does not store `data` (only the to-host one does): a stored-fields
    // read finds no field, and the bytes are read from the source, in CBOR, as Kibana reads them.
    const backing = es.cluster.resolve('.fleet-fileds-fromhost-data-agent')!.name;
    const storedRead = await call('GET', `/${backing}/_doc/${u.id}.1?stored_fields=data&_source=false`, undefined, { accept: 'application/cbor' });
    expect(storedRead.status).toBe(200);
    expect(storedRead.body['found']).toBe(true);
    expect(storedRead.body['_source']).toBeUndefined();
    expect(storedRead.body['fields']).toBeUndefined();
    const r = await call('GET', `/${backing}/_doc/${u.id}.1?_source_includes=data`, undefined, { accept: 'application/cbor' });
    expect(r.status).toBe(200);
    expect(Object.keys(r.body['_source'] as Obj)).toEqual(['data']);
    expect(Buffer.from((r.body['_source'] as { data: Uint8Array }).data)).toEqual(parts[1]);
    expect(await collect(store.uploads.readChunk(u, 1))).toEqual(parts[1]);
  });

  test('the encoder: uint64 timestamp, a 32-bit definite byte string, or an indefinite one (one piece) for the final chunk', () => {
    const head = { timestampMs: 5, bid: 'a.b', sha2: 'ff' };
    const mid = encodeChunk({ ...head, last: false }, [Buffer.from('ab'), Buffer.from('cd')]);
    const fin = encodeChunk({ ...head, last: true }, [Buffer.from('ab'), Buffer.from('c')]);
    expect(mid[0]).toBe(0xa5);
    expect(mid.subarray(12, 21).toString('hex')).toBe('1b0000000000000005');
    expect(mid.subarray(-9).toString('hex')).toBe('5a0000000461626364');
    expect(fin.subarray(-10).toString('hex')).toBe('5f5a00000003616263ff');
    // cbor-x reads the definite form; the double reads both (Jackson does).
    expect(decode(mid)).toMatchObject({ last: false, bid: 'a.b', sha2: 'ff' });
    expect(() => decode(fin)).toThrow(/Indefinite length/);
  });

  test('a chunk replaced by a re-send is the one listed and read; the size comes from the painless script field', async () => {
    const u = await newUpload(8);
    await store.uploads.putChunk(u, { n: 0, last: false, sha2: 'one', timestampMs: Date.now() }, pieces(Buffer.from('wxyz')));
    await store.uploads.putChunk(u, { n: 0, last: false, sha2: 'two', timestampMs: Date.now() }, pieces(Buffer.from('WXYZ')));
    expect(await store.uploads.listChunks(u)).toEqual([{ n: 0, size: 4, sha2: 'two', last: false }]);
    expect((await collect(store.uploads.readChunk(u, 0))).toString()).toBe('WXYZ');
  });

  test('READY: file.Status and transithash.sha256 set on the metadata document by _update_by_query, once', async () => {
    const u = await newUpload(3);
    expect(await store.uploads.closeUpload(u, 'READY', { transitHash: 'a'.repeat(64) })).toBe('closed');
    const doc = stored('.fleet-fileds-fromhost-meta-agent', u.id)!;
    expect(doc['file']).toMatchObject({ Status: 'READY', name: 'diag.zip', ChunkSize: 4 });
    expect(doc['transithash']).toEqual({ sha256: 'a'.repeat(64) });
    expect(await store.uploads.closeUpload(u, 'UPLOAD_ERROR')).toBe('stopped');
    expect((stored('.fleet-fileds-fromhost-meta-agent', u.id)!['file'] as Obj)['Status']).toBe('READY');
    expect(stored('.fleet-fileds-fromhost-meta-agent', u.id)!['transithash']).toEqual({ sha256: 'a'.repeat(64) });
  });

  test('an unsafe upload source never becomes an index name', async () => {
    await expect(store.uploads.createUpload('../x', 'a.b', { '@timestamp': 1 })).rejects.toThrow(/not a valid index name/);
    await expect(store.uploads.createUpload('A*', 'a.b', { '@timestamp': 1 })).rejects.toThrow(/not a valid index name/);
  });
});

describe('deliveries written by Kibana', () => {
  test('an integration library (?source=) is read through _mget and its data index, chunks with or without last', async () => {
    const id = randomUUID();
    const data = randomBytes(10);
    await call('PUT', `/.endpoint-fleetfiles-downloads-meta/_doc/${id}?refresh=true`, {
      file: { name: 'tool', mime_type: 'application/octet-stream', size: 10, ChunkSize: 6, Status: 'READY', hash: { sha256: sha256(data) } },
    });
    // Kibana writes chunks in CBOR; an intermediate chunk has no `last`. One is written as JSON (base64) too.
    await call('PUT', `/.endpoint-fleetfiles-downloads-data/_doc/${id}.1?refresh=true`, { bid: id, last: true, data: data.subarray(6).toString('base64') });
    await call('PUT', `/.endpoint-fleetfiles-downloads-data/_doc/${id}.0?refresh=true`, { bid: id, data: data.subarray(0, 6) }, { cbor: true });
    const file = await store.deliveries.findDeliveryFile(id, { integration: 'endpoint', library: 'downloads' });
    expect(file).toMatchObject({ id, size: 10, chunkSize: 6, sha256: sha256(data), mimeType: 'application/octet-stream' });
    expect(file!.chunks).toHaveLength(2);
    const parts = [];
    for (const c of file!.chunks) parts.push(await collect(store.deliveries.readDeliveryChunk(c)));
    expect(Buffer.concat(parts)).toEqual(data);
    // Not visible to an agent's own lookup, another library, or through an unsafe name.
    expect(await store.deliveries.findDeliveryFile(id, { agentId: randomUUID() })).toBeUndefined();
    expect(await store.deliveries.findDeliveryFile(id, { integration: 'endpoint', library: 'other' })).toBeUndefined();
    await expect(store.deliveries.findDeliveryFile(id, { integration: 'endpoint', library: 'x,.fleet-agents' })).rejects.toThrow(/not a valid index name/);
  });

  test('a published file is stored as Kibana writes it: READY metadata with target agents, chunks by bid', async () => {
    const id = randomUUID();
    const agent = randomUUID();
    const data = randomBytes(5);
    await store.deliveries.publishDeliveryFile({ id, name: 'x.bin', mimeType: 'application/x-x', size: 5, sha256: sha256(data), chunkSize: 4, agentIds: [agent] }, pieces(data, 2));
    expect(stored('.fleet-fileds-tohost-meta-agent', id)!['file']).toMatchObject({
      name: 'x.bin', mime_type: 'application/x-x', size: 5, ChunkSize: 4, hash: { sha256: sha256(data) }, Status: 'READY', Meta: { target_agents: [agent] },
    });
    const c0 = stored('.fleet-fileds-tohost-data-agent', `${id}.0`)!;
    const c1 = stored('.fleet-fileds-tohost-data-agent', `${id}.1`)!;
    expect(c0).toMatchObject({ bid: id });
    expect(c0['last']).toBeUndefined();
    expect(c1).toMatchObject({ bid: id, last: true });
    expect(Buffer.concat([c0['data'] as Uint8Array, c1['data'] as Uint8Array])).toEqual(data);
    // The to-host data template stores `data`: upstream's delivery reads it as a stored field, in CBOR.
    const backing = es.cluster.resolve('.fleet-fileds-tohost-data-agent')!.name;
    const r = await call('GET', `/${backing}/_doc/${id}.1?stored_fields=data&_source=false`, undefined, { accept: 'application/cbor' });
    expect(r.status).toBe(200);
    expect(r.body['_source']).toBeUndefined();
    expect(Buffer.from((r.body['fields'] as { data: Uint8Array[] }).data[0]!)).toEqual(data.subarray(4));
  });
});

test('an artifact written the way Kibana writes it is found by identifier and decoded hash', async () => {
  const body = randomBytes(40);
  const identifier = `endpoint-trustlist-linux-${randomUUID()}`;
  const doc = {
    identifier, compression_algorithm: 'zlib', encryption_algorithm: 'none',
    encoded_sha256: sha256(body), encoded_size: 40, decoded_sha256: 'c'.repeat(64), decoded_size: 90,
    created: new Date().toISOString(), body: body.toString('base64'), package_name: 'endpoint', type: 'trustlist',
    relative_url: `/api/fleet/artifacts/${identifier}/${'c'.repeat(64)}`,
  };
  await call('PUT', `/.fleet-artifacts/_doc/${identifier}-${'c'.repeat(64)}?refresh=wait_for`, doc);
  const found = await store.artifacts.findArtifact(identifier, 'c'.repeat(64));
  expect(found).toEqual({
    identifier, compression_algorithm: 'zlib', encryption_algorithm: 'none', encoded_sha256: sha256(body), encoded_size: 40,
    decoded_sha256: 'c'.repeat(64), decoded_size: 90, created: doc.created, body: doc.body, package_name: 'endpoint',
  });
  expect(Buffer.from(found!.body, 'base64')).toEqual(body);
});

describe('the double: script fields, stored fields, data streams', () => {
  const index = '.fleet-fileds-fromhost-data-scripts';
  beforeAll(async () => {
    const r = await call('PUT', `/${index}/_create/b.0?refresh=true`, { '@timestamp': 1, bid: 'b', last: false, sha2: 'x', data: new Uint8Array([1, 0xff, 3]) }, { cbor: true });
    expect(r.status).toBe(201);
  });

  test('painless script fields run over params._source, with binary values as byte[] (signed bytes)', async () => {
    const r = await call('POST', `/${index}/_search`, {
      _source: false, query: { term: { bid: 'b' } }, fields: ['bid'],
      script_fields: {
        size: { script: { lang: 'painless', source: 'params._source.data.length' } },
        second: { script: { source: 'params._source.data[1] + params.k', params: { k: 10 } } },
      },
    });
    const hit = (r.body['hits'] as { hits: { _source?: unknown; fields: Obj }[] }).hits[0]!;
    expect(hit._source).toBeUndefined();
    expect(hit.fields).toEqual({ bid: ['b'], size: [3], second: [9] });
  });

  test('a script field that fails is the search failure Elasticsearch reports', async () => {
    const r = await call('POST', `/${index}/_search`, { script_fields: { n: { script: { source: 'params._source.bid.length' } } } });
    expect(r.status).toBe(400);
    const err = r.body['error'] as Obj;
    expect(err['type']).toBe('search_phase_execution_exception');
    expect((err['caused_by'] as Obj)['type']).toBe('script_exception');
  });

  test('JSON renders a binary source value as base64; a data stream refuses a delete by id, its backing index takes it', async () => {
    const backing = es.cluster.resolve(index)!.name;
    const got = await call('GET', `/${backing}/_doc/b.0`);
    expect((got.body['_source'] as Obj)['data']).toBe(Buffer.from([1, 0xff, 3]).toString('base64'));
    expect((await call('DELETE', `/${index}/_doc/b.0`)).status).toBe(400);
    expect((await call('DELETE', `/${backing}/_doc/b.0`)).status).toBe(200);
  });
});

test('the double saves binary values as binary (--data): a chunk read after a restart has its bytes', async () => {
  const dir = tempDir();
  try {
    const first = await new EsDouble({ dataDir: dir }).start();
    const token = first.serviceToken;
    const put = await fetch(`${first.url}/.fleet-fileds-fromhost-data-saved/_create/s.0?refresh=true`, {
      method: 'PUT', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/cbor' },
      body: new Uint8Array(encodeChunk({ timestampMs: 1, last: true, bid: 's', sha2: 'x' }, [Buffer.from([7, 8, 9])])),
    });
    expect(put.status).toBe(201);
    await first.stop();
    const second = new EsDouble({ dataDir: dir });
    const doc = second.cluster.resolve('.fleet-fileds-fromhost-data-saved')!.docs.get('s.0')!;
    expect(doc.source['data']).toEqual(new Uint8Array([7, 8, 9]));
  } finally {
    removeDir(dir);
  }
});

describe('faults surface as store errors', () => {
  test('a failing cluster is StoreUnavailableError; rejection that lasts is StoreBusyError', async () => {
    const u = await newUpload(4);
    es.faults.add({ match: 'search', status: 500, times: 1 });
    await expect(store.uploads.findUpload(u.uploadId)).rejects.toBeInstanceOf(StoreUnavailableError);
    es.faults.add({ match: 'PUT /\\.fleet-fileds-fromhost-data-agent/_create/', status: 500, times: 1 });
    await expect(store.uploads.putChunk(u, { n: 0, last: true, sha2: 'x', timestampMs: 1 }, pieces(Buffer.from('abcd')))).rejects.toBeInstanceOf(StoreUnavailableError);
    es.faults.add({ match: 'mget', status: 429 });
    try {
      await expect(store.deliveries.findDeliveryFile('f', { integration: 'endpoint', library: 'downloads' })).rejects.toBeInstanceOf(StoreBusyError);
    } finally {
      es.faults.clear();
    }
  }, 90_000);
});
