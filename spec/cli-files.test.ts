// The admin CLI's file commands through the bundled program: files published for agents, artifacts,
// uploads listed, fetched (verified chunk by chunk, never left half-written) and deleted, and a
// diagnostics request answered by an upload made while the command waits. The test plays the agent's
// part by writing uploads through the store port, as the upload routes do.
import { spawn } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inflateSync } from 'node:zlib';
import type { JsonObject } from '../src/store/documents';
import type { UploadRecord } from '../src/store/file-ports';
import type { Store } from '../src/store/port';
import { SqliteStore } from '../src/store/sqlite/store';
import { EsDouble } from './support/es-double/server';
import { esSettings } from './support/es-mode';
import { DIST, removeDir, tempDir } from './support/fleet-server';
import { NODE_FLAGS } from './support/node-flags';
import { esStore } from './support/stores';
import { collect, once, sha256 } from './support/bytes';

jest.setTimeout(60_000);


interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Starts the CLI; `done` resolves when it exits, `stderr()` is what it printed so far. */
function start(dir: string, args: string[], overrides: string[] = []): { done: Promise<Run>; stderr(): string } {
  const child = spawn(process.execPath, [...NODE_FLAGS, DIST, ...args, '-E', `path.data=${dir}`, ...overrides.flatMap((o) => ['-E', o])],
    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<Run>((r) => child.once('close', (code) => r({ code, stdout, stderr })));
  return { done, stderr: () => stderr };
}

const run = (dir: string, args: string[], overrides: string[] = []): Promise<Run> => start(dir, args, overrides).done;

async function ok(dir: string, args: string[], overrides: string[] = []): Promise<any> {
  const r = await run(dir, [...args, '--json'], overrides);
  expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code: 0, stderr: expect.any(String) });
  return JSON.parse(r.stdout);
}

async function fails(dir: string, args: string[], message: RegExp, overrides: string[] = []): Promise<void> {
  const r = await run(dir, args, overrides);
  expect({ args, code: r.code, stderr: r.stderr.trim() }).toEqual({ args, code: 1, stderr: expect.stringMatching(message) });
  expect(r.stderr).not.toMatch(/^\s+at /m);
}

async function until<T>(what: string, fn: () => Promise<T | undefined>): Promise<T> {
  for (let i = 0; i < 400; i++) {
    const v = await fn();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`gave up waiting for ${what}`);
}



interface UploadSpec {
  agentId?: string;
  actionId?: string;
  data: Buffer;
  chunkSize: number;
  name?: string;
  /** Stored as the agent's X-Chunk-SHA2 for these chunk numbers instead of the real hash. */
  badSha2?: number[];
  transitHash?: string;
  fileHash?: string;
  /** Left AWAITING_UPLOAD, or closed as READY (the default) or UPLOAD_ERROR. */
  status?: 'READY' | 'UPLOAD_ERROR' | 'AWAITING_UPLOAD';
}

/** An upload as the upload routes store it: begin, chunks (with the agent's sha2), complete. */
async function makeUpload(store: Store, s: UploadSpec): Promise<UploadRecord> {
  const agentId = s.agentId ?? randomUUID();
  const actionId = s.actionId ?? randomUUID();
  const uploadId = randomUUID();
  const file: JsonObject = { name: s.name ?? 'diag.zip', mime_type: 'application/zip', size: s.data.length, ChunkSize: s.chunkSize, Status: 'AWAITING_UPLOAD' };
  if (s.fileHash) file['hash'] = { sha256: s.fileHash };
  const doc: JsonObject = {
    action_id: actionId, agent_id: agentId, src: 'agent', upload_id: uploadId, upload_start: Date.now(), '@timestamp': Date.now(), namespaces: ['default'], file,
  };
  expect(await store.uploads.createUpload('agent', `${actionId}.${agentId}`, doc)).toBe(true);
  const upload = (await store.uploads.findUpload(uploadId))!;
  const hashes: Buffer[] = [];
  const count = Math.ceil(s.data.length / s.chunkSize);
  for (let n = 0; n < count; n++) {
    const part = s.data.subarray(n * s.chunkSize, (n + 1) * s.chunkSize);
    const h = createHash('sha256').update(part).digest();
    hashes.push(h);
    const sha2 = s.badSha2?.includes(n) ? sha256(Buffer.from('something else')) : h.toString('hex');
    await store.uploads.putChunk(upload, { n, last: n === count - 1, sha2, timestampMs: Date.now() }, once(part));
  }
  if (s.status !== 'AWAITING_UPLOAD') {
    expect(await store.uploads.closeUpload(upload, s.status ?? 'READY', { transitHash: s.transitHash ?? sha256(Buffer.concat(hashes)) })).toBe('closed');
  }
  return (await store.uploads.findUpload(uploadId))!;
}

