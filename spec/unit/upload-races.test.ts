// Uploads with two Fleet Servers (two UploadService instances, each with its own upload cache) over one
// store — the embedded one and the Elasticsearch adapter on the double, in process: a chunk re-sent
// after completion never replaces a READY file's chunk; two completions at once (a wrong and a right
// transit hash) never leave a READY upload without its chunks, nor remove a READY upload's chunks; a
// chunk re-sent while completion runs never ends in a READY file its transit hash does not describe.
// And the Elasticsearch adapter's answers to a begin document it refuses.
import pino from 'pino';
import { transitHash, UploadService } from '../../src/fleet/uploads';
import type { AgentDoc, Hit, JsonObject } from '../../src/store/documents';
import type { StoredChunk } from '../../src/store/file-ports';
import type { Store } from '../../src/store/port';
import { SqliteStore } from '../../src/store/sqlite/store';
import { EsDouble } from '../support/es-double/server';
import { esStore } from '../support/stores';
import { collect, once, sha256 } from '../support/bytes';
import { code } from '../support/fleet-outcome';

const log = pino({ level: 'silent' });

interface Fixture {
  store: Store;
  close(): Promise<void>;
}

const KINDS: [string, () => Promise<Fixture>][] = [
  ['sqlite', async () => {
    const store = new SqliteStore(':memory:');
    return { store, close: () => store.close() };
  }],
  ['elasticsearch (double)', async () => {
    const es = await new EsDouble().start();
    const store = esStore([es.url], es.serviceToken);
    await store.ready();
    return { store, close: async () => { await store.close(); await es.stop(); } };
  }],
];

function body(b: Buffer): (max: number) => AsyncIterable<Uint8Array> {
  return (max) => {
    if (b.length > max) throw new Error(`body over ${max}`);
    return once(b);
  };
}

function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

let n = 0;

describe.each(KINDS)('%s store', (_name, make) => {
  let fx: Fixture;
  let one: UploadService;
  let two: UploadService;
  let agent: Hit<AgentDoc>;
  const good = Buffer.from('hello');
  const right = { transithash: { sha256: transitHash([sha256(good)]) } };
  const wrong = { transithash: { sha256: '0'.repeat(64) } };

  beforeAll(async () => {
    fx = await make();
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
  afterAll(async () => {
    await store?.close();
    await es?.stop();
  });

  test('a value of the wrong type for a mapped field is the client\'s 400 BadRequest, not a 500', async () => {
    const uploads = new UploadService(store, { maxFileSize: undefined }, log);
    const agent = { _id: 'agent-map', _source: { namespaces: ['default'] } } as unknown as Hit<AgentDoc>;
    const err = await uploads.begin(agent, {
      action_id: 'mapped', agent_id: agent._id, src: 'agent',
      file: { name: 'd.zip', mime_type: 'application/zip', size: 5, Compression: { not: 'a keyword' } },
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'BadRequest' });
    expect((err as Error).message).toMatch(/^Bad request: the upload document was refused: .*file\.Compression/);
  });
});
