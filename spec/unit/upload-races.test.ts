// Uploads with two Fleet Servers (two UploadService instances, each with its own upload cache) over one
// store — the embedded one and the Elasticsearch adapter on the double, in process: a chunk re-sent
// after completion never replaces a READY file's chunk; two completions at once (a wrong and a right
// transit hash) never leave a READY upload without its chunks, nor remove a READY upload's chunks; a
// chunk re-sent while completion runs never ends in a READY file its transit hash does not describe.
// A completion whose update landed but whose answer was lost is still a success (or a failure that
// removes the chunks); conflicts are retried after a refresh, and told to the agent in its words when
// they persist. And the Elasticsearch adapter's answers to a begin document it refuses, and to a 400
// that is the cluster's state rather than the document.
import type { Client } from '@elastic/elasticsearch';
import pino from 'pino';
import { transitHash, UploadService } from '../../src/fleet/uploads';
import { classify, errorBody } from '../../src/http/errors';
import type { AgentDoc, Hit, JsonObject } from '../../src/store/documents';
import { EsUploads } from '../../src/store/elasticsearch/uploads';
import type { StoredChunk, UploadRef } from '../../src/store/file-ports';
import { StoreBusyError, StoreUnavailableError, type Store } from '../../src/store/port';
import { SqliteStore } from '../../src/store/sqlite/store';
import { EsDouble } from '../support/es-double/server';
import { esStore, LOCAL_STORE_KINDS, type StoreUnderTest } from '../support/stores';
import { body, collect, sha256 } from '../support/bytes';
import { code } from '../support/fleet-outcome';

const log = pino({ level: 'silent' });

type Fixture = StoreUnderTest;

function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

let n = 0;

