// File delivery (GET /api/fleet/file/{id}) in process: a file whose chunks do not make it whole is not
// found (upstream's ErrNoFile) rather than a 200 cut short — but a file whose metadata gives no chunk
// size (Kibana's, an integration's) or a compressed one is streamed in chunk order as upstream streams
// it, and one of size 0 without a length; nothing is sent before the first chunk is
// read, so a store fault there is a 503; `?source=` empty is no source; the Range header as Go reads
// it; and the PGP key file opened without blocking on a FIFO.
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmodSync, closeSync, constants, openSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { FileDeliveryService } from '../../src/fleet/file-delivery';
import { classify, writeError } from '../../src/http/errors';
import { handleFileDelivery } from '../../src/http/handlers/file-delivery';
import { readPgpKey } from '../../src/http/pgp-key';
import { parseRange } from '../../src/http/range';
import type { RequestContext } from '../../src/http/route';
import type { AgentDoc, Hit } from '../../src/store/documents';
import type { EsStore } from '../../src/store/elasticsearch/store';
import { EsDouble } from '../support/es-double/server';
import { removeDir, tempDir } from '../support/fleet-server';
import { InProcessFleet } from '../support/in-process-fleet';
import { closeEsStoreOnDouble, esStoreOnDouble } from '../support/stores';
import { once, pieces, sha256 } from '../support/bytes';
import { code } from '../support/fleet-outcome';

const agentHit = (id: string): Hit<AgentDoc> => ({ _id: id, _source: { namespaces: ['default'] } } as unknown as Hit<AgentDoc>);

