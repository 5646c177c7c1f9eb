// What the embedded store's file ports do on disk (the behaviour both stores share is in
// file-store-conformance.test.ts): chunk files and their directories are private, a failed write leaves
// no file, chunks survive a restart, a `:memory:` store's directory goes with it, a file-system fault
// is the store being unavailable (503), reported as a write fault until a write succeeds, a finished
// upload's chunks are never replaced, and directories a crash left without a row are swept.
import { MIGRATIONS } from '../../src/store/sqlite/schema';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import type { JsonObject } from '../../src/store/documents';
import type { UploadRecord } from '../../src/store/file-ports';
import { StoreUnavailableError } from '../../src/store/port';
import { ownerDirName, type BlobDir } from '../../src/store/sqlite/blobs';
import { SqliteDeliveries } from '../../src/store/sqlite/deliveries';
import { SqliteUploads } from '../../src/store/sqlite/uploads';
import { SqliteStore } from '../../src/store/sqlite/store';
import { removeDir, tempDir } from '../support/fleet-server';
import { collect, once, sha256 } from '../support/bytes';




const mode = (p: string): number => statSync(p).mode & 0o777;

let dir: string;
let dbPath: string;
let store: SqliteStore;
beforeEach(() => {
  dir = tempDir('sqlite-files-');
  dbPath = join(dir, 'fleet-server.db');
  store = new SqliteStore(dbPath);
});
afterEach(async () => {
  jest.restoreAllMocks();
  await store.close();
  removeDir(dir);
});

async function newUpload(s: SqliteStore = store, id?: string): Promise<UploadRecord> {
  const agentId = randomUUID();
  const actionId = randomUUID();
  const uploadId = randomUUID();
  const doc: JsonObject = {
    action_id: actionId, agent_id: agentId, src: 'agent', upload_id: uploadId, upload_start: Date.now(),
    file: { name: 'diag.zip', size: 8, ChunkSize: 4, Status: 'AWAITING_UPLOAD' },
  };
  expect(await s.uploads.createUpload('agent', id ?? `${actionId}.${agentId}`, doc)).toBe(true);
  return (await s.uploads.findUpload(uploadId))!;
}

const chunk = (n: number, data: Buffer) => ({ n, last: false, sha2: sha256(data), timestampMs: Date.now() });
const chunkDir = (u: UploadRecord): string => join(dir, 'files', 'uploads', ownerDirName(u.id));

test('chunk files are 0600 and their directories 0700, whatever the umask', async () => {
  const old = process.umask(0);
  try {
    const u = await newUpload();
    await store.uploads.putChunk(u, chunk(0, Buffer.from('abcd')), once(Buffer.from('abcd')));
    for (const d of [join(dir, 'files'), join(dir, 'files', 'uploads'), chunkDir(u)]) expect(mode(d)).toBe(0o700);
    expect(readdirSync(chunkDir(u))).toEqual(['0']);
    expect(mode(join(chunkDir(u), '0'))).toBe(0o600);
  } finally {
    process.umask(old);
  }
});

test('a chunk whose data fails leaves no temporary file, and an earlier copy stands', async () => {
  const u = await newUpload();
  await store.uploads.putChunk(u, chunk(0, Buffer.from('abcd')), once(Buffer.from('abcd')));
  async function* failing(): AsyncIterable<Uint8Array> {
    yield Buffer.from('xy');
    throw new Error('client went away');
  }
  await expect(store.uploads.putChunk(u, chunk(0, Buffer.from('xyzw')), failing())).rejects.toThrow('client went away');
  expect(readdirSync(chunkDir(u))).toEqual(['0']);
  expect(await collect(store.uploads.readChunk(u, 0))).toEqual(Buffer.from('abcd'));
  expect(await store.uploads.listChunks(u)).toEqual([{ n: 0, size: 4, sha2: sha256(Buffer.from('abcd')), last: false }]);
});