describe.each(LOCAL_STORE_KINDS)('%s store', (_name, make) => {
  let fx: Fixture;
  let one: UploadService;
  let two: UploadService;
  let agent: Hit<AgentDoc>;
  const good = Buffer.from('hello');
  const right = { transithash: { sha256: transitHash([sha256(good)]) } };
  const wrong = { transithash: { sha256: '0'.repeat(64) } };

  beforeAll(async () => {
    fx = await make();
    await fx.store.ready();
    one = new UploadService(fx.store, { maxFileSize: undefined }, log);
    two = new UploadService(fx.store, { maxFileSize: undefined }, log);
  });
  afterAll(() => fx?.close());
  beforeEach(() => {
    agent = { _id: `agent-${++n}`, _source: { namespaces: ['default'] } } as unknown as Hit<AgentDoc>;
  });

  /** An upload of one chunk, sent through `one` (whose cache now says AWAITING_UPLOAD). */
  async function uploaded(): Promise<string> {
    const { upload_id: id } = await one.begin(agent, {
      action_id: `action-${++n}`, agent_id: agent._id, src: 'agent', file: { name: 'd.zip', mime_type: 'application/zip', size: good.length },
    });
    await one.chunk(agent, id, 0, sha256(good), body(good));
    return id;
  }

  /** The upload's status and stored chunks once the dust has settled. */
  async function outcome(id: string): Promise<{ status: string; chunks: StoredChunk[]; transit: unknown }> {
    const u = (await fx.store.uploads.findUpload(id))!;
    return { status: u.status, chunks: await fx.store.uploads.listChunks(u), transit: (u.doc['transithash'] as JsonObject | undefined)?.['sha256'] };
  }

  /** Holds the first listChunks after its answer until `hold` resolves; later calls pass. */
  function holdFirstListing(hold: Promise<unknown>): { listed: Promise<void>; restore(): void } {
    const uploads = fx.store.uploads;
    const real = uploads.listChunks.bind(uploads);
    const listed = deferred();
    let calls = 0;
    uploads.listChunks = async (u) => {
      const r = await real(u);
      if (++calls === 1) {
        listed.resolve();
        await hold;
      }
      return r;
    };
    return { listed: listed.promise, restore: () => { uploads.listChunks = real; } };
  }

  test('a chunk re-sent through a server whose cache still says AWAITING_UPLOAD does not replace a READY file\'s chunk', async () => {
    const id = await uploaded();
    expect(await code(two.complete(agent, id, right))).toBe('ok');
    const other = Buffer.from('jello');
    expect(await code(one.chunk(agent, id, 0, sha256(other), body(other)))).toBe('UploadStopped');
    const u = (await fx.store.uploads.findUpload(id))!;
    expect(u.status).toBe('READY');
    expect(await fx.store.uploads.listChunks(u)).toEqual([{ n: 0, size: 5, sha2: sha256(good), last: true }]);
    expect(await collect(fx.store.uploads.readChunk(u, 0))).toEqual(good);
  });

  test('a failing completion that closes the upload first: the right one that listed the chunks before is refused, not READY', async () => {
    const id = await uploaded();
    const failed = deferred<string>();
    const gate = holdFirstListing(failed.promise);
    try {
      const rightOne = code(one.complete(agent, id, right));
      await gate.listed;
      failed.resolve(await code(two.complete(agent, id, wrong)));
      expect(await failed.promise).toBe('FailValidation');
      expect(await rightOne).toBe('StatusNoUploads');
    } finally {
      gate.restore();
    }
    expect(await outcome(id)).toMatchObject({ status: 'UPLOAD_ERROR', chunks: [] });
  });

  test('a right completion that closes the upload first: the failing one that listed before removes nothing', async () => {
    const id = await uploaded();
    const done = deferred<string>();
    const gate = holdFirstListing(done.promise);
    try {
      const wrongOne = code(two.complete(agent, id, wrong));
      await gate.listed;
      done.resolve(await code(one.complete(agent, id, right)));
      expect(await done.promise).toBe('ok');
      expect(await wrongOne).toBe('StatusNoUploads');
    } finally {
      gate.restore();
    }
    expect(await outcome(id)).toEqual({ status: 'READY', chunks: [{ n: 0, size: 5, sha2: sha256(good), last: true }], transit: right.transithash.sha256 });
  });

  test('wrong and right completions at once: never READY without its chunks', async () => {
    for (let i = 0; i < 3; i++) {
      const id = await uploaded();
      await Promise.all([code(one.complete(agent, id, right)), code(two.complete(agent, id, wrong))]);
      const o = await outcome(id);
      if (o.status === 'READY') expect(o.chunks).toEqual([{ n: 0, size: 5, sha2: sha256(good), last: true }]);
      else expect(o).toMatchObject({ status: 'UPLOAD_ERROR', chunks: [] });
    }
  });
});

describe('sqlite store', () => {
  test('a chunk re-sent between completion\'s listing and READY: the file is never READY with a chunk its transit hash does not describe', async () => {
    const store = new SqliteStore(':memory:');
    try {
      const one = new UploadService(store, { maxFileSize: undefined }, log);
      const two = new UploadService(store, { maxFileSize: undefined }, log);
      const agent = { _id: 'agent-resend', _source: { namespaces: ['default'] } } as unknown as Hit<AgentDoc>;
      const good = Buffer.from('hello');
      const { upload_id: id } = await one.begin(agent, {
        action_id: 'resend', agent_id: agent._id, src: 'agent', file: { name: 'd.zip', mime_type: 'application/zip', size: good.length },
      });
      await one.chunk(agent, id, 0, sha256(good), body(good));
      const other = Buffer.from('jello');
      const real = store.uploads.listChunks.bind(store.uploads);
      let calls = 0;
      store.uploads.listChunks = async (u) => {
        const r = await real(u);
        // The re-send lands after completion listed the chunks.
        if (++calls === 1) await two.chunk(agent, id, 0, sha256(other), body(other));
        return r;
      };
      const answer = await code(one.complete(agent, id, { transithash: { sha256: transitHash([sha256(good)]) } }));
      store.uploads.listChunks = real;
      const u = (await store.uploads.findUpload(id))!;
      const chunks = await store.uploads.listChunks(u);
      if (u.status === 'READY') {
        expect(transitHash(chunks.map((c) => c.sha2))).toBe((u.doc['transithash'] as JsonObject)['sha256']);
      }
      // Checked again, the chunks now hash to something else: the completion fails as upstream's would.
      expect(answer).toBe('FailValidation');
      expect(u.status).toBe('UPLOAD_ERROR');
    } finally {
      await store.close();
    }
  });
});