describe('on the Elasticsearch adapter (the double)', () => {
  let es: EsDouble;
  let store: EsStore;
  let deliveries: FileDeliveryService;
  beforeAll(async () => {
    ({ es, store } = await esStoreOnDouble());
    deliveries = new FileDeliveryService(store);
  });
  afterEach(() => es.faults.clear());
  afterAll(() => closeEsStoreOnDouble({ es, store }));

  async function call(method: string, path: string, body: unknown): Promise<number> {
    const res = await fetch(`${es.url}${path}`, {
      method, headers: { authorization: `Bearer ${es.serviceToken}`, 'content-type': 'application/json' }, body: JSON.stringify(body),
    });
    await res.arrayBuffer();
    return res.status;
  }

  /** A file of 10 bytes in chunks of 4, for `agent`. */
  async function published(agent: string): Promise<{ id: string; data: Buffer }> {
    const id = randomUUID();
    const data = Buffer.from('0123456789');
    await store.deliveries.publishDeliveryFile({ id, name: 'f.bin', mimeType: 'application/x-test', size: 10, sha256: sha256(data), chunkSize: 4, agentIds: [agent] }, pieces(data, 3));
    return { id, data };
  }

  test('a READY file with no chunks is not found', async () => {
    const id = randomUUID();
    const agent = randomUUID();
    expect(await call('PUT', `/.fleet-fileds-tohost-meta-agent/_create/${id}?refresh=true`, {
      '@timestamp': new Date().toISOString(),
      file: { name: 'f', mime_type: 'x/y', size: 10, ChunkSize: 4, Status: 'READY', Meta: { target_agents: [agent] } },
    })).toBe(201);
    expect(await code(deliveries.open(agentHit(agent), id, undefined, undefined))).toBe('NoFile');
  });

  test('a file missing a chunk in the middle is not found; whole, it is', async () => {
    const agent = randomUUID();
    const { id } = await published(agent);
    expect(await code(deliveries.open(agentHit(agent), id, undefined, undefined))).toBe('ok');
    expect(await call('POST', '/.fleet-fileds-tohost-data-agent/_delete_by_query?refresh=true', { query: { term: { _id: `${id}.1` } } })).toBe(200);
    expect(await code(deliveries.open(agentHit(agent), id, undefined, undefined))).toBe('NoFile');
  });

  /** `use(url)` with the file route served for `agent` (the handler over this service) at `url`. */
  async function serving(agent: string, id: string, use: (url: string) => Promise<void>): Promise<void> {
    const server = http.createServer((req, res) => {
      const ctx = {
        req, res, params: { id }, fleet: { deliveries }, agent: agentHit(agent), config: { server: { timeouts: { writeMs: 10_000 } } },
      } as unknown as RequestContext<'agentKey'>;
      handleFileDelivery(ctx).catch((err: unknown) => writeError(res, classify(err)));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      await use(`http://127.0.0.1:${(server.address() as AddressInfo).port}/api/fleet/file/${id}`);
    } finally {
      await new Promise((r) => server.close(r));
    }
  }

  /** A READY file for `agent` as Kibana writes one: `file` fields as given, chunk documents `parts` (JSON, base64 data). */
  async function kibanaFile(agent: string, file: Record<string, unknown>, parts: Buffer[]): Promise<string> {
    const id = randomUUID();
    expect(await call('PUT', `/.fleet-fileds-tohost-meta-agent/_create/${id}?refresh=true`, {
      '@timestamp': new Date().toISOString(), file: { name: 'f', mime_type: 'x/y', Status: 'READY', Meta: { target_agents: [agent] }, ...file },
    })).toBe(201);
    for (const [n, part] of parts.entries()) {
      const doc: Record<string, unknown> = { '@timestamp': new Date().toISOString(), bid: id, data: part.toString('base64') };
      if (n === parts.length - 1) doc['last'] = true;
      expect(await call('PUT', `/.fleet-fileds-tohost-data-agent/_create/${id}.${n}?refresh=true`, doc)).toBe(201);
    }
    return id;
  }

  test('a file whose metadata names no ChunkSize is served whole from the chunks it has, in order', async () => {
    const agent = randomUUID();
    const data = Buffer.from('0123456789');
    const id = await kibanaFile(agent, { size: 10 }, [data.subarray(0, 4), data.subarray(4, 8), data.subarray(8)]);
    await serving(agent, id, async (url) => {
      const res = await fetch(url);
      expect(res.status).toBe(200);
      // The chunks' size not known, their bytes are sent as they are, without a length they might not match.
      expect(res.headers.get('content-length')).toBeNull();
      expect(Buffer.from(await res.arrayBuffer())).toEqual(data);
      // Its chunks' sizes unknown, a range cannot be located: the whole file, not bytes from elsewhere
      // (old: 206 with the bytes a 4 MiB chunk size put there, none of them 5-7).
      const ranged = await fetch(url, { headers: { range: 'bytes=5-7' } });
      expect(ranged.status).toBe(200);
      expect(ranged.headers.get('accept-ranges')).toBe('none');
      expect(Buffer.from(await ranged.arrayBuffer())).toEqual(data);
    });
    // A gap is still no file.
    const gap = await kibanaFile(agent, { size: 10 }, [data.subarray(0, 4), data.subarray(4, 8), data.subarray(8)]);
    expect(await call('POST', '/.fleet-fileds-tohost-data-agent/_delete_by_query?refresh=true', { query: { term: { _id: `${gap}.1` } } })).toBe(200);
    expect(await code(deliveries.open(agentHit(agent), gap, undefined, undefined))).toBe('NoFile');
  });

  test('the chunk count is checked against the size only where ChunkSize is named and nothing is compressed', async () => {
    const agent = randomUUID();
    const data = Buffer.from('0123456789');
    const threeParts = [data.subarray(0, 4), data.subarray(4, 8), data.subarray(8)];
    // ChunkSize 6 makes 2 chunks of 10 bytes, not 3: not whole.
    expect(await code(deliveries.open(agentHit(agent), await kibanaFile(agent, { size: 10, ChunkSize: 6 }, threeParts), undefined, undefined))).toBe('NoFile');
    // Compressed, the chunks hold other bytes than the size counts: streamed as they are, whole, with no
    // length (old: Content-Length 10 and the body cut, or a reset, where they held more or fewer).
    const packed = await kibanaFile(agent, { size: 10, ChunkSize: 6, Compression: 'br' }, threeParts);
    expect(await code(deliveries.open(agentHit(agent), packed, undefined, undefined))).toBe('ok');
    const longer = await kibanaFile(agent, { size: 5, ChunkSize: 6, Compression: 'br' }, threeParts);
    const shorter = await kibanaFile(agent, { size: 50, Compression: 'br' }, threeParts);
    for (const id of [packed, longer, shorter]) {
      await serving(agent, id, async (url) => {
        const res = await fetch(url);
        expect(res.status).toBe(200);
        expect(res.headers.get('content-length')).toBeNull();
        expect(Buffer.from(await res.arrayBuffer())).toEqual(data);
      });
    }
    expect(await code(deliveries.open(agentHit(agent), await kibanaFile(agent, { size: 10, ChunkSize: 6, Compression: 'none' }, threeParts), undefined, undefined))).toBe('NoFile');
  });

  test('size 0: its chunks\' bytes without a Content-Length, as upstream; no chunk at all is no file', async () => {
    const agent = randomUUID();
    const id = await kibanaFile(agent, { size: 0, ChunkSize: 4 }, [Buffer.from('abc')]);
    await serving(agent, id, async (url) => {
      const res = await fetch(url);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-length')).toBeNull();
      expect(Buffer.from(await res.arrayBuffer()).toString()).toBe('abc');
    });
    expect(await code(deliveries.open(agentHit(agent), await kibanaFile(agent, { size: 0 }, []), undefined, undefined))).toBe('NoFile');
  });

  test('a store fault reading the first chunk is answered 503 (no 200 head goes out first)', async () => {
    const agent = randomUUID();
    const { id, data } = await published(agent);
    await serving(agent, id, async (url) => {
      es.faults.add({ match: 'GET /[^ ]*fleet-fileds-tohost-data-agent[^/]*/_doc/', status: 500, times: 1 });
      const failed = await fetch(url);
      expect(failed.status).toBe(503);
      expect(await failed.json()).toMatchObject({ statusCode: 503, error: 'ServiceUnavailable' });
      const whole = await fetch(url);
      expect(whole.status).toBe(200);
      expect(Buffer.from(await whole.arrayBuffer())).toEqual(data);
      const part = await fetch(url, { headers: { Range: 'bytes=5-8,' } });
      expect(part.status).toBe(206);
      expect(Buffer.from(await part.arrayBuffer())).toEqual(data.subarray(5, 9));
    });
  });
});

describe('on the embedded store', () => {
  let f: InProcessFleet;
  afterEach(async () => { await f?.stop(); });

  test('a chunk number gap or a missing last chunk is not found', async () => {
    f = await InProcessFleet.start();
    const agent = await f.agent((await f.enroll()).id);
    const data = Buffer.from('0123456789');
    await f.store.deliveries.publishDeliveryFile({ id: 'f1', name: 'f', mimeType: 'x/y', size: 10, sha256: sha256(data), chunkSize: 4, agentIds: [agent._id] }, once(data));
    const real = f.store.deliveries.findDeliveryFile.bind(f.store.deliveries);
    for (const keep of [[0, 2], [0, 1], [1, 2]]) {
      f.store.deliveries.findDeliveryFile = async (id, scope) => {
        const file = (await real(id, scope))!;
        return { ...file, chunks: keep.map((i) => file.chunks[i]!), chunkNumbers: keep };
      };
      expect(await code(f.fleet.deliveries.open(agent, 'f1', undefined, undefined))).toBe('NoFile');
    }
    f.store.deliveries.findDeliveryFile = real;
    expect(await code(f.fleet.deliveries.open(agent, 'f1', undefined, undefined))).toBe('ok');
  });

  test('`?source=` empty (or blank) is no source: the agent\'s own file, no product origin needed', async () => {
    f = await InProcessFleet.start();
    const agent = await f.agent((await f.enroll()).id);
    const data = Buffer.from('abc');
    await f.store.deliveries.publishDeliveryFile({ id: 'mine', name: 'f', mimeType: 'x/y', size: 3, sha256: sha256(data), chunkSize: 4, agentIds: [agent._id] }, once(data));
    for (const source of ['', '  ', '\t']) expect(await code(f.fleet.deliveries.open(agent, 'mine', source, undefined))).toBe('ok');
    expect(await code(f.fleet.deliveries.open(agent, 'mine', 'downloads', undefined))).toBe('ClientFileForbidden');
  });
});

describe('Range, as Go reads it', () => {
  test('empty elements are skipped; none at all is the whole file', () => {
    expect(parseRange('bytes=0-1,', 10)).toEqual({ start: 0, end: 1 });
    expect(parseRange('bytes=, 2-3 ,,', 10)).toEqual({ start: 2, end: 3 });
    expect(parseRange('bytes=4 - 5', 10)).toEqual({ start: 4, end: 5 });
    expect(parseRange('bytes=', 10)).toBeUndefined();
    expect(parseRange('bytes=,', 10)).toBeUndefined();
    expect(() => parseRange('bytes=0-1,5-6', 10)).toThrow('Multipart ranges not satisfiable');
    for (const bad of ['bytes=10-', 'bytes=5-1', 'items=0-1', 'bytes=x-y', 'bytes=-0', 'bytes=-']) expect(() => parseRange(bad, 10)).toThrow();
  });
});

describe('the PGP key', () => {
  test('a FIFO in the key\'s place is refused at once; it does not hold a thread waiting for a writer', async () => {
    const dir = tempDir();
    const fifo = join(dir, 'default.pgp');
    try {
      execFileSync('mkfifo', [fifo]);
      chmodSync(fifo, 0o600);
      let timer: NodeJS.Timeout | undefined;
      const outcome = await Promise.race([
        readPgpKey(dir).then(() => 'read', (err: unknown) => (err as { code?: string }).code ?? String(err)),
        new Promise<string>((r) => { timer = setTimeout(() => r('blocked'), 2000); }),
      ]);
      clearTimeout(timer);
      if (outcome === 'blocked') {
        // Let the reader stuck in open() go, so the thread pool is not left one short.
        try { closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK)); } catch { /* no reader */ }
      }
      expect(outcome).toBe('PgpKeyMissing');
    } finally {
      removeDir(dir);
    }
  });
});