test('chunks and deliveries survive closing and reopening the store', async () => {
  const u = await newUpload();
  const data = Buffer.from('abcd');
  await store.uploads.putChunk(u, { n: 0, last: true, sha2: sha256(data), timestampMs: 1 }, once(data));
  const file = Buffer.from('hello, agent');
  const agentId = randomUUID();
  await store.deliveries.publishDeliveryFile(
    { id: 'tool', name: 'tool.bin', mimeType: 'application/octet-stream', size: file.length, sha256: sha256(file), chunkSize: 5, agentIds: [agentId] },
    once(file),
  );
  await store.close();
  store = new SqliteStore(dbPath);
  const again = (await store.uploads.findUpload(u.uploadId))!;
  expect(await store.uploads.listChunks(again)).toEqual([{ n: 0, size: 4, sha2: sha256(data), last: true }]);
  expect(await collect(store.uploads.readChunk(again, 0))).toEqual(data);
  const found = (await store.deliveries.findDeliveryFile('tool', { agentId }))!;
  expect(found.chunks).toHaveLength(3);
  const parts = await Promise.all(found.chunks.map((c) => collect(store.deliveries.readDeliveryChunk(c))));
  expect(Buffer.concat(parts)).toEqual(file);
});

test("a :memory: store keeps chunks in a private temporary directory that goes on close", async () => {
  const mem = new SqliteStore(':memory:');
  const root = (mem as unknown as { blobs: BlobDir }).blobs.root;
  try {
    const u = await newUpload(mem);
    await mem.uploads.putChunk(u, chunk(0, Buffer.from('abcd')), once(Buffer.from('abcd')));
    expect(mode(root)).toBe(0o700);
    expect(existsSync(join(root, 'uploads', ownerDirName(u.id), '0'))).toBe(true);
  } finally {
    await mem.close();
  }
  expect(existsSync(root)).toBe(false);
});

test('an owner id that is not a harmless file name is hashed, never a path', async () => {
  const u = await newUpload(store, '../../escape/x');
  await store.uploads.putChunk(u, chunk(0, Buffer.from('abcd')), once(Buffer.from('abcd')));
  expect(ownerDirName(u.id)).toMatch(/^~[0-9a-f]{64}$/);
  expect(readdirSync(join(dir, 'files', 'uploads'))).toEqual([ownerDirName(u.id)]);
  expect(existsSync(resolve(dir, 'escape'))).toBe(false);
  expect(await collect(store.uploads.readChunk(u, 0))).toEqual(Buffer.from('abcd'));
});

test('a full disk is StoreUnavailableError naming no path, a write fault until a write succeeds, and leaves no file', async () => {
  const faults: (string | undefined)[] = [];
  store.watchWrites((f) => faults.push(f));
  const u = await newUpload();
  // The file system refuses the chunk's bytes as a full disk does. (The module object itself, which the
  // store's compiled code calls through; the ES namespace above is frozen.)
  const fsModule = require('node:fs/promises') as typeof fsp;
  const realOpen = fsModule.open;
  const spy = jest.spyOn(fsModule, 'open').mockImplementation(async (...args: Parameters<typeof fsp.open>) => {
    const fh = await realOpen(...args);
    if (String(args[0]).endsWith('.tmp')) jest.spyOn(fh, 'write').mockRejectedValue(Object.assign(new Error(`ENOSPC: no space left on device, write '${String(args[0])}'`), { code: 'ENOSPC' }));
    return fh;
  });
  const err = await store.uploads.putChunk(u, chunk(0, Buffer.from('abcd')), once(Buffer.from('abcd'))).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(StoreUnavailableError);
  expect((err as StoreUnavailableError).clientMessage).toBe('the embedded store cannot be used: no space left on device');
  expect((err as StoreUnavailableError).clientMessage).not.toContain(dir);
  expect(faults).toEqual([(err as Error).message]);
  expect(readdirSync(chunkDir(u))).toEqual([]);
  expect(await store.uploads.listChunks(u)).toEqual([]);
  spy.mockRestore();

  await store.uploads.putChunk(u, chunk(0, Buffer.from('abcd')), once(Buffer.from('abcd')));
  expect(faults).toEqual([(err as Error).message, undefined]);
});