describe('elasticsearch store: a begin document Elasticsearch refuses', () => {
  let es: EsDouble;
  let store: Store & { close(): Promise<void> };
  beforeAll(async () => {
    es = await new EsDouble().start();
    const s = esStore([es.url], es.serviceToken);
    await s.ready();
    store = s;
  });
  afterEach(() => es.faults.clear());
  afterAll(async () => {
    await store?.close();
    await es?.stop();
  });

  const agent = { _id: 'agent-map', _source: { namespaces: ['default'] } } as unknown as Hit<AgentDoc>;
  const beginBody = (actionId: string, file: JsonObject = {}): JsonObject => ({
    action_id: actionId, agent_id: agent._id, src: 'agent', file: { name: 'd.zip', mime_type: 'application/zip', size: 5, ...file },
  });

  test('a value of the wrong type for a mapped field is the client\'s 400 BadRequest naming the field, without Elasticsearch\'s words', async () => {
    const uploads = new UploadService(store, { maxFileSize: undefined }, log);
    const err = await uploads.begin(agent, beginBody('mapped', { Compression: { not: 'a keyword' } })).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'BadRequest' });
    expect((err as Error).message).toBe('Bad request: the upload document was refused: field [file.Compression] does not fit its mapped type');
  });

  test.each([
    ['index_closed_exception', 'closed'],
    ['illegal_argument_exception', 'pipeline with id [broken] does not exist'],
  ])('any other 400 (%s) is the store\'s fault: 503, no index name told to the agent', async (type, reason) => {
    const uploads = new UploadService(store, { maxFileSize: undefined }, log);
    const index = '.ds-.fleet-fileds-fromhost-meta-agent-2030.01.01-000001';
    es.faults.add({
      match: String.raw`PUT /\.fleet-fileds-fromhost-meta-agent/_create/`, status: 400, times: 1,
      rawBody: JSON.stringify({ error: { root_cause: [{ type, reason, index }], type, reason, index }, status: 400 }),
    });
    const err = await uploads.begin(agent, beginBody(`closed-${type}`)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreUnavailableError);
    const answer = classify(err);
    expect(answer.status).toBe(503);
    expect(JSON.stringify(errorBody(answer))).not.toMatch(/fleet-fileds|closed|pipeline/);
  });
});

