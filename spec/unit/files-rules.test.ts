// File rules in-process with a manual clock: the upload window, abandoned-upload clean-up, chunk sizes
// checked as they arrive, a wrong or late chunk never in a finished file, completion's size checks,
// the artifact cache and fetch throttle, and ranged reads across chunks — over the real SQLite adapter
// on ':memory:' (no server, no sleeps).
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MAX_UPLOADS_IN_PROGRESS, transitHash, UPLOAD_CHUNK_SIZE, UPLOAD_WINDOW_MS } from '../../src/fleet/uploads';
import type { AgentDoc, Hit, JsonObject } from '../../src/store/documents';
import type { ArtifactDoc } from '../../src/store/file-ports';
import type { BlobDir } from '../../src/store/sqlite/blobs';
import { esPolicy, InProcessFleet } from '../support/in-process-fleet';
import { body, collect, once, sha256 } from '../support/bytes';
import { code } from '../support/fleet-outcome';

let f: InProcessFleet;
afterEach(async () => { await f?.stop(); });


async function begin(agent: Hit<AgentDoc>, size: number, actionId = 'a1'): Promise<string> {
  const r = await f.fleet.uploads.begin(agent, {
    action_id: actionId, agent_id: agent._id, src: 'agent', file: { name: 'd.zip', mime_type: 'application/zip', size },
  } as JsonObject);
  return r.upload_id;
}