/** Nothing half-written: no file but those the test made and the embedded store's own. */
const leftovers = (dir: string, keep: string[]): string[] => readdirSync(dir).filter((f) => !keep.includes(f) && !/^(fleet-server\.(db|key).*|files)$/.test(f));

describe('embedded store', () => {
  const dir = tempDir();
  let store: SqliteStore;

  beforeAll(() => {
    // The CLI opens the same database beside this connection, as it does beside a running server.
    store = new SqliteStore(join(dir, 'fleet-server.db'));
  });
  afterAll(async () => {
    await store.close();
    removeDir(dir);
  });

  test('files put: published in chunks for the named agents only', async () => {
    const data = randomBytes(10_000);
    writeFileSync(join(dir, 'tool.bin'), data);
    const out = await ok(dir, ['files', 'put', 'tool.bin', '--agents', 'a1, a2', '--force', '--chunk-size', '4096', '--mime-type', 'application/x-test']);
    expect(out).toMatchObject({ name: 'tool.bin', size: 10_000, sha256: sha256(data), chunk_size: 4096, agents: ['a1', 'a2'], url: `/api/fleet/file/${out.id}` });
    expect(out.id).toMatch(/^[0-9a-f-]{36}$/);
    for (const agentId of ['a1', 'a2']) {
      const file = (await store.deliveries.findDeliveryFile(out.id, { agentId }))!;
      expect(file).toMatchObject({ id: out.id, size: 10_000, chunkSize: 4096, mimeType: 'application/x-test', sha256: sha256(data) });
      const parts: Buffer[] = [];
      for (const c of file.chunks) parts.push(await collect(store.deliveries.readDeliveryChunk(c)));
      expect(parts.map((p) => p.length)).toEqual([4096, 4096, 1808]);
      expect(Buffer.concat(parts)).toEqual(data);
    }
    expect(await store.deliveries.findDeliveryFile(out.id, { agentId: 'a3' })).toBeUndefined();

    // Default chunk size (4 MiB: one chunk), a chosen id and name; the human output names id and URL.
    const r = await run(dir, ['files', 'put', 'tool.bin', '--agents', 'a3', '--force', '--id', 'my-tool', '--name', 'tool-1.0.bin']);
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')[0]).toBe('my-tool');
    expect(r.stdout).toContain('/api/fleet/file/my-tool');
    const mine = (await store.deliveries.findDeliveryFile('my-tool', { agentId: 'a3' }))!;
    expect(mine).toMatchObject({ size: 10_000, chunkSize: 4 * 1024 * 1024, mimeType: 'application/octet-stream' });
    expect(mine.chunks).toHaveLength(1);

    await fails(dir, ['files', 'put', 'tool.bin', '--agents', 'a1', '--force', '--id', '../x'], /^fleet-server: file id "\.\.\/x" must be/);
    await fails(dir, ['files', 'put', 'missing.bin', '--agents', 'a1'], /missing\.bin: no such file or directory/);
  });

  test('artifacts put: a .fleet-artifacts document as Endpoint writes it, and its manifest entry', async () => {
    const data = Buffer.from('{"entries":[]}\n'.repeat(500));
    writeFileSync(join(dir, 'list.json'), data);
    const identifier = `endpoint-exceptionlist-linux-v1-${randomUUID().slice(0, 8)}`;
    const out = await ok(dir, ['artifacts', 'put', 'list.json', '--identifier', identifier]);
    const doc = (await store.artifacts.findArtifact(identifier, sha256(data)))!;
    const encoded = Buffer.from(doc.body, 'base64');
    expect(inflateSync(encoded)).toEqual(data);
    expect(doc).toMatchObject({
      identifier, compression_algorithm: 'zlib', encryption_algorithm: 'none', package_name: 'endpoint',
      decoded_sha256: sha256(data), decoded_size: data.length, encoded_sha256: sha256(encoded), encoded_size: encoded.length,
    });
    expect(encoded.length).toBeLessThan(data.length);
    expect(Date.parse(doc.created)).toBeGreaterThan(Date.now() - 60_000);
    expect(out).toEqual({
      identifier, decoded_sha256: sha256(data), created: true,
      artifact_manifest_entry: { [identifier]: {
        relative_url: `/api/fleet/artifacts/${identifier}/${sha256(data)}`, compression_algorithm: 'zlib', encryption_algorithm: 'none',
        decoded_sha256: sha256(data), decoded_size: data.length, encoded_sha256: sha256(encoded), encoded_size: encoded.length,
      } },
    });
    // The same content again is not stored twice.
    expect((await ok(dir, ['artifacts', 'put', 'list.json', '--identifier', identifier])).created).toBe(false);

    const raw = `endpoint-trustlist-${randomUUID().slice(0, 8)}`;
    await ok(dir, ['artifacts', 'put', 'list.json', '--identifier', raw, '--compression', 'none', '--package-name', 'other']);
    const plain = (await store.artifacts.findArtifact(raw, sha256(data)))!;
    expect(Buffer.from(plain.body, 'base64')).toEqual(data);
    expect(plain).toMatchObject({ compression_algorithm: 'none', encoded_sha256: sha256(data), encoded_size: data.length, package_name: 'other' });

    // Over 64 MiB is refused before anything is read (a sparse file: no disk used).
    writeFileSync(join(dir, 'huge.bin'), '');
    truncateSync(join(dir, 'huge.bin'), 64 * 1024 * 1024 + 1);
    await fails(dir, ['artifacts', 'put', 'huge.bin', '--identifier', 'huge'], /^fleet-server: huge\.bin is 67108865 bytes; artifacts are at most 67108864 bytes/);
    await fails(dir, ['artifacts', 'put', 'tool.bin', '--identifier', 'a/b'], /^fleet-server: artifact identifier "a\/b" must be/);
  });

  test('uploads list, get (the exact bytes) and delete', async () => {
    const agentId = randomUUID();
    const data = randomBytes(10_000);
    const u = await makeUpload(store, { agentId, data, chunkSize: 4096, name: 'elastic-agent-diagnostics.zip', fileHash: sha256(data) });
    const other = await makeUpload(store, { data: randomBytes(10), chunkSize: 4096 });

    const listed = await ok(dir, ['uploads', 'list', '--agent', agentId]);
    expect(listed).toEqual([{
      upload_id: u.uploadId, agent_id: agentId, action_id: u.actionId, name: 'elastic-agent-diagnostics.zip', size: 10_000, status: 'READY',
      started: new Date(u.startedMs).toISOString(), source: 'agent',
    }]);
    expect((await ok(dir, ['uploads', 'list', '--action', other.actionId])).map((x: any) => x.upload_id)).toEqual([other.uploadId]);
    const table = await run(dir, ['uploads', 'list', '--agent', agentId]);
    expect(table.stdout.split('\n')[0]).toMatch(/^UPLOAD ID\s+AGENT\s+ACTION\s+NAME\s+SIZE\s+STATUS\s+STARTED$/);
    expect(table.stdout).toContain(u.uploadId);

    const got = await ok(dir, ['uploads', 'get', u.uploadId, '-o', 'out.zip']);
    expect(got).toEqual({ upload_id: u.uploadId, path: join(dir, 'out.zip'), size: 10_000, sha256: sha256(data) });
    expect(readFileSync(join(dir, 'out.zip'))).toEqual(data);
    // Without -o: the agent's file name, in the current directory.
    await ok(dir, ['uploads', 'get', u.uploadId]);
    expect(readFileSync(join(dir, 'elastic-agent-diagnostics.zip'))).toEqual(data);

    expect(await ok(dir, ['uploads', 'delete', u.uploadId])).toEqual({ upload_id: u.uploadId, deleted: true });
    expect(await store.uploads.findUpload(u.uploadId)).toBeUndefined();
    expect(await ok(dir, ['uploads', 'list', '--agent', agentId])).toEqual([]);
    await fails(dir, ['uploads', 'get', u.uploadId, '-o', 'x'], new RegExp(`^fleet-server: upload ${u.uploadId} not found$`));
    await fails(dir, ['uploads', 'delete', u.uploadId], new RegExp(`^fleet-server: upload ${u.uploadId} not found$`));
  });

  test('uploads get: a corrupt upload fails with the reason and leaves no file', async () => {
    const keep = readdirSync(dir);
    const data = randomBytes(10_000);
    const cases: [string, UploadSpec, RegExp][] = [
      ['a chunk that does not match its sha2', { data, chunkSize: 4096, badSha2: [1] }, /chunk 1 is corrupt: its SHA-256 is [0-9a-f]{64}, the agent sent [0-9a-f]{64}$/],
      ['a wrong transithash', { data, chunkSize: 4096, transitHash: 'a'.repeat(64) }, /the chunks' transithash is [0-9a-f]{64}, the upload's is a{64}$/],
      ['a wrong whole-file hash', { data, chunkSize: 4096, fileHash: 'b'.repeat(64) }, /the file's SHA-256 is [0-9a-f]{64}, the agent declared b{64}$/],
      ['an upload that is not complete', { data, chunkSize: 4096, status: 'AWAITING_UPLOAD' }, /is AWAITING_UPLOAD, not READY/],
    ];
    for (const [what, spec, message] of cases) {
      const u = await makeUpload(store, spec);
      const r = await run(dir, ['uploads', 'get', u.uploadId, '-o', 'bad.zip']);
      expect({ what, code: r.code, stderr: r.stderr.trim() }).toEqual({ what, code: 1, stderr: expect.stringMatching(new RegExp(`^fleet-server: upload ${u.uploadId}`)) });
      expect({ what, stderr: r.stderr.trim() }).toEqual({ what, stderr: expect.stringMatching(message) });
      expect({ what, left: leftovers(dir, keep) }).toEqual({ what, left: [] });
    }
    // A missing chunk (one deleted after completion).
    const u = await makeUpload(store, { data, chunkSize: 4096 });
    await store.uploads.deleteChunk(u, 2);
    await fails(dir, ['uploads', 'get', u.uploadId, '-o', 'bad.zip'], /2 chunks stored where its size calls for 3/);
    expect(leftovers(dir, keep)).toEqual([]);
    // An agent-chosen name cannot lead out of the current directory.
    const sneaky = await makeUpload(store, { data, chunkSize: 4096, name: '../../escape.zip' });
    await ok(dir, ['uploads', 'get', sneaky.uploadId]);
    expect(readFileSync(join(dir, 'escape.zip'))).toEqual(data);
  });

  test('diagnostics request: the action Kibana would create, then the upload written once READY', async () => {
    const agentId = randomUUID();
    await store.createAgent(agentId, { active: true, type: 'PERMANENT', enrolled_at: new Date().toISOString(), policy_id: 'p1', agent: { id: agentId, version: '9.6.0' } });
    const before = Date.now();
    const cli = start(dir, ['diagnostics', 'request', agentId, '-o', 'diag.zip', '--timeout', '50s', '--additional-metrics', 'cpu,CONN']);

    const action = await until('the action', async () => (await store.listActions(50)).find((a) => a._source.agents?.includes(agentId)));
    expect(action._source).toMatchObject({ type: 'REQUEST_DIAGNOSTICS', agents: [agentId], data: { additional_metrics: ['CPU', 'CONN'] } });
    expect(action._source.action_id).toMatch(/^[0-9a-f-]{36}$/);
    const expires = Date.parse(action._source.expiration!);
    expect(expires).toBeGreaterThanOrEqual(before + 3 * 3600_000 - 1000);
    expect(expires).toBeLessThanOrEqual(Date.now() + 3 * 3600_000 + 1000);
    await until('the waiting line', async () => (cli.stderr().includes('waiting') ? true : undefined));

    // The agent answers: an upload in three chunks, completed while the command polls.
    const data = randomBytes(9_000);
    const u = await makeUpload(store, { agentId, actionId: action._source.action_id, data, chunkSize: 4096, name: 'elastic-agent-diagnostics-x.zip' });
    const r = await cli.done;
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: expect.stringContaining(`upload started: elastic-agent-diagnostics-x.zip, 9000 bytes (upload ${u.uploadId})`) });
    expect(r.stderr).toContain('upload READY');
    expect(r.stdout.trim()).toBe(`wrote ${join(dir, 'diag.zip')} (9000 bytes, sha256 ${sha256(data)})`);
    expect(readFileSync(join(dir, 'diag.zip'))).toEqual(data);
    expect(statSync(join(dir, 'diag.zip')).mode & 0o777).toBe(0o600);
  });

  test('diagnostics request: progress while chunks arrive; defaults to the agent\'s file name', async () => {
    const agentId = randomUUID();
    await store.createAgent(agentId, { active: true, type: 'PERMANENT', enrolled_at: new Date().toISOString() });
    const cli = start(dir, ['diagnostics', 'request', agentId, '--timeout', '50s', '--exclude-events-log', '--json']);
    const action = await until('the action', async () => (await store.listActions(50)).find((a) => a._source.agents?.includes(agentId)));
    expect(action._source.data).toEqual({ exclude_events_log: true });
    const actionId = action._source.action_id;
    // Begin and one chunk of two, seen by the command, then the rest.
    const data = randomBytes(6000);
    const doc: JsonObject = {
      action_id: actionId, agent_id: agentId, src: 'agent', upload_id: randomUUID(), upload_start: Date.now(), '@timestamp': Date.now(),
      file: { name: 'bundle.zip', mime_type: 'application/zip', size: 6000, ChunkSize: 4096, Status: 'AWAITING_UPLOAD' },
    };
    await store.uploads.createUpload('agent', `${actionId}.${agentId}`, doc);
    const upload = (await store.uploads.findUpload(doc['upload_id'] as string))!;
    const parts = [data.subarray(0, 4096), data.subarray(4096)];
    await store.uploads.putChunk(upload, { n: 0, last: false, sha2: sha256(parts[0]!), timestampMs: Date.now() }, once(parts[0]!));
    await until('chunk progress', async () => (cli.stderr().includes('chunks stored: 1/2') ? true : undefined));
    await store.uploads.putChunk(upload, { n: 1, last: true, sha2: sha256(parts[1]!), timestampMs: Date.now() }, once(parts[1]!));
    const transit = sha256(Buffer.concat(parts.map((p) => createHash('sha256').update(p).digest())));
    expect(await store.uploads.closeUpload(upload, 'READY', { transitHash: transit })).toBe('closed');
    const r = await cli.done;
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ action_id: actionId, upload_id: upload.uploadId, path: join(dir, 'bundle.zip'), size: 6000, sha256: sha256(data) });
    expect(readFileSync(join(dir, 'bundle.zip'))).toEqual(data);
  });

  test('diagnostics request fails clearly: unknown agent, agent error, failed upload, timeout', async () => {
    const keep = readdirSync(dir);
    const ghost = randomUUID();
    await fails(dir, ['diagnostics', 'request', ghost], new RegExp(`^fleet-server: agent ${ghost} not found$`));
    expect((await store.listActions(100)).some((a) => a._source.agents?.includes(ghost))).toBe(false);
    await fails(dir, ['diagnostics', 'request', ghost, '--additional-metrics', 'GPU'], /^fleet-server: unknown additional metric GPU; one of CPU, CONN$/);

    const agentId = randomUUID();
    await store.createAgent(agentId, { active: true, type: 'PERMANENT', enrolled_at: new Date().toISOString() });
    const actionFor = async (): Promise<string> => (await until('the action', async () =>
      (await store.listActions(100)).filter((a) => a._source.agents?.includes(agentId)).sort((a, b) => b._source['@timestamp'].localeCompare(a._source['@timestamp']))
        .find((a) => !seen.has(a._source.action_id))))._source.action_id;
    const seen = new Set<string>();

    // The agent acknowledges with an error (diagnostics could not be collected).
    let cli = start(dir, ['diagnostics', 'request', agentId, '--timeout', '50s']);
    let actionId = await actionFor();
    seen.add(actionId);
    await store.createActionResults([{ id: randomUUID(), doc: { '@timestamp': new Date().toISOString(), action_id: actionId, agent_id: agentId, error: 'upload failed: disk full' } }]);
    let r = await cli.done;
    expect({ code: r.code, line: r.stderr.trim().split('\n').pop() }).toEqual({ code: 1, line: `fleet-server: agent ${agentId} reported an error for action ${actionId}: upload failed: disk full` });

    // The upload fails validation on completion.
    cli = start(dir, ['diagnostics', 'request', agentId, '--timeout', '50s']);
    actionId = await actionFor();
    seen.add(actionId);
    await makeUpload(store, { agentId, actionId, data: randomBytes(100), chunkSize: 4096, status: 'UPLOAD_ERROR' });
    r = await cli.done;
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ended UPLOAD_ERROR/);

    // Nothing comes.
    r = await run(dir, ['diagnostics', 'request', agentId, '--timeout', '1s']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^fleet-server: timed out waiting for the upload of agent .* it may still come: fleet-server uploads list --action [0-9a-f-]{36}$/m);
    await fails(dir, ['diagnostics', 'request', agentId, '--timeout', 'soon'], /^fleet-server: --timeout soon: give a duration like 10m or 90s$/);
    expect(leftovers(dir, keep)).toEqual([]);
  });
});