test('deleting tolerates files already gone; an upload deleted leaves no directory', async () => {
  const u = await newUpload();
  await store.uploads.putChunk(u, chunk(0, Buffer.from('abcd')), once(Buffer.from('abcd')));
  await store.uploads.putChunk(u, chunk(1, Buffer.from('efgh')), once(Buffer.from('efgh')));
  await fsp.unlink(join(chunkDir(u), '0'));
  await store.uploads.deleteChunk(u, 0);
  expect((await store.uploads.listChunks(u)).map((c) => c.n)).toEqual([1]);
  await fsp.rm(chunkDir(u), { recursive: true });
  await store.uploads.deleteUpload(u);
  expect(await store.uploads.findUpload(u.uploadId)).toBeUndefined();
  expect(existsSync(chunkDir(u))).toBe(false);
});

test('a delivery whose data does not match its declared size or hash is refused and leaves nothing', async () => {
  const agentId = randomUUID();
  const data = Buffer.from('0123456789');
  const meta = { id: 'bad', name: 'b', mimeType: 'text/plain', size: data.length, sha256: sha256(data), chunkSize: 4, agentIds: [agentId] };
  await expect(store.deliveries.publishDeliveryFile({ ...meta, size: 9 }, once(data))).rejects.toThrow('declared size');
  await expect(store.deliveries.publishDeliveryFile({ ...meta, size: 11 }, once(data))).rejects.toThrow('10 bytes, 11 declared');
  await expect(store.deliveries.publishDeliveryFile({ ...meta, sha256: 'a'.repeat(64) }, once(data))).rejects.toThrow('SHA-256');
  expect(await store.deliveries.findDeliveryFile('bad', { agentId })).toBeUndefined();
  expect(existsSync(join(dir, 'files', 'deliveries', 'bad'))).toBe(false);
  // Libraries are Kibana-side: the embedded store has none.
  await store.deliveries.publishDeliveryFile(meta, once(data));
  expect(await store.deliveries.findDeliveryFile('bad', { integration: 'endpoint', library: 'x' })).toBeUndefined();
  expect(await store.deliveries.findDeliveryFile('bad', { agentId })).toMatchObject({ size: 10, chunks: ['0:bad', '1:bad', '2:bad'] });
});

test('a database written before the file tables gains them on open, its rows kept', async () => {
  await store.createSecret('kept');
  await store.close();
  // Back to schema version 2 as the previous release left it.
  const db = new DatabaseSync(dbPath);
  db.exec(`DROP TABLE upload_chunks; DROP TABLE uploads; DROP TABLE delivery_targets; DROP TABLE delivery_chunks;
    DROP TABLE delivery_files; DROP TABLE artifacts; DROP TABLE agent_checkins; PRAGMA user_version = 2;`);
  db.close();
  store = new SqliteStore(dbPath);
  const u = await newUpload();
  expect((await store.uploads.listUploads({ agentId: u.agentId, limit: 1 }))[0]!.id).toBe(u.id);
  const db2 = new DatabaseSync(dbPath, { readOnly: true });
  expect((db2.prepare('PRAGMA user_version').get() as { user_version: number }).user_version).toBe(MIGRATIONS.length);
  expect((db2.prepare('SELECT count(*) AS n FROM agent_checkins').get() as { n: number }).n).toBe(0);
  expect((db2.prepare('SELECT count(*) AS n FROM secrets').get() as { n: number }).n).toBe(1);
  db2.close();
});

test('a chunk for a READY, failed or deleted upload is refused, and the chunk file in place is not replaced', async () => {
  for (const status of ['READY', 'UPLOAD_ERROR', 'DELETED']) {
    const u = await newUpload();
    const first = Buffer.from('abcd');
    await store.uploads.putChunk(u, chunk(0, first), once(first));
    if (status === 'DELETED') {
      // No fleet call writes DELETED (Kibana does, upstream): written beside the store, as another process would.
      const db = new DatabaseSync(dbPath);
      db.prepare("UPDATE uploads SET doc = json_set(doc, '$.file.Status', 'DELETED') WHERE id = ?").run(u.id);
      db.close();
    } else {
      expect(await store.uploads.closeUpload(u, status as 'READY' | 'UPLOAD_ERROR')).toBe('closed');
    }
    const late = Buffer.from('wxyz');
    await expect(store.uploads.putChunk(u, chunk(0, late), once(late))).rejects.toThrow(`is ${status}: it takes no more chunks`);
    await expect(store.uploads.putChunk(u, chunk(1, late), once(late))).rejects.toThrow(status);
    expect(await store.uploads.listChunks(u)).toEqual([{ n: 0, size: 4, sha2: sha256(first), last: false }]);
    expect(readdirSync(chunkDir(u))).toEqual(['0']);
    expect(readFileSync(join(chunkDir(u), '0'))).toEqual(first);
  }
});

