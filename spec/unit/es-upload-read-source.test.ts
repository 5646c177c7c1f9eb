// Upload chunks read back through the Elasticsearch adapter as a real cluster serves them: the
// from-host data template maps `data` as a binary field without `store: true`, so only the to-host
// (delivery) chunks can be read with `stored_fields=data`; an upload's bytes come from `_source`.
// The double maps the two families the same way, so these reads fail if the adapter asks for the
// stored field.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { decode } from 'cbor-x/index-no-eval';
import { readVerifiedUpload } from '../../src/fleet/files-admin';
import type { EsStore } from '../../src/store/elasticsearch/store';
import type { UploadRecord } from '../../src/store/file-ports';
import { EsDouble } from '../support/es-double/server';
import { closeEsStoreOnDouble, esStoreOnDouble } from '../support/stores';
import { collect, pieces, sha256 } from '../support/bytes';

let es: EsDouble;
let store: EsStore;
beforeAll(async () => ({ es, store } = await esStoreOnDouble()));
afterAll(() => closeEsStoreOnDouble({ es, store }));

async function get(path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${es.url}${path}`, {
    method: body === undefined ? 'GET' : 'PUT',
    headers: { authorization: `Bearer ${es.serviceToken}`, accept: 'application/cbor', ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const raw = Buffer.from(await res.arrayBuffer());
  return { status: res.status, body: (res.headers.get('content-type')?.includes('cbor') ? decode(raw) : JSON.parse(raw.toString())) as Record<string, unknown> };
}

/** A READY upload of `data` in chunks of `chunkSize`, written through the adapter as the upload API writes it. */
async function readyUpload(data: Buffer, chunkSize: number): Promise<UploadRecord> {
  const agentId = randomUUID();
  const actionId = randomUUID();
  const uploadId = randomUUID();
  const now = Date.now();
  expect(await store.uploads.createUpload('agent', `${actionId}.${agentId}`, {
    action_id: actionId, agent_id: agentId, src: 'agent', upload_id: uploadId, upload_start: now, '@timestamp': now, namespaces: ['default'],
    file: { name: 'diag.zip', mime_type: 'application/zip', size: data.length, ChunkSize: chunkSize, Status: 'AWAITING_UPLOAD', hash: { sha256: sha256(data) } },
  })).toBe(true);
  const u = (await store.uploads.findUpload(uploadId))!;
  const transit = createHash('sha256');
  const count = Math.ceil(data.length / chunkSize);
  for (let n = 0; n < count; n++) {
    const part = data.subarray(n * chunkSize, (n + 1) * chunkSize);
    await store.uploads.putChunk(u, { n, last: n === count - 1, sha2: sha256(part), timestampMs: now }, pieces(part, 5));
    transit.update(createHash('sha256').update(part).digest());
  }
  expect(await store.uploads.closeUpload(u, 'READY', { transitHash: transit.digest('hex') })).toBe('closed');
  return (await store.uploads.findUpload(uploadId))!;
}

test('the double serves an upload chunk as a real cluster does: no stored `data`, the bytes in `_source`', async () => {
  const data = randomBytes(9);
  const u = await readyUpload(data, 9);
  const backing = es.cluster.resolve('.fleet-fileds-fromhost-data-agent')!.name;
  const storedRead = await get(`/${backing}/_doc/${u.id}.0?stored_fields=data&_source=false`);
  expect(storedRead.status).toBe(200);
  expect(storedRead.body['fields']).toBeUndefined();
  const sourceRead = await get(`/${backing}/_doc/${u.id}.0?_source_includes=data`);
  expect(Buffer.from((sourceRead.body['_source'] as { data: Uint8Array }).data)).toEqual(data);
});

test('an upload\'s chunks (the final one an indefinite byte string) read back through the store give the bytes written', async () => {
  const data = randomBytes(23);
  const u = await readyUpload(data, 10);
  const parts: Buffer[] = [];
  for (const c of await store.uploads.listChunks(u)) parts.push(await collect(store.uploads.readChunk(u, c.n)));
  expect(parts.map((p) => p.length)).toEqual([10, 10, 3]);
  expect(Buffer.concat(parts)).toEqual(data);
});

test('files-admin reads and verifies an upload stored in Elasticsearch (the admin CLI\'s `uploads get`)', async () => {
  const data = randomBytes(40);
  const u = await readyUpload(data, 16);
  const read = readVerifiedUpload(store.uploads, u);
  expect(await collect(read.bytes)).toEqual(data);
  expect(read.verified()).toEqual({ size: 40, sha256: sha256(data) });
});

test('a chunk indexed as JSON (data as base64 text) is read from its source too', async () => {
  const agentId = randomUUID();
  const actionId = randomUUID();
  const uploadId = randomUUID();
  const now = Date.now();
  await store.uploads.createUpload('agent', `${actionId}.${agentId}`, {
    action_id: actionId, agent_id: agentId, src: 'agent', upload_id: uploadId, upload_start: now, '@timestamp': now,
    file: { name: 'x', size: 4, ChunkSize: 4, Status: 'AWAITING_UPLOAD' },
  });
  const u = (await store.uploads.findUpload(uploadId))!;
  const put = await get(`/.fleet-fileds-fromhost-data-agent/_create/${u.id}.0?refresh=true`,
    { '@timestamp': now, bid: u.id, last: true, sha2: sha256(Buffer.from('wxyz')), data: Buffer.from('wxyz').toString('base64') });
  expect(put.status).toBe(201);
  expect((await collect(store.uploads.readChunk(u, 0))).toString()).toBe('wxyz');
});
