// Files end to end, on both stores, as a real agent moves them: a diagnostics bundle requested with the
// admin CLI and uploaded in chunks (out of order, one corrupted and re-sent), a transit hash that fails,
// files delivered whole and by range, artifacts allowed and refused; and every client mistake on these
// routes answered with a clear 4xx in upstream's error shape.
import { execFile } from 'node:child_process';
import { connect } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { deflateSync } from 'node:zlib';
import { SimAgent } from './support/agent';
import { cli, cliFails } from './support/cli';
import { EsDouble } from './support/es-double/server';
import { esSettings } from './support/es-mode';
import { DIST, removeDir, startFleetServer, tempDir, type FleetServerProcess } from './support/fleet-server';
import { request } from './support/http';

jest.setTimeout(120_000);
const execFileAsync = promisify(execFile);
const MiB = 1024 * 1024;
const CHUNK = 4 * MiB;
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const transit = (hashes: string[]): string => sha256(Buffer.concat(hashes.map((h) => Buffer.from(h, 'hex'))));

interface Env {
  dir: string;
  settings: string[];
  server: FleetServerProcess;
  es?: EsDouble;
  agent: SimAgent;
  other: SimAgent;
  artifact: { id: string; decoded: Buffer; encoded: Buffer };
}

const ARTIFACT_ID = 'endpoint-exceptionlist-linux-v1';

/** A policy whose Defend input lists one artifact (what Kibana writes for Elastic Defend). */
function writePolicy(dir: string, url: string, artifact: Env['artifact']): string {
  const file = join(dir, 'defend.json');
  writeFileSync(file, JSON.stringify({
    id: 'defend-policy',
    outputs: { default: { type: 'elasticsearch', hosts: ['http://localhost:9200'] } },
    fleet: { hosts: [url] },
    inputs: [{
      id: 'endpoint-1', type: 'endpoint', use_output: 'default',
      artifact_manifest: {
        manifest_version: '1.0.1', schema_version: 'v1',
        artifacts: {
          [artifact.id]: {
            encryption_algorithm: 'none', compression_algorithm: 'zlib',
            decoded_sha256: sha256(artifact.decoded), decoded_size: artifact.decoded.length,
            encoded_sha256: sha256(artifact.encoded), encoded_size: artifact.encoded.length,
            relative_url: `/api/fleet/artifacts/${artifact.id}/${sha256(artifact.decoded)}`,
          },
          'endpoint-trustlist-linux-v1': {
            encryption_algorithm: 'none', compression_algorithm: 'zlib', decoded_sha256: 'a'.repeat(64), decoded_size: 1,
            encoded_sha256: 'b'.repeat(64), encoded_size: 1, relative_url: `/api/fleet/artifacts/endpoint-trustlist-linux-v1/${'a'.repeat(64)}`,
          },
        },
      },
    }],
  }));
  return file;
}

async function setUp(kind: 'embedded' | 'elasticsearch'): Promise<Env> {
  const dir = tempDir();
  const es = kind === 'elasticsearch' ? await new EsDouble().start() : undefined;
  const settings = es ? esSettings(es) : [];
  const server = await startFleetServer({ dataDir: dir, overrides: ['inputs.0.server.timeouts.checkin_jitter=0s', ...settings] });
  for (let i = 0; i < 50 && (await request(`${server.url}/api/status`)).status !== 200; i++) await new Promise((r) => setTimeout(r, 100));
  const decoded = Buffer.from(JSON.stringify({ entries: [{ type: 'simple', entries: [{ field: 'process.name', value: 'x' }] }] }));
  const artifact = { id: ARTIFACT_ID, decoded, encoded: deflateSync(decoded) };
  writeFileSync(join(dir, 'artifact.json'), decoded);
  await cli(dir, ['artifacts', 'put', join(dir, 'artifact.json'), '--identifier', ARTIFACT_ID], settings);
  await cli(dir, ['policy', 'put', writePolicy(dir, server.url, artifact)], settings);
  const token = (await cli(dir, ['enrollment-token', 'create', '--policy', 'defend-policy', '--name', 'Defend'], settings)).api_key as string;
  const agent = new SimAgent(server.url);
  const other = new SimAgent(server.url);
  expect((await agent.enroll(token)).status).toBe(200);
  expect((await other.enroll(token)).status).toBe(200);
  return { dir, settings, server, es, agent, other, artifact };
}

function fileInfo(agent: SimAgent, actionId: string, data: Buffer, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    action_id: actionId, agent_id: agent.id, src: 'agent',
    file: { name: `elastic-agent-diagnostics-${actionId}.zip`, mime_type: 'application/zip', size: data.length, hash: { sha256: sha256(data) } },
    contents: [{ name: 'version.txt' }],
    ...extra,
  };
}

