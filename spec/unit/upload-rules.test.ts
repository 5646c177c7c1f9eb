// Upload rules in-process over the embedded store (':memory:', manual clock): what the upload cache
// holds, how begin counts an agent's uploads in progress, the begin checks in upstream's order, and the
// transit hash read as upstream reads it.
import { transitHash, UPLOAD_CHUNK_SIZE } from '../../src/fleet/uploads';
import type { AgentDoc, Hit, JsonObject } from '../../src/store/documents';
import { InProcessFleet } from '../support/in-process-fleet';
import { body, collect, sha256 } from '../support/bytes';
import { code } from '../support/fleet-outcome';

let f: InProcessFleet;
afterEach(async () => { await f?.stop(); });

const beginBody = (agent: Hit<AgentDoc>, size: number, actionId: string, extra: JsonObject = {}): JsonObject => ({
  action_id: actionId, agent_id: agent._id, src: 'agent', file: { name: 'd.zip', mime_type: 'application/zip', size }, ...extra,
});

describe('the upload cache and the in-progress count', () => {
  test('the cache holds a slim record per upload, none of the client document; a refused chunk caches nothing', async () => {
    f = await InProcessFleet.start();
    const agents = await Promise.all([1, 2, 3].map(async () => f.agent((await f.enroll()).id)));
    // A begin body near its 5 MiB limit, most of it a field of the client's own.
    const pad = 'x'.repeat(1024 * 1024);
    const data = Buffer.from('hello');
    const ids: string[] = [];
    for (const agent of agents) {
      for (let i = 0; i < 5; i++) {
        const { upload_id: id } = await f.fleet.uploads.begin(agent, beginBody(agent, data.length, `a${i}`, { pad }));
        await f.fleet.uploads.chunk(agent, id, 0, sha256(data), body(data));
        ids.push(id);
      }
    }
    // 15 uploads cached: a few hundred bytes each, not 1 MiB.
    const weight = f.fleet.uploads.cacheWeight;
    expect(weight).toBeGreaterThan(0);
    expect(weight).toBeLessThan(15 * 1024);
    // Another agent's chunk for an upload not cached yet is refused and leaves the cache as it was.
    const other = await f.agent((await f.enroll()).id);
    const { upload_id: fresh } = await f.fleet.uploads.begin(agents[0]!, beginBody(agents[0]!, data.length, 'fresh', { pad }));
    expect(await code(f.fleet.uploads.chunk(other, fresh, 0, sha256(data), body(data)))).toBe('AgentIdentity');
    expect(f.fleet.uploads.cacheWeight).toBe(weight);
  });

  test('begin counts the uploads in progress without reading a document', async () => {
    f = await InProcessFleet.start();
    const agent = await f.agent((await f.enroll()).id);
    const reads: string[] = [];
    const uploads = f.store.uploads;
    for (const m of ['findUpload', 'listUploads'] as const) {
      const real = (uploads[m] as (...a: unknown[]) => Promise<unknown>).bind(uploads);
      (uploads as unknown as Record<string, unknown>)[m] = (...a: unknown[]) => { reads.push(m); return real(...a); };
    }
    const pad = 'x'.repeat(1024 * 1024);
    for (let i = 0; i < 5; i++) await f.fleet.uploads.begin(agent, beginBody(agent, 1, `a${i}`, { pad }));
    expect(reads).toEqual([]);
    expect(await uploads.countUploads({ agentId: agent._id, inProgressSince: 0, limit: 16 })).toBe(5);
    expect(await uploads.countUploads({ agentId: agent._id, inProgressSince: 0, limit: 3 })).toBe(3);
  });

  test('begins sent at once are counted while under way: 40 at once start 16 uploads, the rest are TooManyUploads', async () => {
    f = await InProcessFleet.start();
    const agent = await f.agent((await f.enroll()).id);
    const other = await f.agent((await f.enroll()).id);
    const results = await Promise.allSettled(Array.from({ length: 40 }, (_, i) => f.fleet.uploads.begin(agent, beginBody(agent, 1, `burst-${i}`))));
    // Old: every begin counted the stored uploads before any was stored, and all 40 started.
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(16);
    for (const r of results) if (r.status === 'rejected') expect(r.reason).toMatchObject({ code: 'TooManyUploads' });
    expect(await f.store.uploads.countUploads({ agentId: agent._id, inProgressSince: 0, limit: 100 })).toBe(16);
    // Counted per agent, and nothing is left counted once the begins are over.
    await expect(f.fleet.uploads.begin(other, beginBody(other, 1, 'other'))).resolves.toHaveProperty('upload_id');
    expect(await code(f.fleet.uploads.begin(agent, beginBody(agent, 1, 'after')))).toBe('TooManyUploads');
  });
});