test('a status change waits for a chunk being placed: the chunk found open is kept whole', async () => {
  const u = await newUpload();
  const data = Buffer.from('abcd');
  // Completion marks the upload READY while the chunk's file is being renamed into place.
  const fsModule = require('node:fs/promises') as typeof fsp;
  const realRename = fsModule.rename;
  let marking: Promise<unknown> | undefined;
  jest.spyOn(fsModule, 'rename').mockImplementation(async (from, to) => {
    marking ??= store.uploads.closeUpload(u, 'READY', { transitHash: 'f'.repeat(64) });
    await new Promise((r) => setImmediate(r));
    return realRename(from, to);
  });
  await store.uploads.putChunk(u, chunk(0, data), once(data));
  await marking;
  expect((await store.uploads.findUpload(u.uploadId))!.status).toBe('READY');
  expect(await store.uploads.listChunks(u)).toEqual([{ n: 0, size: 4, sha2: sha256(data), last: false }]);
  expect(await collect(store.uploads.readChunk(u, 0))).toEqual(data);
});

test('closing an upload compares its chunks in the same turn: a chunk replaced or added since the listing leaves it open', async () => {
  const u = await newUpload();
  const a = Buffer.from('abcd');
  await store.uploads.putChunk(u, chunk(0, a), once(a));
  const listed = await store.uploads.listChunks(u);
  const b = Buffer.from('wxyz');
  await store.uploads.putChunk(u, chunk(0, b), once(b));
  expect(await store.uploads.closeUpload(u, 'READY', { transitHash: 'f'.repeat(64), chunks: listed })).toBe('changed');
  await store.uploads.putChunk(u, chunk(1, b), once(b));
  expect(await store.uploads.closeUpload(u, 'READY', { transitHash: 'f'.repeat(64), chunks: await store.uploads.listChunks(u).then((c) => c.slice(0, 1)) })).toBe('changed');
  expect((await store.uploads.findUpload(u.uploadId))!.status).toBe('AWAITING_UPLOAD');
  expect(await store.uploads.closeUpload(u, 'READY', { transitHash: 'f'.repeat(64), chunks: await store.uploads.listChunks(u) })).toBe('closed');
  expect((await store.uploads.findUpload(u.uploadId))!.status).toBe('READY');
});