describe('uploads', () => {
  test('chunks and completion are refused once the 24 h window has passed; the abandoned upload is collected', async () => {
    f = await InProcessFleet.start();
    const agent = await f.agent((await f.enroll()).id);
    const data = Buffer.from('hello');
    const id = await begin(agent, data.length);
    await f.fleet.uploads.chunk(agent, id, 0, sha256(data), body(data));
    expect(await f.fleet.uploads.collectAbandoned()).toBe(0);
    f.clock.advance(UPLOAD_WINDOW_MS + 1);
    expect(await code(f.fleet.uploads.chunk(agent, id, 0, sha256(data), body(data)))).toBe('UploadExpired');
    expect(await code(f.fleet.uploads.complete(agent, id, { transithash: { sha256: transitHash([sha256(data)]) } }))).toBe('UploadExpired');
    expect(await f.fleet.uploads.collectAbandoned()).toBe(1);
    expect(await f.store.uploads.findUpload(id)).toBeUndefined();
  });

  test('a READY upload is kept by the clean-up; a failed one is removed', async () => {
    f = await InProcessFleet.start();
    const agent = await f.agent((await f.enroll()).id);
    const data = Buffer.from('x');
    const ready = await begin(agent, 1, 'ready');
    await f.fleet.uploads.chunk(agent, ready, 0, sha256(data), body(data));
    await f.fleet.uploads.complete(agent, ready, { transithash: { sha256: transitHash([sha256(data)]) } });
    const failed = await begin(agent, 1, 'failed');
    await f.fleet.uploads.chunk(agent, failed, 0, sha256(data), body(data));
    expect(await code(f.fleet.uploads.complete(agent, failed, { transithash: { sha256: '0'.repeat(64) } }))).toBe('FailValidation');
    f.clock.advance(UPLOAD_WINDOW_MS + 1);
    expect(await f.fleet.uploads.collectAbandoned()).toBe(1);
    expect((await f.store.uploads.findUpload(ready))!.status).toBe('READY');
    expect(await f.store.uploads.findUpload(failed)).toBeUndefined();
  });

  test('the clean-up reaches the oldest abandoned uploads first, however many READY uploads are newer', async () => {
    f = await InProcessFleet.start();
    const agent = await f.agent((await f.enroll()).id);
    const data = Buffer.from('x');
    const older = await begin(agent, 1, 'abandoned-1');
    f.clock.advance(1000);
    const old = await begin(agent, 1, 'abandoned-2');
    f.clock.advance(1000);
    const ready: string[] = [];
    for (let i = 0; i < 3; i++) {
      const id = await begin(agent, 1, `ready-${i}`);
      await f.fleet.uploads.chunk(agent, id, 0, sha256(data), body(data));
      await f.fleet.uploads.complete(agent, id, { transithash: { sha256: transitHash([sha256(data)]) } });
      ready.push(id);
    }
    f.clock.advance(UPLOAD_WINDOW_MS);
    // A limit smaller than the READY uploads: they are not what it is spent on.
    expect(await f.fleet.uploads.collectAbandoned(1)).toBe(1);
    expect(await f.store.uploads.findUpload(older)).toBeUndefined();
    expect(await f.store.uploads.findUpload(old)).toBeDefined();
    expect(await f.fleet.uploads.collectAbandoned(3)).toBe(1);
    expect(await f.store.uploads.findUpload(old)).toBeUndefined();
    for (const id of ready) expect((await f.store.uploads.findUpload(id))!.status).toBe('READY');
  });

  test('a chunk whose bytes do not match X-Chunk-SHA2 is never listed: a completion as it ends cannot count it', async () => {
    f = await InProcessFleet.start();
    const agent = await f.agent((await f.enroll()).id);
    const id = await begin(agent, 5);
    const claimed = sha256(Buffer.from('hello'));
    // The agent's completion arrives just as the store is done with the chunk (before the chunk call answers).
    const put = f.store.uploads.putChunk.bind(f.store.uploads);
    let completion: string | undefined;
    f.store.uploads.putChunk = async (u, c, d) => {
      try {
        return await put(u, c, d);
      } finally {
        completion = await code(f.fleet.uploads.complete(agent, id, { transithash: { sha256: transitHash([claimed]) } }));
      }
    };
    expect(await code(f.fleet.uploads.chunk(agent, id, 0, claimed, body(Buffer.from('jello'))))).toBe('HashMismatch');
    expect(completion).toBe('MissingChunks');
    const u = (await f.store.uploads.findUpload(id))!;
    expect(u.status).toBe('AWAITING_UPLOAD');
    expect(await f.store.uploads.listChunks(u)).toEqual([]);
  });

  test('a wrong re-send of a chunk leaves the earlier copy in place', async () => {
    f = await InProcessFleet.start();
    const agent = await f.agent((await f.enroll()).id);
    const good = Buffer.from('hello');
    const id = await begin(agent, 5);
    await f.fleet.uploads.chunk(agent, id, 0, sha256(good), body(good));
    expect(await code(f.fleet.uploads.chunk(agent, id, 0, sha256(good), body(Buffer.from('jello'))))).toBe('HashMismatch');
    const u = (await f.store.uploads.findUpload(id))!;
    expect(await f.store.uploads.listChunks(u)).toEqual([{ n: 0, size: 5, sha2: sha256(good), last: true }]);
    expect(await collect(f.store.uploads.readChunk(u, 0))).toEqual(good);
    expect(await code(f.fleet.uploads.complete(agent, id, { transithash: { sha256: transitHash([sha256(good)]) } }))).toBe('ok');
  });

  test('a re-sent chunk still streaming when the upload completes is refused (ErrUploadStopped); the READY file is unchanged', async () => {
    f = await InProcessFleet.start();
    const agent = await f.agent((await f.enroll()).id);
    const good = Buffer.from('hello');
    const id = await begin(agent, 5);
    await f.fleet.uploads.chunk(agent, id, 0, sha256(good), body(good));
    // A re-send with bytes of its own (and their hash), held until the upload is READY.
    const again = Buffer.from('jello');
    let streaming!: () => void;
    const started = new Promise<void>((r) => { streaming = r; });
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    const resend = code(f.fleet.uploads.chunk(agent, id, 0, sha256(again), () => (async function* () {
      streaming();
      await gate;
      yield again;
    })()));
    await started;
    expect(await code(f.fleet.uploads.complete(agent, id, { transithash: { sha256: transitHash([sha256(good)]) } }))).toBe('ok');
    release();
    expect(await resend).toBe('UploadStopped');
    const u = (await f.store.uploads.findUpload(id))!;
    expect(u.status).toBe('READY');
    expect(await f.store.uploads.listChunks(u)).toEqual([{ n: 0, size: 5, sha2: sha256(good), last: true }]);
    expect(await collect(f.store.uploads.readChunk(u, 0))).toEqual(good);
  });

  test('the first clean-up removes chunk directories no row owns (a crash between a row and its files); later ones do not sweep', async () => {
    f = await InProcessFleet.start();
    const agent = await f.agent((await f.enroll()).id);
    const data = Buffer.from('x');
    const id = await begin(agent, 1);
    await f.fleet.uploads.chunk(agent, id, 0, sha256(data), body(data));
    const root = (f.store as unknown as { blobs: BlobDir }).blobs.root;
    const orphan = (kind: string, name: string): string => {
      const d = join(root, kind, name);
      mkdirSync(d, { recursive: true });
      writeFileSync(join(d, '0'), 'left');
      const past = new Date(Date.now() - 2 * 3_600_000);
      utimesSync(d, past, past);
      return d;
    };
    const lost = [orphan('uploads', 'a1.gone-agent'), orphan('deliveries', 'gone-file')];
    expect(await f.fleet.uploads.collectAbandoned()).toBe(0);
    for (const d of lost) expect(existsSync(d)).toBe(false);
    const u = (await f.store.uploads.findUpload(id))!;
    expect(await collect(f.store.uploads.readChunk(u, 0))).toEqual(data);
    const later = orphan('uploads', 'a2.gone-agent');
    await f.fleet.uploads.collectAbandoned();
    expect(existsSync(later)).toBe(true);
  });

  test('each chunk is bounded by the size it must have; a short non-final chunk fails completion', async () => {
    f = await InProcessFleet.start();
    const agent = await f.agent((await f.enroll()).id);
    const size = UPLOAD_CHUNK_SIZE + 3;
    const id = await begin(agent, size);
    const tail = Buffer.from('abcd');
    await expect(f.fleet.uploads.chunk(agent, id, 1, sha256(tail), body(tail))).rejects.toThrow('body over 3');
    const short = Buffer.from('short');
    await f.fleet.uploads.chunk(agent, id, 0, sha256(short), body(short));
    const last = Buffer.from('xyz');
    await f.fleet.uploads.chunk(agent, id, 1, sha256(last), body(last));
    const claimed = transitHash([sha256(short), sha256(last)]);
    expect(await code(f.fleet.uploads.complete(agent, id, { transithash: { sha256: claimed } }))).toBe('FailValidation');
    expect((await f.store.uploads.findUpload(id))!.status).toBe('UPLOAD_ERROR');
    expect(await f.store.uploads.listChunks((await f.store.uploads.findUpload(id))!)).toEqual([]);
  });

  test('one agent has at most 16 uploads in progress: a finished or expired one frees its place; other agents are not held', async () => {
    f = await InProcessFleet.start();
    const agent = await f.agent((await f.enroll()).id);
    const other = await f.agent((await f.enroll()).id);
    const ids: string[] = [];
    for (let i = 0; i < MAX_UPLOADS_IN_PROGRESS; i++) ids.push(await begin(agent, 1, `a${i}`));
    expect(MAX_UPLOADS_IN_PROGRESS).toBe(16);
    expect(await code(begin(agent, 1, 'one-more'))).toBe('TooManyUploads');
    expect(await code(begin(other, 1, 'one-more'))).toBe('ok');
    const data = Buffer.from('x');
    await f.fleet.uploads.chunk(agent, ids[0]!, 0, sha256(data), body(data));
    await f.fleet.uploads.complete(agent, ids[0]!, { transithash: { sha256: transitHash([sha256(data)]) } });
    expect(await code(begin(agent, 1, 'one-more'))).toBe('ok');
    expect(await code(begin(agent, 1, 'and-another'))).toBe('TooManyUploads');
    f.clock.advance(UPLOAD_WINDOW_MS + 1);
    expect(await code(begin(agent, 1, 'after-a-day'))).toBe('ok');
  });

  test('uploads disabled (max_file_storage_size 0), and a size over the limit', async () => {
    f = await InProcessFleet.start(esPolicy('p1'), { limits: { max_file_storage_size: 0 } });
    const agent = await f.agent((await f.enroll()).id);
    expect(await code(begin(agent, 10))).toBe('FileFeatureDisabled');
    await f.stop();
    f = await InProcessFleet.start(esPolicy('p1'), { limits: { max_file_storage_size: '1KiB' } });
    const a2 = await f.agent((await f.enroll()).id);
    expect(await code(begin(a2, 1025))).toBe('FileSizeTooLarge');
    expect(await code(begin(a2, 1024))).toBe('ok');
  });
});