describe('begin checks, in upstream order', () => {
  test('the required strings before file.size; a size that is not a number is no size', async () => {
    f = await InProcessFleet.start();
    const agent = await f.agent((await f.enroll()).id);
    const begin = (b: JsonObject): Promise<string> => code(f.fleet.uploads.begin(agent, b));
    expect(await begin({ action_id: 'a', agent_id: agent._id, src: 'agent' })).toBe('FieldRequired');
    expect(await begin({ action_id: 'a', agent_id: agent._id, src: 'agent', file: { size: 0 } })).toBe('FieldRequired');
    expect(await begin({ agent_id: agent._id, src: 'agent', file: { name: 'n', mime_type: 'm' } })).toBe('FieldRequired');
    expect(await begin({ action_id: 'a', agent_id: agent._id, src: 'agent', file: { name: 'n', mime_type: 'm' } })).toBe('FileSizeRequired');
    expect(await begin({ action_id: 'a', agent_id: agent._id, src: 'agent', file: { name: 'n', mime_type: 'm', size: '5' } })).toBe('FileSizeRequired');
    expect(await begin({ action_id: 'a', agent_id: agent._id, src: 'agent', file: { name: 'n', mime_type: 'm', size: -1 } })).toBe('InvalidFileSize');
  });

  test('an action_id that would make a chunk document id longer than 512 bytes is a 400', async () => {
    f = await InProcessFleet.start();
    const agent = await f.agent((await f.enroll()).id);
    // `<action_id>.<agent_id>.<n>`: the last chunk of a 3-chunk file is `.2`.
    const room = 512 - Buffer.byteLength(`.${agent._id}.2`);
    const size = 2 * UPLOAD_CHUNK_SIZE + 1;
    expect(await code(f.fleet.uploads.begin(agent, beginBody(agent, size, 'é'.repeat(Math.ceil((room + 1) / 2)))))).toBe('BadRequest');
    expect(await code(f.fleet.uploads.begin(agent, beginBody(agent, size, 'a'.repeat(room + 1))))).toBe('BadRequest');
    expect(await code(f.fleet.uploads.begin(agent, beginBody(agent, size, 'a'.repeat(room))))).toBe('ok');
  });
});

describe('the transit hash, as upstream reads it', () => {
  async function withChunk(): Promise<{ agent: Hit<AgentDoc>; id: string; hash: string }> {
    f = await InProcessFleet.start();
    const agent = await f.agent((await f.enroll()).id);
    const data = Buffer.from('hello');
    const { upload_id: id } = await f.fleet.uploads.begin(agent, beginBody(agent, data.length, 'a1'));
    await f.fleet.uploads.chunk(agent, id, 0, sha256(data), body(data));
    return { agent, id, hash: transitHash([sha256(data)]) };
  }

  test('blank is TransitHashRequired and the chunks stay; padded completes', async () => {
    const { agent, id, hash } = await withChunk();
    for (const blank of ['', '   ', '\t\n']) {
      expect(await code(f.fleet.uploads.complete(agent, id, { transithash: { sha256: blank } }))).toBe('TransitHashRequired');
    }
    expect(await code(f.fleet.uploads.complete(agent, id, { transithash: null } as JsonObject))).toBe('TransitHashRequired');
    const u = (await f.store.uploads.findUpload(id))!;
    expect(u.status).toBe('AWAITING_UPLOAD');
    expect(await f.store.uploads.listChunks(u)).toHaveLength(1);
    expect(await code(f.fleet.uploads.complete(agent, id, { transithash: { sha256: `  ${hash.toUpperCase()}\n` } }))).toBe('ok');
    const ready = (await f.store.uploads.findUpload(id))!;
    expect(ready.status).toBe('READY');
    expect(ready.doc['transithash']).toEqual({ sha256: hash });
    expect(await collect(f.store.uploads.readChunk(ready, 0))).toEqual(Buffer.from('hello'));
  });

  test('a transithash that is not an object, or a sha256 that is not a string, is a decode error (400 BadRequest)', async () => {
    const { agent, id } = await withChunk();
    for (const th of [{ sha256: 5 }, { sha256: ['a'] }, { sha256: {} }, 'abc', ['abc'], 7]) {
      expect(await code(f.fleet.uploads.complete(agent, id, { transithash: th } as JsonObject))).toBe('BadRequest');
    }
    const u = (await f.store.uploads.findUpload(id))!;
    expect(u.status).toBe('AWAITING_UPLOAD');
    expect(await f.store.uploads.listChunks(u)).toHaveLength(1);
  });
});