describe.each(['embedded', 'elasticsearch'] as const)('%s store', (kind) => {
  let env: Env;
  beforeAll(async () => {
    env = await setUp(kind);
  });
  afterAll(async () => {
    await env?.server.stop();
    await env?.es?.stop();
    if (env) removeDir(env.dir);
  });

  test('diagnostics: requested with the CLI, uploaded in chunks out of order with one re-sent, written by the CLI', async () => {
    const { agent, dir, settings } = env;
    const out = join(dir, 'bundle.zip');
    const extra = settings.flatMap((s) => ['-E', s]);
    const waiting = execFileAsync(process.execPath, [DIST, 'diagnostics', 'request', agent.id, '-o', out, '--timeout', '90s',
      '-E', `path.data=${dir}`, ...extra], { cwd: dir });
    waiting.catch(() => undefined);

    // The agent sees the action on its next check-in.
    let action: any;
    for (let i = 0; i < 100 && !action; i++) {
      const res = await agent.checkin({ agent_policy_id: 'defend-policy', policy_revision_idx: 1 }, { timeoutMs: 30_000, headers: {} });
      action = res.json?.actions?.find((a: any) => a.type === 'REQUEST_DIAGNOSTICS');
      if (!action) await new Promise((r) => setTimeout(r, 100));
    }
    expect(action).toBeDefined();

    const data = randomBytes(2 * CHUNK + 12345);
    const begin = await agent.uploadBegin(fileInfo(agent, action.id, data));
    expect(begin.status).toBe(200);
    expect(begin.json).toEqual({ upload_id: expect.stringMatching(/^[0-9a-f-]{36}$/), chunk_size: CHUNK });
    const id = begin.json.upload_id as string;
    const parts = [0, 1, 2].map((n) => data.subarray(n * CHUNK, (n + 1) * CHUNK));

    expect((await agent.uploadChunk(id, 2, parts[2]!, sha256(parts[2]!))).status).toBe(200);
    const corrupted = Buffer.from(parts[0]!);
    corrupted[100] ^= 0xff;
    const refused = await agent.uploadChunk(id, 0, corrupted, sha256(parts[0]!));
    expect(refused.status).toBe(400);
    expect(refused.json).toEqual({ statusCode: 400, error: 'ErrHashMismatch', message: 'hash does not match' });
    // Completing now finds the refused chunk missing.
    const early = await agent.uploadComplete(id, transit(parts.map(sha256)));
    expect(early.json.error).toBe('ErrMissingChunks');
    await Promise.all([
      agent.uploadChunk(id, 0, parts[0]!, sha256(parts[0]!).toUpperCase()),
      agent.uploadChunk(id, 1, parts[1]!, sha256(parts[1]!)),
    ]).then((rs) => rs.forEach((r) => expect(r.status).toBe(200)));
    const done = await agent.uploadComplete(id, transit(parts.map(sha256)));
    expect(done.status).toBe(200);
    expect(done.json).toEqual({ status: 'ok' });
    expect((await agent.ack([{ action_id: action.id, data: { upload_id: id } }])).status).toBe(200);

    await waiting;
    expect(sha256(readFileSync(out))).toBe(sha256(data));
    const listed = await cli(dir, ['uploads', 'list', '--agent', agent.id], settings);
    expect(JSON.stringify(listed)).toContain(id);
    // A READY upload takes no more chunks.
    expect((await agent.uploadChunk(id, 1, parts[1]!, sha256(parts[1]!))).json.error).toBe('ErrUploadStopped');
    expect((await agent.uploadComplete(id, transit(parts.map(sha256)))).json.error).toBe('ErrStatusNoUploads');
  });

  test('a transit hash that does not match fails the upload and removes its chunks', async () => {
    const { agent, dir, settings } = env;
    const data = randomBytes(CHUNK + 10);
    const begin = await agent.uploadBegin(fileInfo(agent, 'action-bad-transit', data));
    const id = begin.json.upload_id as string;
    const parts = [data.subarray(0, CHUNK), data.subarray(CHUNK)];
    for (const [n, p] of parts.entries()) expect((await agent.uploadChunk(id, n, p, sha256(p))).status).toBe(200);
    const res = await agent.uploadComplete(id, 'f'.repeat(64));
    expect(res.status).toBe(400);
    expect(res.json).toEqual({ statusCode: 400, error: 'ErrFailValidation', message: 'file contents failed validation' });
    const failed = await cliFails(dir, ['uploads', 'get', id, '-o', join(dir, 'never.zip'), ...settings.flatMap((s) => ['-E', s])]);
    expect(failed.code).not.toBe(0);
    expect((await agent.uploadChunk(id, 0, parts[0]!, sha256(parts[0]!))).json.error).toBe('ErrUploadStopped');
  });

  test('bad input on the upload routes: a clear 4xx in upstream shape, nothing half-written', async () => {
    const { agent, other } = env;
    const data = Buffer.from('0123456789');
    const id = (await agent.uploadBegin(fileInfo(agent, 'action-bad-input', data))).json.upload_id as string;
    const expectError = async (res: Promise<{ status: number; json: any }>, status: number, error: string): Promise<void> => {
      const r = await res;
      expect({ status: r.status, error: r.json?.error }).toEqual({ status, error });
      expect(typeof r.json.statusCode).toBe('number');
    };
    await expectError(agent.uploadChunk(id, 0, data, undefined), 400, 'BadRequest');
    await expectError(agent.uploadChunk(id, 0, data, 'not-a-hash'), 400, 'BadRequest');
    await expectError(agent.uploadChunk(id, 1, data, sha256(data)), 400, 'ErrInvalidChunkNum');
    await expectError(agent.uploadChunk(id, -1, data, sha256(data)), 400, 'ErrInvalidChunkNum');
    await expectError(agent.uploadChunk(id, 'x', data, sha256(data)), 400, 'ErrInvalidChunkNum');
    await expectError(agent.uploadChunk('no-such-upload', 0, data, sha256(data)), 400, 'ErrInvalidFileID');
    await expectError(other.uploadChunk(id, 0, data, sha256(data)), 403, 'ErrAgentIdentity');
    await expectError(other.uploadComplete(id, transit([sha256(data)])), 403, 'ErrAgentIdentity');
    const longer = Buffer.concat([data, Buffer.from('!')]);
    await expectError(agent.uploadChunk(id, 0, longer, sha256(longer)), 400, 'BadRequest');
    await expectError(agent.uploadComplete(id, undefined), 400, 'TransitHashRequired');
    await expectError(agent.uploadComplete(id, transit([sha256(data)])), 400, 'ErrMissingChunks');

    const begin = (body: string): Promise<{ status: number; json: any }> =>
      request(`${agent.baseUrl}/api/fleet/uploads`, { method: 'POST', headers: agent.headers(), body });
    await expectError(begin(''), 400, 'ErrFileInfoBodyRequired');
    await expectError(begin('{"agent_id":'), 400, 'BadRequest');
    await expectError(begin('{}'), 400, 'ErrAgentIDMissing');
    await expectError(begin(JSON.stringify(fileInfo(other, 'a', data))), 403, 'ErrAgentIdentity');
    await expectError(begin(JSON.stringify({ ...fileInfo(agent, 'a', data), file: { name: 'x', mime_type: 'y' } })), 400, 'ErrFileSizeRequired');
    await expectError(begin(JSON.stringify({ ...fileInfo(agent, 'a', data), file: { name: 'x', mime_type: 'y', size: -1 } })), 400, 'ErrInvalidFileSize');
    await expectError(begin(JSON.stringify({ ...fileInfo(agent, 'a', data), src: '' })), 400, 'ErrFieldRequired');
    await expectError(begin(JSON.stringify({ ...fileInfo(agent, 'a', data), src: '../x' })), 400, 'BadRequest');
    await expectError(begin(JSON.stringify({ ...fileInfo(agent, 'a', data), pad: 'x'.repeat(5 * MiB) })), 413, 'ErrPayloadSizeTooLarge');
    await expectError(begin(JSON.stringify(fileInfo(agent, 'action-bad-input', data))), 409, 'ErrUploadExists');
    const anonymous = await request(`${agent.baseUrl}/api/fleet/uploads/${id}/0`, { method: 'PUT', headers: { 'X-Chunk-SHA2': sha256(data) }, body: data });
    expect(anonymous.status).toBe(401);

    // A chunk refused before its body is read waits for the body, so the agent sees the 400 and not a
    // reset, and the connection stays usable.
    const sock = connect(Number(new URL(agent.baseUrl).port), '127.0.0.1');
    let received = '';
    sock.on('data', (d) => { received += d.toString('latin1'); });
    const head = `PUT /api/fleet/uploads/no-such-upload/0 HTTP/1.1\r\nHost: x\r\nAuthorization: ApiKey ${agent.apiKey}\r\n`
      + `X-Chunk-SHA2: ${sha256(data)}\r\nContent-Length: 200000\r\n\r\n`;
    sock.write(head + 'x'.repeat(100_000));
    await new Promise((r) => setTimeout(r, 300));
    expect(received).toBe('');
    sock.write('x'.repeat(100_000));
    for (let i = 0; i < 100 && !received.includes('ErrInvalidFileID'); i++) await new Promise((r) => setTimeout(r, 20));
    expect(received).toMatch(/^HTTP\/1\.1 400 /);
    expect(received).not.toMatch(/Connection: close/i);
    received = '';
    sock.write('GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n');
    for (let i = 0; i < 100 && !received.includes('fleet-server'); i++) await new Promise((r) => setTimeout(r, 20));
    expect(received).toMatch(/^HTTP\/1\.1 200 /);
    sock.destroy();

    // After all of that, the upload still completes with the right chunk.
    expect((await agent.uploadChunk(id, 0, data, sha256(data))).status).toBe(200);
    expect((await agent.uploadComplete(id, transit([sha256(data)]))).status).toBe(200);
  });

  test('file delivery: whole, by range, to its target agents only', async () => {
    const { agent, other, dir, settings } = env;
    const data = randomBytes(9 * MiB + 7);
    writeFileSync(join(dir, 'tool.bin'), data);
    const put = await cli(dir, ['files', 'put', join(dir, 'tool.bin'), '--agents', agent.id, '--mime-type', 'application/x-tool'], settings);
    const fileId = put.id as string;

    const whole = await agent.getFile(fileId);
    expect(whole.status).toBe(200);
    expect(whole.headers['content-type']).toBe('application/x-tool');
    expect(whole.headers['accept-ranges']).toBe('bytes');
    expect(whole.headers['x-file-sha2']).toBe(sha256(data));
    expect(sha256(whole.body)).toBe(sha256(data));
    const head = await request(`${agent.baseUrl}/api/fleet/file/${fileId}`, { method: 'HEAD', headers: agent.headers() });
    expect({ status: head.status, length: head.headers['content-length'], body: head.body.length }).toEqual({ status: 200, length: String(data.length), body: 0 });

    // A range across a chunk boundary reads only what it needs.
    const across = await agent.getFile(fileId, { Range: `bytes=${CHUNK - 5}-${CHUNK + 4}` });
    expect(across.status).toBe(206);
    expect(across.headers['content-range']).toBe(`bytes ${CHUNK - 5}-${CHUNK + 4}/${data.length}`);
    expect(across.body).toEqual(data.subarray(CHUNK - 5, CHUNK + 5));
    const suffix = await agent.getFile(fileId, { Range: 'bytes=-3' });
    expect(suffix.body).toEqual(data.subarray(data.length - 3));
    const open = await agent.getFile(fileId, { Range: `bytes=${data.length - 2}-` });
    expect(open.body).toEqual(data.subarray(data.length - 2));

    for (const range of [`bytes=${data.length}-`, 'bytes=5-1', 'items=0-1', 'bytes=x-y', 'bytes=-0']) {
      const r = await agent.getFile(fileId, { Range: range });
      expect({ range, status: r.status, error: r.json?.error }).toEqual({ range, status: 416, error: 'ErrRangeNotSatisfiable' });
      expect(r.headers['content-range']).toBe(`bytes */${data.length}`);
    }
    const multi = await agent.getFile(fileId, { Range: 'bytes=0-1,5-6' });
    expect(multi.json).toEqual({ statusCode: 416, error: 'ErrRangeNotSatisfiable', message: 'Multipart ranges not satisfiable' });

    expect((await other.getFile(fileId)).json.error).toBe('ErrNoFile');
    expect((await agent.getFile('no-such-file')).status).toBe(404);
    expect((await agent.getFile(fileId, {}, '?source=downloads')).json.error).toBe('ErrClientFileForbidden');
    const badLib = await agent.getFile(fileId, { 'X-elastic-product-origin': 'endpoint-security' }, '?source=..%2Fx');
    expect(badLib.status).toBe(400);
  });

  test('artifacts: served when the policy lists them, refused otherwise', async () => {
    const { agent, artifact } = env;
    const ok = await agent.getArtifact(artifact.id, sha256(artifact.decoded));
    expect(ok.status).toBe(200);
    expect(ok.body).toEqual(artifact.encoded);
    // Cached now: the same answer again.
    expect((await agent.getArtifact(artifact.id, sha256(artifact.decoded))).body).toEqual(artifact.encoded);
    const unlisted = await agent.getArtifact(artifact.id, 'c'.repeat(64));
    expect(unlisted.json).toEqual({ statusCode: 403, error: 'Forbidden', message: 'agent not authorized for artifact' });
    expect((await agent.getArtifact('endpoint-trustlist-linux-v1', 'a'.repeat(64))).json.error).toBe('NotFound');
    expect((await agent.getArtifact(artifact.id, 'not-hex')).status).toBe(400);
    const anonymous = await request(`${agent.baseUrl}/api/fleet/artifacts/${artifact.id}/${sha256(artifact.decoded)}`);
    expect(anonymous.json.error).toBe('ErrNoAuthHeader');
  });
});