describe('directories a crash left without a row', () => {
  const files = (...p: string[]): string => join(dir, 'files', ...p);
  const blobsOf = (s: SqliteStore): BlobDir => (s as unknown as { blobs: BlobDir }).blobs;
  const age = (path: string, ms: number): void => {
    const t = new Date(Date.now() - ms);
    utimesSync(path, t, t);
  };
  const HOUR = 3_600_000;

  test('are removed by the first sweep after a restart, each only once it has settled; owned ones stay', async () => {
    // An upload deleted, and the process gone before its directory (as after a crash between the two).
    const gone = await newUpload();
    const hashedGone = await newUpload(store, 'x/../gone');
    const kept = await newUpload();
    const hashedKept = await newUpload(store, 'x/../kept');
    for (const u of [gone, hashedGone, kept, hashedKept]) await store.uploads.putChunk(u, chunk(0, Buffer.from('abcd')), once(Buffer.from('abcd')));
    // The process is gone before a directory's removal (a delivery's withdrawal before its publish still happens).
    const blobs = blobsOf(store);
    const removeAll = blobs.removeAll.bind(blobs);
    const removals = new Map<string, number>();
    jest.spyOn(blobs, 'removeAll').mockImplementation(async (kind, owner) => {
      const n = (removals.get(owner) ?? 0) + 1;
      removals.set(owner, n);
      if (kind === 'deliveries' && n === 1) return removeAll(kind, owner);
      throw new Error('killed');
    });
    for (const u of [gone, hashedGone]) await expect(store.uploads.deleteUpload(u)).rejects.toThrow('killed');
    // A delivery whose chunks were written, the process gone before its row.
    const file = Buffer.from('0123456789');
    async function* killed(): AsyncIterable<Uint8Array> {
      yield file;
      throw new Error('killed');
    }
    const meta = { name: 'f', mimeType: 'x/y', size: 20, sha256: sha256(file), chunkSize: 4, agentIds: ['a'] };
    await expect(store.deliveries.publishDeliveryFile({ ...meta, id: 'old-file' }, killed())).rejects.toThrow('killed');
    await expect(store.deliveries.publishDeliveryFile({ ...meta, id: 'new-file' }, killed())).rejects.toThrow('killed');
    await store.deliveries.publishDeliveryFile({ ...meta, id: 'published', size: 10 }, once(file));
    jest.restoreAllMocks();
    await store.close();

    store = new SqliteStore(dbPath);
    for (const u of [gone, hashedGone, kept, hashedKept]) age(chunkDir(u), 10 * 60_000);
    age(files('deliveries', 'old-file'), 2 * HOUR);
    age(files('deliveries', 'published'), 2 * HOUR);
    // A delivery's directory this recent may be a publish of the admin CLI under way: it is left.
    age(files('deliveries', 'new-file'), 10 * 60_000);
    const uploads = store.uploads as SqliteUploads;
    const deliveries = store.deliveries as SqliteDeliveries;
    expect(await uploads.sweepOrphans()).toEqual({ removed: 2, examined: 4, truncated: false });
    expect(await deliveries.sweepOrphans()).toEqual({ removed: 1, examined: 3, truncated: false });
    expect(readdirSync(files('uploads')).sort()).toEqual([ownerDirName(kept.id), ownerDirName(hashedKept.id)].sort());
    expect(readdirSync(files('deliveries')).sort()).toEqual(['new-file', 'published']);
    for (const u of [kept, hashedKept]) expect(await collect(store.uploads.readChunk(u, 0))).toEqual(Buffer.from('abcd'));
    const found = (await store.deliveries.findDeliveryFile('published', { agentId: 'a' }))!;
    expect(Buffer.concat(await Promise.all(found.chunks.map((c) => collect(store.deliveries.readDeliveryChunk(c)))))).toEqual(file);
    // Once in a store's life.
    expect(await uploads.sweepOrphans()).toBeUndefined();
    expect(await deliveries.sweepOrphans()).toBeUndefined();
  });

  test('only directories the store names are touched, never through a symlink; a sweep is bounded', async () => {
    const outside = join(dir, 'outside');
    mkdirSync(join(outside, 'inner'), { recursive: true });
    writeFileSync(join(outside, 'inner', '0'), 'keep');
    mkdirSync(files('uploads'), { recursive: true });
    symlinkSync(outside, files('uploads', 'linked.agent'));
    symlinkSync(join(outside, 'inner'), files('uploads', `~${'a'.repeat(64)}`));
    writeFileSync(files('uploads', 'plain-file'), 'keep');
    for (const name of ['lost+found', '.hidden', `~${'a'.repeat(63)}`]) mkdirSync(files('uploads', name));
    // A crash in the middle of an earlier sweep leaves a directory moved aside: the next one removes it.
    mkdirSync(files('uploads', '.swept-0123456789abcdef'));
    for (const name of readdirSync(files('uploads'))) age(files('uploads', name), HOUR);
    const r = await (store.uploads as SqliteUploads).sweepOrphans();
    expect(r).toEqual({ removed: 1, examined: 7, truncated: false });
    expect(readdirSync(files('uploads')).sort()).toEqual(['.hidden', 'linked.agent', 'lost+found', 'plain-file', `~${'a'.repeat(63)}`, `~${'a'.repeat(64)}`].sort());
    expect(readFileSync(join(outside, 'inner', '0'), 'utf8')).toBe('keep');

    for (const name of ['a', 'b', 'c']) {
      mkdirSync(files('deliveries', name), { recursive: true });
      age(files('deliveries', name), HOUR);
    }
    const bounded = await blobsOf(store).sweep('deliveries', { owned: () => false, changedBefore: Date.now(), maxEntries: 2 });
    expect(bounded).toEqual({ removed: 2, examined: 2, truncated: true });
    expect(readdirSync(files('deliveries'))).toHaveLength(1);
  });
});