describe('artifacts', () => {
  function artifact(id: string): { doc: ArtifactDoc; decoded: string } {
    const encoded = randomBytes(64);
    const decoded = sha256(Buffer.from(`decoded ${id}`));
    return {
      decoded,
      doc: {
        identifier: id, compression_algorithm: 'zlib', encryption_algorithm: 'none', encoded_sha256: sha256(encoded),
        encoded_size: 64, decoded_sha256: decoded, decoded_size: 10, created: new Date().toISOString(), body: encoded.toString('base64'),
      },
    };
  }
  const manifestPolicy = (arts: { doc: ArtifactDoc }[]) => esPolicy('p1', {
    inputs: [{ id: 'e', type: 'endpoint', artifact_manifest: { artifacts: Object.fromEntries(arts.map((a) => [a.doc.identifier, { decoded_sha256: a.doc.decoded_sha256 }])) } }],
  });

  test('cached for ttl_artifact: a second request reads no store; after the TTL it is read again', async () => {
    const a = artifact('list-a');
    f = await InProcessFleet.start(manifestPolicy([a]));
    await f.store.artifacts.putArtifact(a.doc);
    const agent = await f.agent((await f.enroll()).id);
    const bytes = await f.fleet.artifacts.get(agent, a.doc.identifier, a.decoded);
    expect(bytes.toString('base64')).toBe(a.doc.body);
    await f.fleet.artifacts.get(agent, a.doc.identifier, a.decoded);
    expect(f.fleet.artifacts.stats).toMatchObject({ fetches: 1, hits: 1 });
    f.clock.advance(24 * 3600_000 + 1);
    await f.fleet.artifacts.get(agent, a.doc.identifier, a.decoded);
    expect(f.fleet.artifacts.stats.fetches).toBe(2);
  });

  test('concurrent requests for one artifact share a fetch; more than 8 distinct fetches at once are throttled', async () => {
    const arts = Array.from({ length: 10 }, (_, i) => artifact(`list-${i}`));
    f = await InProcessFleet.start(manifestPolicy(arts));
    for (const a of arts) await f.store.artifacts.putArtifact(a.doc);
    const agent = await f.agent((await f.enroll()).id);
    await f.fleet.policies.latest('p1');
    const same = await Promise.all([1, 2, 3].map(() => f.fleet.artifacts.get(agent, arts[0]!.doc.identifier, arts[0]!.decoded)));
    expect(new Set(same.map((b) => b.toString('hex'))).size).toBe(1);
    expect(f.fleet.artifacts.stats.fetches).toBe(1);
    // Store reads held until all nine requests are in: the throttle sees eight fetches in flight.
    let open!: () => void;
    const gate = new Promise<void>((r) => { open = r; });
    const find = f.store.artifacts.findArtifact.bind(f.store.artifacts);
    f.store.artifacts.findArtifact = async (id, sha) => { await gate; return find(id, sha); };
    const pending = arts.slice(1).map((a) => code(f.fleet.artifacts.get(agent, a.doc.identifier, a.decoded)));
    await new Promise((r) => setImmediate(r));
    open();
    const results = await Promise.all(pending);
    expect(results.filter((r) => r === 'ArtifactThrottled')).toHaveLength(1);
    expect(results.filter((r) => r === 'ok')).toHaveLength(8);
  });

  test('an artifact whose bytes do not match its encoded hash is refused, not served', async () => {
    const a = artifact('tampered');
    f = await InProcessFleet.start(manifestPolicy([a]));
    await f.store.artifacts.putArtifact({ ...a.doc, body: randomBytes(64).toString('base64') });
    const agent = await f.agent((await f.enroll()).id);
    expect(await code(f.fleet.artifacts.get(agent, a.doc.identifier, a.decoded))).toBe('ArtifactCorrupted');
  });
});

describe('file delivery', () => {
  test('ranged reads return exactly the bytes asked for, across chunk boundaries', async () => {
    f = await InProcessFleet.start();
    const agent = await f.agent((await f.enroll()).id);
    const data = randomBytes(10_000);
    await f.store.deliveries.publishDeliveryFile({ id: 'f1', name: 'f', mimeType: 'x/y', size: data.length, sha256: sha256(data), chunkSize: 1000, agentIds: [agent._id] }, once(data));
    const file = await f.fleet.deliveries.open(agent, 'f1', undefined, undefined);
    const read = async (start?: number, end?: number): Promise<Buffer> => {
      const parts: Buffer[] = [];
      for await (const p of f.fleet.deliveries.read(file, start === undefined ? undefined : { start, end: end! })) parts.push(Buffer.from(p));
      return Buffer.concat(parts);
    };
    expect(await read()).toEqual(data);
    for (const [s, e] of [[0, 0], [999, 1000], [1500, 4501], [9999, 9999], [0, 9999]] as const) expect(await read(s, e)).toEqual(data.subarray(s, e + 1));
  });
});