describe('Elasticsearch store (double)', () => {
  const dir = tempDir();
  let es: EsDouble;
  let store: Store;
  let settings: string[];

  beforeAll(async () => {
    es = await new EsDouble().start();
    settings = esSettings(es);
    store = esStore([es.url], es.serviceToken);
    await store.ready();
  });
  afterAll(async () => {
    await store.close();
    await es.stop();
    removeDir(dir);
  });

  test('uploads get writes the verified bytes; a corrupt chunk fails', async () => {
    const data = randomBytes(10_000);
    const u = await makeUpload(store, { data, chunkSize: 4096, fileHash: sha256(data) });
    const got = await ok(dir, ['uploads', 'get', u.uploadId, '-o', 'out.bin'], settings);
    expect(got).toMatchObject({ size: 10_000, sha256: sha256(data) });
    expect(readFileSync(join(dir, 'out.bin'))).toEqual(data);
    expect((await ok(dir, ['uploads', 'list', '--action', u.actionId], settings)).map((x: any) => x.upload_id)).toEqual([u.uploadId]);

    const bad = await makeUpload(store, { data, chunkSize: 4096, badSha2: [0] });
    await fails(dir, ['uploads', 'get', bad.uploadId, '-o', 'bad.bin'], /chunk 0 is corrupt/, settings);
    expect(existsSync(join(dir, 'bad.bin'))).toBe(false);
  });

  test('artifacts put and files put', async () => {
    const data = Buffer.from('artifact body '.repeat(100));
    writeFileSync(join(dir, 'a.json'), data);
    const identifier = `endpoint-blocklist-${randomUUID().slice(0, 8)}`;
    await ok(dir, ['artifacts', 'put', 'a.json', '--identifier', identifier], settings);
    const doc = (await store.artifacts.findArtifact(identifier, sha256(data)))!;
    expect(inflateSync(Buffer.from(doc.body, 'base64'))).toEqual(data);
    expect(doc).toMatchObject({ decoded_size: data.length, encoded_sha256: sha256(Buffer.from(doc.body, 'base64')) });

    const out = await ok(dir, ['files', 'put', 'a.json', '--agents', 'x1', '--force', '--chunk-size', '500'], settings);
    const file = (await store.deliveries.findDeliveryFile(out.id, { agentId: 'x1' }))!;
    expect(file.chunks).toHaveLength(3);
    const parts: Buffer[] = [];
    for (const c of file.chunks) parts.push(await collect(store.deliveries.readDeliveryChunk(c)));
    expect(Buffer.concat(parts)).toEqual(data);
  });
});
