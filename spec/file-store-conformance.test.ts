// One behaviour for every store's file ports (uploads, deliveries, artifacts), run against the embedded
// store and the Elasticsearch adapter on the double (and a real cluster when configured).
import { randomBytes, randomUUID } from 'node:crypto';
import type { JsonObject } from '../src/store/documents';
import type { ArtifactDoc, UploadRecord } from '../src/store/file-ports';
import { STORE_KINDS, storeFixture } from './support/stores';
import { collect, pieces, sha256 } from './support/bytes';

const uid = (): string => randomUUID();



function uploadDoc(agentId: string, actionId: string, uploadId: string, size: number, chunkSize: number): JsonObject {
  return {
    action_id: actionId, agent_id: agentId, src: 'agent', upload_id: uploadId, upload_start: Date.now(), '@timestamp': Date.now(),
    namespaces: ['default'],
    file: { name: 'diag.zip', mime_type: 'application/zip', size, ChunkSize: chunkSize, Status: 'AWAITING_UPLOAD' },
    contents: [{ name: 'x.txt' }],
  };
}

describe.each(STORE_KINDS)('%s store: files', (_name, make) => {
  const store = storeFixture(make);

  async function newUpload(size: number, chunkSize: number): Promise<UploadRecord> {
    const agentId = uid();
    const actionId = uid();
    const uploadId = uid();
    const id = `${actionId}.${agentId}`;
    expect(await store.uploads.createUpload('agent', id, uploadDoc(agentId, actionId, uploadId, size, chunkSize))).toBe(true);
    const u = await store.uploads.findUpload(uploadId);
    expect(u).toBeDefined();
    return u!;
  }

  test('uploads: created once, found by upload id with the fields fleet logic reads', async () => {
    const u = await newUpload(10, 4);
    expect(u).toMatchObject({ source: 'agent', size: 10, chunkSize: 4, status: 'AWAITING_UPLOAD', id: `${u.actionId}.${u.agentId}` });
    expect(u.startedMs).toBeGreaterThan(Date.now() - 60_000);
    expect(u.doc['contents']).toEqual([{ name: 'x.txt' }]);
    expect(await store.uploads.createUpload('agent', u.id, uploadDoc(u.agentId, u.actionId, uid(), 10, 4))).toBe(false);
    expect(await store.uploads.findUpload(uid())).toBeUndefined();
    expect((await store.uploads.listUploads({ agentId: u.agentId, limit: 10 })).map((x) => x.uploadId)).toEqual([u.uploadId]);
    expect((await store.uploads.listUploads({ actionId: u.actionId, limit: 10 })).map((x) => x.uploadId)).toEqual([u.uploadId]);
  });

  test('chunks: written in any order, listed with size, sha2 and last; read back; replaced; deleted', async () => {
    const data = randomBytes(10);
    const u = await newUpload(10, 4);
    const parts = [data.subarray(0, 4), data.subarray(4, 8), data.subarray(8)];
    for (const n of [2, 0, 1]) {
      const written = await store.uploads.putChunk(u, { n, last: n === 2, sha2: sha256(parts[n]!), timestampMs: Date.now() }, pieces(parts[n]!, 3));
      expect(written).toBe(parts[n]!.length);
    }
    const chunks = await store.uploads.listChunks(u);
    expect(chunks).toEqual([
      { n: 0, size: 4, sha2: sha256(parts[0]!), last: false },
      { n: 1, size: 4, sha2: sha256(parts[1]!), last: false },
      { n: 2, size: 2, sha2: sha256(parts[2]!), last: true },
    ]);
    expect(Buffer.concat([await collect(store.uploads.readChunk(u, 0)), await collect(store.uploads.readChunk(u, 1)),
      await collect(store.uploads.readChunk(u, 2))])).toEqual(data);
    // A re-sent chunk replaces the first copy.
    const again = Buffer.from('abcd');
    await store.uploads.putChunk(u, { n: 1, last: false, sha2: sha256(again), timestampMs: Date.now() }, pieces(again));
    expect(await collect(store.uploads.readChunk(u, 1))).toEqual(again);
    await store.uploads.deleteChunk(u, 1);
    expect((await store.uploads.listChunks(u)).map((c) => c.n)).toEqual([0, 2]);
    await store.uploads.deleteChunks(u);
    expect(await store.uploads.listChunks(u)).toEqual([]);
  });

  test('a chunk whose data fails part way is not left behind', async () => {
    const u = await newUpload(8, 4);
    async function* failing(): AsyncIterable<Uint8Array> {
      yield Buffer.from('ab');
      throw new Error('client went away');
    }
    await expect(store.uploads.putChunk(u, { n: 0, last: false, sha2: 'x', timestampMs: Date.now() }, failing())).rejects.toThrow('client went away');
    expect(await store.uploads.listChunks(u)).toEqual([]);
  });

  test('uploads in progress of one agent: begun since the given time and not stopped, newest first', async () => {
    const agentId = uid();
    const make = async (startedMs: number, status: string): Promise<string> => {
      const actionId = uid();
      const uploadId = uid();
      const doc = uploadDoc(agentId, actionId, uploadId, 10, 4);
      doc['upload_start'] = startedMs;
      (doc['file'] as JsonObject)['Status'] = status;
      expect(await store.uploads.createUpload('agent', `${actionId}.${agentId}`, doc)).toBe(true);
      return uploadId;
    };
    const now = Date.now();
    const older = await make(now - 3_000, 'AWAITING_UPLOAD');
    const newer = await make(now - 1_000, 'AWAITING_UPLOAD');
    await make(now - 500, 'READY');
    await make(now - 400, 'UPLOAD_ERROR');
    await make(now - 300, 'DELETED');
    await make(now - 10_000, 'AWAITING_UPLOAD');
    await newUpload(10, 4); // another agent's
    const ids = async (since: number, limit = 10): Promise<string[]> =>
      (await store.uploads.listUploads({ agentId, inProgressSince: since, limit })).map((x) => x.uploadId);
    expect(await ids(now - 5_000)).toEqual([newer, older]);
    expect(await ids(now - 2_000)).toEqual([newer]);
    expect(await ids(now - 5_000, 1)).toEqual([newer]);
    expect(await store.uploads.listUploads({ agentId, limit: 10 })).toHaveLength(6);
    // Counted the same way, up to the limit.
    expect(await store.uploads.countUploads({ agentId, inProgressSince: now - 5_000, limit: 16 })).toBe(2);
    expect(await store.uploads.countUploads({ agentId, inProgressSince: now - 2_000, limit: 16 })).toBe(1);
    expect(await store.uploads.countUploads({ agentId, inProgressSince: now - 5_000, limit: 1 })).toBe(1);
    expect(await store.uploads.countUploads({ agentId, limit: 16 })).toBe(6);
    expect(await store.uploads.countUploads({ agentId: uid(), inProgressSince: 0, limit: 16 })).toBe(0);
  });

  test('closing an upload: once only, from an upload still taking chunks', async () => {
    const u = await newUpload(3, 4);
    await store.uploads.putChunk(u, { n: 0, last: true, sha2: sha256(Buffer.from('abc')), timestampMs: Date.now() }, pieces(Buffer.from('abc')));
    const chunks = await store.uploads.listChunks(u);
    expect(await store.uploads.closeUpload(u, 'READY', { transitHash: 'e'.repeat(64), chunks })).toBe('closed');
    // A second completion (a failing one, say) finds it closed and changes nothing.
    expect(await store.uploads.closeUpload(u, 'UPLOAD_ERROR')).toBe('stopped');
    expect(await store.uploads.closeUpload(u, 'READY', { transitHash: 'f'.repeat(64), chunks })).toBe('stopped');
    // The same close again (a request resent after its answer was lost) finds its own write: closed.
    expect(await store.uploads.closeUpload(u, 'READY', { transitHash: 'e'.repeat(64), chunks })).toBe('closed');
    const ready = (await store.uploads.findUpload(u.uploadId))!;
    expect(ready.status).toBe('READY');
    expect(ready.doc['transithash']).toEqual({ sha256: 'e'.repeat(64) });
    // A failure closes it the same way; a gone upload is stopped.
    const failed = await newUpload(3, 4);
    expect(await store.uploads.closeUpload(failed, 'UPLOAD_ERROR')).toBe('closed');
    expect(await store.uploads.closeUpload(failed, 'UPLOAD_ERROR')).toBe('closed');
    expect(await store.uploads.closeUpload(failed, 'READY', { transitHash: 'e'.repeat(64) })).toBe('stopped');
    expect((await store.uploads.findUpload(failed.uploadId))!.status).toBe('UPLOAD_ERROR');
    await store.uploads.deleteUpload(failed);
    expect(await store.uploads.closeUpload(failed, 'READY', { transitHash: 'e'.repeat(64) })).toBe('stopped');
  });

  test('status: READY with its transit hash; delete removes metadata and chunks', async () => {
    const u = await newUpload(3, 4);
    await store.uploads.putChunk(u, { n: 0, last: true, sha2: sha256(Buffer.from('abc')), timestampMs: Date.now() }, pieces(Buffer.from('abc')));
    expect(await store.uploads.closeUpload(u, 'READY', { transitHash: 'f'.repeat(64) })).toBe('closed');
    const ready = await store.uploads.findUpload(u.uploadId);
    expect(ready!.status).toBe('READY');
    expect(ready!.doc['transithash']).toEqual({ sha256: 'f'.repeat(64) });
    expect((ready!.doc['file'] as JsonObject)['Status']).toBe('READY');
    await store.uploads.deleteUpload(ready!);
    expect(await store.uploads.findUpload(u.uploadId)).toBeUndefined();
    expect(await store.uploads.listChunks(u)).toEqual([]);
  });

  test('deliveries: a published file is found only by its target agents, chunk by chunk in order', async () => {
    const data = randomBytes(10_000);
    const id = uid();
    const agent = uid();
    await store.deliveries.publishDeliveryFile(
      { id, name: 'tool.bin', mimeType: 'application/x-test', size: data.length, sha256: sha256(data), chunkSize: 4096, agentIds: [agent, uid()] },
      pieces(data, 1000),
    );
    const file = await store.deliveries.findDeliveryFile(id, { agentId: agent });
    expect(file).toMatchObject({ id, size: 10_000, chunkSize: 4096, mimeType: 'application/x-test', sha256: sha256(data) });
    expect(file!.chunks).toHaveLength(3);
    const parts: Buffer[] = [];
    for (const c of file!.chunks) parts.push(await collect(store.deliveries.readDeliveryChunk(c)));
    expect(parts.map((p) => p.length)).toEqual([4096, 4096, 1808]);
    expect(Buffer.concat(parts)).toEqual(data);
    expect(await store.deliveries.findDeliveryFile(id, { agentId: uid() })).toBeUndefined();
    expect(await store.deliveries.findDeliveryFile(uid(), { agentId: agent })).toBeUndefined();
  });

  test('artifacts: found by identifier and decoded hash only', async () => {
    const body = randomBytes(100);
    const doc: ArtifactDoc = {
      identifier: `endpoint-exceptionlist-${uid()}`, compression_algorithm: 'zlib', encryption_algorithm: 'none',
      encoded_sha256: sha256(body), encoded_size: 100, decoded_sha256: 'd'.repeat(64), decoded_size: 200,
      created: new Date().toISOString(), body: body.toString('base64'), package_name: 'endpoint',
    };
    await store.artifacts.putArtifact(doc);
    expect(await store.artifacts.findArtifact(doc.identifier, doc.decoded_sha256)).toEqual(doc);
    expect(await store.artifacts.findArtifact(doc.identifier, 'e'.repeat(64))).toBeUndefined();
    expect(await store.artifacts.findArtifact('other', doc.decoded_sha256)).toBeUndefined();
  });
});