describe('elasticsearch store: completion whose update landed but whose answer was lost (a gateway 504)', () => {
  let es: EsDouble;
  let store: Store & { close(): Promise<void> };
  let uploads: UploadService;
  const agent = { _id: 'agent-lost', _source: { namespaces: ['default'] } } as unknown as Hit<AgentDoc>;
  const good = Buffer.from('hello');
  beforeAll(async () => {
    es = await new EsDouble().start();
    const s = esStore([es.url], es.serviceToken);
    await s.ready();
    store = s;
    uploads = new UploadService(store, { maxFileSize: undefined }, log);
  });
  afterEach(() => es.faults.clear());
  afterAll(async () => {
    await store?.close();
    await es?.stop();
  });

  async function uploaded(): Promise<string> {
    const { upload_id: id } = await uploads.begin(agent, {
      action_id: `lost-${++n}`, agent_id: agent._id, src: 'agent', file: { name: 'd.zip', mime_type: 'application/zip', size: good.length },
    });
    await uploads.chunk(agent, id, 0, sha256(good), body(good));
    return id;
  }

  const lostAnswer = (): void => es.faults.add({ match: String.raw`POST /\.fleet-fileds-fromhost-meta-agent/_update_by_query`, status: 504, afterServing: true, times: 1 });

  test('the right transit hash: ok, READY', async () => {
    const id = await uploaded();
    lostAnswer();
    expect(await code(uploads.complete(agent, id, { transithash: { sha256: transitHash([sha256(good)]) } }))).toBe('ok');
    const u = (await store.uploads.findUpload(id))!;
    expect(u.status).toBe('READY');
    expect(await store.uploads.listChunks(u)).toHaveLength(1);
  });

  test('a wrong transit hash: FailValidation, and the chunks are removed', async () => {
    const id = await uploaded();
    lostAnswer();
    expect(await code(uploads.complete(agent, id, { transithash: { sha256: '0'.repeat(64) } }))).toBe('FailValidation');
    const u = (await store.uploads.findUpload(id))!;
    expect(u.status).toBe('UPLOAD_ERROR');
    expect(await store.uploads.listChunks(u)).toEqual([]);
  });
});

describe('elasticsearch adapter: version conflicts closing an upload', () => {
  const ref: UploadRef = { id: 'a.b', source: 'agent', uploadId: 'u', agentId: 'b', actionId: 'a', size: 5, chunkSize: 4, status: 'AWAITING_UPLOAD', startedMs: 0 };

  /** A client whose update-by-query answers `answers` in turn, recording the requests made. */
  function fakeClient(answers: object[]): { client: Client; calls: string[] } {
    const calls: string[] = [];
    const client = {
      updateByQuery: async () => { calls.push('update'); return answers.shift() ?? { updated: 0, version_conflicts: 1 }; },
      indices: { refresh: async () => { calls.push('refresh'); return {}; } },
    } as unknown as Client;
    return { client, calls };
  }

  test('the next attempt follows a refresh of the metadata index, so its search sees the write it lost to', async () => {
    const { client, calls } = fakeClient([{ updated: 0, version_conflicts: 1 }, { updated: 1, version_conflicts: 0 }]);
    expect(await new EsUploads(client).closeUpload(ref, 'READY', { transitHash: 'a'.repeat(64) })).toBe('closed');
    expect(calls).toEqual(['update', 'refresh', 'update']);
  });

  test('conflicts that persist: 429 in words about the upload, not the bulk queue', async () => {
    const { client } = fakeClient([]);
    const err = await new EsUploads(client).closeUpload(ref, 'READY', { transitHash: 'a'.repeat(64) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreBusyError);
    expect(errorBody(classify(err))).toEqual({ statusCode: 429, error: 'TooManyRequests', message: 'the upload is being changed; retry later' });
  });
});

describe('completion that keeps finding its chunks changed', () => {
  test('429 in words about the upload, not the bulk queue', async () => {
    const store = new SqliteStore(':memory:');
    try {
      const uploads = new UploadService(store, { maxFileSize: undefined }, log);
      const agent = { _id: 'agent-busy', _source: { namespaces: ['default'] } } as unknown as Hit<AgentDoc>;
      const good = Buffer.from('hello');
      const { upload_id: id } = await uploads.begin(agent, {
        action_id: 'busy', agent_id: agent._id, src: 'agent', file: { name: 'd.zip', mime_type: 'application/zip', size: good.length },
      });
      await uploads.chunk(agent, id, 0, sha256(good), body(good));
      store.uploads.closeUpload = async () => 'changed';
      const err = await uploads.complete(agent, id, { transithash: { sha256: transitHash([sha256(good)]) } }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StoreBusyError);
      const answer = errorBody(classify(err));
      expect(answer).toMatchObject({ statusCode: 429, error: 'TooManyRequests' });
      expect(answer.message).toMatch(/upload is being changed/);
    } finally {
      await store.close();
    }
  });
});
