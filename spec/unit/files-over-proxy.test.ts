// The upload rules as a cluster worker runs them: the upload logic in one place, the embedded store
// behind the store proxy's socket (in process here). What the store refuses crosses the socket as a
// plain error, and the clean-up's own store calls are not port methods: both must still come out right.
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { transitHash, UploadService, UPLOAD_WINDOW_MS } from '../../src/fleet/uploads';
import type { AgentDoc, Hit, JsonObject } from '../../src/store/documents';
import type { Store } from '../../src/store/port';
import { connectRemoteStore } from '../../src/store/remote/client';
import { serveStore, type StoreServer } from '../../src/store/remote/server';
import { SqliteStore } from '../../src/store/sqlite/store';
import { collect, once, sha256 } from '../support/bytes';
import { removeDir, tempDir } from '../support/fleet-server';
import { ManualClock } from '../support/manual-clock';
import { code } from '../support/fleet-outcome';

let dir: string;
let owner: SqliteStore;
let server: StoreServer;
let store: Store;
const clock = new ManualClock(Date.parse('2030-01-01T00:00:00Z'));
let uploads: UploadService;
const agent = { _id: randomUUID(), _source: { namespaces: ['default'] } } as unknown as Hit<AgentDoc>;

beforeEach(async () => {
  dir = tempDir('files-proxy-');
  owner = new SqliteStore(join(dir, 'fleet-server.db'));
  server = await serveStore(owner, join(dir, 'store.sock'), pino({ level: 'silent' }));
  store = await connectRemoteStore(server.path);
  uploads = new UploadService(store, { maxFileSize: undefined }, pino({ level: 'silent' }), clock);
});
afterEach(async () => {
  await store.close();
  await server.close();
  await owner.close();
  removeDir(dir);
});

async function begin(size: number, actionId = randomUUID()): Promise<string> {
  return (await uploads.begin(agent, {
    action_id: actionId, agent_id: agent._id, src: 'agent', file: { name: 'd.zip', mime_type: 'application/zip', size },
  } as JsonObject)).upload_id;
}

const body = (b: Buffer) => () => once(b);

test('a wrong re-send of a chunk is refused with ErrHashMismatch and never stored: the earlier copy stands', async () => {
  const good = Buffer.from('hello');
  const id = await begin(5);
  await uploads.chunk(agent, id, 0, sha256(good), body(good));
  expect(await code(uploads.chunk(agent, id, 0, sha256(good), body(Buffer.from('jello'))))).toBe('HashMismatch');
  const u = (await store.uploads.findUpload(id))!;
  expect(await store.uploads.listChunks(u)).toEqual([{ n: 0, size: 5, sha2: sha256(good), last: true }]);
  expect(await collect(store.uploads.readChunk(u, 0))).toEqual(good);
});

test('a chunk still streaming when the upload completes is refused with ErrUploadStopped', async () => {
  const good = Buffer.from('hello');
  const id = await begin(5);
  await uploads.chunk(agent, id, 0, sha256(good), body(good));
  const again = Buffer.from('jello');
  let streaming!: () => void;
  const started = new Promise<void>((r) => { streaming = r; });
  let release!: () => void;
  const gate = new Promise<void>((r) => { release = r; });
  const resend = code(uploads.chunk(agent, id, 0, sha256(again), () => (async function* () {
    streaming();
    await gate;
    yield again;
  })()));
  await started;
  expect(await code(uploads.complete(agent, id, { transithash: { sha256: transitHash([sha256(good)]) } }))).toBe('ok');
  release();
  expect(await resend).toBe('UploadStopped');
  expect(await collect(store.uploads.readChunk((await store.uploads.findUpload(id))!, 0))).toEqual(good);
});

test('the clean-up selects through the proxy, oldest first past READY ones, and sweeps', async () => {
  const abandoned = await begin(1);
  clock.advance(1000);
  const data = Buffer.from('x');
  const ready = await begin(1);
  await uploads.chunk(agent, ready, 0, sha256(data), body(data));
  await uploads.complete(agent, ready, { transithash: { sha256: transitHash([sha256(data)]) } });
  const orphan = join(dir, 'files', 'uploads', 'gone.agent');
  mkdirSync(orphan, { recursive: true });
  const past = new Date(Date.now() - 3_600_000);
  utimesSync(orphan, past, past);
  clock.advance(UPLOAD_WINDOW_MS);
  expect(await uploads.collectAbandoned(1)).toBe(1);
  expect(await store.uploads.findUpload(abandoned)).toBeUndefined();
  expect((await store.uploads.findUpload(ready))!.status).toBe('READY');
  expect(existsSync(orphan)).toBe(false);
});
