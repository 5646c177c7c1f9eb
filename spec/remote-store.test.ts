// The store proxy's own behaviour, beyond what the conformance suites check through it: store errors
// keep their class and client message, an aborted wait cancels the owner's, a reader that stops early
// stops the owner's stream, write faults are pushed, and a lost owner means StoreUnavailableError until
// the client has reconnected by itself. The owner here is a stand-in store (the server serves any).
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { statSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { serialize } from 'node:v8';
import pino from 'pino';
import { NotFoundError, StoreBusyError, StoreUnavailableError, type Store, type WriteFaultListener } from '../src/store/port';
import { connectRemoteStore } from '../src/store/remote/client';
import { withLocalReads } from '../src/store/remote/local-reads';
import { serveStore, type StoreServer } from '../src/store/remote/server';
import { CheckinReads } from '../src/store/sqlite/check-in-reads';
import { resolveSecretBox } from '../src/store/sqlite/secret-box';
import { SqliteStore } from '../src/store/sqlite/store';
import { FramedSocket, type Frame } from '../src/store/remote/wire';
import { removeDir, tempDir } from './support/fleet-server';

const silent = pino({ level: 'silent' });

/** A stand-in owner: a few port methods, and what it saw. */
function standIn() {
  const seen = { aborted: 0, streamClosed: 0, closed: 0, faults: new Set<WriteFaultListener>() };
  const owner = {
    kind: 'sqlite',
    traits: { remoteApiKeys: false, filesExpire: false },
    async getAgent(id: string) {
      if (id === 'busy') throw new StoreBusyError('queue full', { clientMessage: 'try later' });
      if (id === 'down') throw new StoreUnavailableError('disk full: /x/fleet-server.db', { clientMessage: 'the embedded store cannot be used: database or disk is full' });
      return { _id: id, _source: { at: new Date(0), bytes: new Uint8Array([1, 2, 3]), gone: undefined } };
    },
    async close() {
      seen.closed++;
    },
    watchWrites(fn: WriteFaultListener) {
      seen.faults.add(fn);
      return () => seen.faults.delete(fn);
    },
    policyChanges: {
      async checkpoint() {
        return 7;
      },
      next(_after: number, _timeout: number, signal: AbortSignal) {
        return new Promise((_resolve, reject) => signal.addEventListener('abort', () => {
          seen.aborted++;
          reject(signal.reason);
        }));
      },
    },
    uploads: {
      async *readChunk() {
        try {
          for (let i = 0; ; i++) yield Buffer.alloc(4, i);
        } finally {
          seen.streamClosed++;
        }
      },
      async putChunk(_u: unknown, c: { n: number }, data: AsyncIterable<Uint8Array>) {
        if (c.n < 0) return 0; // answers without reading
        let n = 0;
        for await (const piece of data) n += piece.length;
        if (n === 0) throw new NotFoundError('upload u1 not found');
        return n;
      },
    },
  };
  return { owner: owner as unknown as Store, seen };
}

async function until(ok: () => Promise<boolean> | boolean, what: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (await ok()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

let dir: string;
let server: StoreServer;
let path: string;
const { owner, seen } = standIn();

beforeEach(async () => {
  dir = tempDir();
  path = join(dir, 'store.sock');
  server = await serveStore(owner, path, silent);
});
afterEach(async () => {
  await server.close();
  removeDir(dir);
});

test('calls, values and errors cross as in one process; kind and traits come with the hello; the socket is 0600', async () => {
  expect(statSync(path).mode & 0o777).toBe(0o600);
  const store = await connectRemoteStore(path);
  expect(store.kind).toBe('sqlite');
  expect(store.traits).toEqual({ remoteApiKeys: false, filesExpire: false });
  // Not a thenable: awaiting the store gives the store.
  expect(await Promise.resolve(store)).toBe(store);
  expect(store.apiKeysFor({ hosts: ['https://remote:9200'] })).toBe(store);
  const hit = await store.getAgent('a1');
  expect(hit).toEqual({ _id: 'a1', _source: { at: new Date(0), bytes: Buffer.from([1, 2, 3]), gone: undefined } });
  expect(await store.policyChanges.checkpoint()).toBe(7);

  const busy = await store.getAgent('busy').catch((e: unknown) => e);
  expect(busy).toBeInstanceOf(StoreBusyError);
  expect(busy).toMatchObject({ message: 'queue full', clientMessage: 'try later' });
  const down = await store.getAgent('down').catch((e: unknown) => e);
  expect(down).toBeInstanceOf(StoreUnavailableError);
  expect((down as StoreUnavailableError).clientMessage).toContain('database or disk is full');
  const missing = await store.uploads.putChunk({} as never, {} as never, (async function* () {})()).catch((e: unknown) => e);
  expect(missing).toBeInstanceOf(NotFoundError);
  expect(await store.findAction('x').catch((e: Error) => e.message)).toMatch(/no method findAction/);
  await store.close();
  // The client's close ends its connection only.
  expect(seen.closed).toBe(0);
});

test('streams: an argument is pulled piece by piece and its own error comes back as itself; a reader stopping early stops the owner', async () => {
  const store = await connectRemoteStore(path);
  async function* pieces(fail?: Error): AsyncIterable<Uint8Array> {
    yield Buffer.alloc(1000);
    yield Buffer.alloc(24);
    if (fail) throw fail;
  }
  expect(await store.uploads.putChunk({} as never, {} as never, pieces())).toBe(1024);
  const tooLong = Object.assign(new Error('body too large'), { status: 413 });
  await expect(store.uploads.putChunk({} as never, {} as never, pieces(tooLong))).rejects.toBe(tooLong);

  // An argument the owner answers without reading is let go once the call is answered.
  let finished = false;
  async function* unread(): AsyncIterable<Uint8Array> {
    try {
      yield Buffer.alloc(1);
    } finally {
      finished = true;
    }
  }
  const body = unread();
  await body[Symbol.asyncIterator]().next();
  expect(await store.uploads.putChunk({} as never, { n: -1 } as never, body)).toBe(0);
  await until(() => finished, 'the unread argument let go');

  const before = seen.streamClosed;
  const got: number[] = [];
  for await (const piece of store.uploads.readChunk({} as never, 0)) {
    got.push(piece[0]!);
    if (got.length === 3) break;
  }
  expect(got).toEqual([0, 1, 2]);
  await until(() => seen.streamClosed === before + 1, 'the owner\'s stream closed');
  await store.close();
});

test('an aborted feed wait rejects at once with its reason and cancels the owner\'s wait', async () => {
  const store = await connectRemoteStore(path);
  const ac = new AbortController();
  const waiting = store.policyChanges.next(0, 60_000, ac.signal);
  const before = seen.aborted;
  const reason = new Error('stopping');
  ac.abort(reason);
  await expect(waiting).rejects.toBe(reason);
  await until(() => seen.aborted === before + 1, 'the owner\'s wait cancelled');
  await store.close();
});

test('write faults are pushed; a lost owner fails calls with StoreUnavailableError until the client reconnects by itself', async () => {
  const store = await connectRemoteStore(path);
  const heard: (string | undefined)[] = [];
  store.watchWrites!((f) => heard.push(f));
  await until(() => seen.faults.size === 1, 'the subscription');
  for (const fn of seen.faults) fn('disk full');
  await until(() => heard.length === 1, 'the fault');
  expect(heard).toEqual(['disk full']);
  for (const fn of seen.faults) fn(undefined);
  await until(() => heard.length === 2, 'the recovery');

  const held = store.policyChanges.next(0, 60_000, new AbortController().signal);
  await server.close();
  await expect(held).rejects.toBeInstanceOf(StoreUnavailableError);
  await expect(store.getAgent('a1')).rejects.toBeInstanceOf(StoreUnavailableError);
  expect(heard[2]).toMatch(/store owner is not reachable/);

  server = await serveStore(owner, path, silent);
  await until(async () => (await store.getAgent('a1').then(() => true, () => false)), 'the reconnection');
  expect(heard[heard.length - 1]).toBeUndefined();
  await store.close();
});

test('a worker that connects while the owner has a write fault hears it (the fault comes after the hello)', async () => {
  const faulty = { ...(owner as object), watchWrites: (fn: WriteFaultListener) => {
    // As SqliteStore does: the current fault at once.
    fn('checkpoints stopped after the database file failed to flush');
    return () => undefined;
  } } as unknown as Store;
  const faultyPath = join(dir, 'faulty.sock');
  const faultyServer = await serveStore(faulty, faultyPath, silent);
  const store = await connectRemoteStore(faultyPath);
  try {
    const heard: (string | undefined)[] = [];
    store.watchWrites!((f) => heard.push(f));
    await until(() => heard.length > 0, 'the fault');
    expect(heard).toEqual(['checkpoints stopped after the database file failed to flush']);
  } finally {
    await store.close();
    await faultyServer.close();
  }
});

test('a frame of the wrong shape closes that worker\'s connection; the owner goes on serving', async () => {
  const socket = net.createConnection(path);
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  const wire = new FramedSocket(socket, () => undefined, () => undefined);
  await new Promise<void>((r) => socket.once('connect', () => r()));
  wire.send({ t: 'call', id: 1, path: 'getAgent', args: 5 } as unknown as Frame);
  await closed;
  const store = await connectRemoteStore(path);
  await expect(store.getAgent('a1')).resolves.toMatchObject({ _id: 'a1' });
  await store.close();
});

test('frames are decoded whether a read holds part of one, several, or one split anywhere', () => {
  const frames: Frame[] = [
    { t: 'call', id: 1, path: 'getAgent', args: ['a'] },
    { t: 'item', sid: 2, done: false, value: randomBytes(100_000) },
    { t: 'fault', fault: undefined },
  ];
  const bytes = Buffer.concat(frames.map((f) => {
    const body = serialize(f);
    const head = Buffer.alloc(4);
    head.writeUInt32BE(body.length);
    return Buffer.concat([head, body]);
  }));
  for (const cut of [3, 4, 7, 1000, 65536, bytes.length]) {
    const socket = new EventEmitter();
    const got: Frame[] = [];
    new FramedSocket(socket as never, (f) => got.push(f), (err) => {
      throw err;
    });
    for (let i = 0; i < bytes.length; i += cut) socket.emit('data', bytes.subarray(i, i + cut));
    // Bytes compared as hex: jest's deep equality walks a large Buffer element by element.
    const text = (fs: Frame[]): string => JSON.stringify(fs, (_k, v) => (v?.type === 'Buffer' ? Buffer.from(v.data).toString('hex') : v));
    expect(text(got)).toEqual(text(frames));
    expect(got.map((f) => f.t)).toEqual(['call', 'item', 'fault']);
  }
});

test('a worker\'s local check-in reads (agent, access key, output key secret and roles) see what it just wrote through the owner; a failing reader falls back to the owner, warned once', async () => {
  const dir = tempDir();
  const owner = new SqliteStore(join(dir, 'fleet-server.db'));
  const server = await serveStore(owner, join(dir, 'store.sock'), silent);
  const warnings: unknown[] = [];
  const log = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(JSON.parse(line)) });
  const reads = new CheckinReads(join(dir, 'fleet-server.db'), resolveSecretBox(dir, undefined, () => false));
  const store = withLocalReads(await connectRemoteStore(server.path), reads, log);
  try {
    const key = await store.createApiKey({ name: 'a', roleDescriptors: {}, metadata: {} });
    await store.createAgent('a1', { active: true, access_api_key_id: key.id, agent: { id: 'a1', version: '9.6.0' } } as never);
    // Acknowledged by the owner after its commit: the local connection reads it at once.
    expect(reads.getAgent('a1')?._source.access_api_key_id).toBe(key.id);
    expect(await store.checkApiKey(key.id, key.key)).toBe('valid');
    expect(await store.checkApiKey(key.id, 'wrong')).toBe('invalid');
    await store.updateAgent({ id: 'a1', doc: { last_checkin_status: 'online' } });
    expect((await store.getAgent('a1'))?._source.last_checkin_status).toBe('online');
    // A held poll's refresh (kept beside the document) is part of the agent as read here too.
    const at = '2026-12-03T12:00:00.000Z';
    await store.bulkUpdateAgents([{ id: 'a1', doc: { updated_at: at, last_checkin: at, last_checkin_status: 'degraded', last_checkin_message: 'Running', unhealthy_reason: null, sequence_num: 0 } }]);
    expect(reads.getAgent('a1')?._source).toMatchObject({ last_checkin: at, last_checkin_status: 'degraded', unhealthy_reason: null, updated_at: at, access_api_key_id: key.id });
    const secretId = await store.createSecret('out-id:out-key');
    expect(reads.getSecret(secretId)).toBe('out-id:out-key');
    const roles = { r1: { cluster: ['monitor'] } };
    const outKey = await store.apiKeysFor(undefined).createApiKey({ name: 'o', roleDescriptors: roles, metadata: {} });
    expect(reads.getApiKeyRoles(outKey.id)).toEqual(roles);
    expect(await store.apiKeysFor(undefined).getApiKeyRoles(outKey.id)).toEqual(roles);
    // The local connection gone: the owner answers, and the fallback is said once.
    reads.close();
    expect((await store.getAgent('a1'))?._source.last_checkin_status).toBe('degraded');
    expect(await store.checkApiKey(key.id, key.key)).toBe('valid');
    expect(await store.getSecret(secretId)).toBe('out-id:out-key');
    expect(await store.apiKeysFor(undefined).getApiKeyRoles(outKey.id)).toEqual(roles);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ msg: expect.stringMatching(/asking the store owner/) });
  } finally {
    await store.close();
    await server.close();
    await owner.close();
    removeDir(dir);
  }
});
