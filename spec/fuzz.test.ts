// Property-based fuzzing of every route, as a hostile or broken client would call them: valid requests
// mutated in their path, method, headers and body (random JSON, wrong types, truncation, gzip, bytes).
// Whatever is sent: never a 5xx, every refusal in the error shape, and the server stays up and quiet.
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { SimAgent } from './support/agent';
import { cli } from './support/cli';
import { removeDir, startFleetServer, type FleetServerProcess } from './support/fleet-server';
import { request, type Response } from './support/http';

let server: FleetServerProcess;
let token: string;
let agent: SimAgent;
let uploadId: string;
let fileId: string;
const CHUNK_BYTES = Buffer.from('0123456789');
const CHUNK_SHA = createHash('sha256').update(CHUNK_BYTES).digest('hex');

beforeAll(async () => {
  server = await startFleetServer({ overrides: [
    'inputs.0.server.timeouts.checkin_long_poll=1s', 'inputs.0.server.timeouts.checkin_jitter=0s',
    'logging.level=info',
    ...['enroll', 'checkin', 'ack', 'status', 'audit_unenroll', 'upload_start', 'upload_chunk', 'upload_end', 'file_delivery', 'artifact'].flatMap((r) => [
      `inputs.0.server.limits.${r}_limit.interval=1ms`, `inputs.0.server.limits.${r}_limit.burst=100000`, `inputs.0.server.limits.${r}_limit.max=100000`,
    ]),
  ] });
  token = (await server.enrollmentToken());
  agent = new SimAgent(server.url);
  expect((await agent.enroll(token)).status).toBe(200);
  expect((await agent.checkin()).status).toBe(200);
  const begun = await agent.uploadBegin({ action_id: 'fuzz', agent_id: agent.id, src: 'agent', file: { name: 'f.zip', mime_type: 'application/zip', size: 10 } });
  uploadId = begun.json.upload_id;
  writeFileSync(join(server.dataDir, 'f.bin'), 'a file to deliver');
  fileId = (await cli(server.dataDir, ['files', 'put', join(server.dataDir, 'f.bin'), '--agents', agent.id])).id;
});

afterAll(async () => {
  expect(await server.stop()).toBe(0);
  removeDir(server.dataDir);
});

const jsonValue = fc.jsonValue({ maxDepth: 4 });
const anyString = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.constantFrom('', ' ', '\u0000', '%', '%zz', '../', 'null'));
/** What an HTTP client can put in a header value at all (Node refuses control characters and non-Latin-1). */
const headerString = anyString.map((s) => s.replace(/[^\t\x20-\x7e\x80-\xff]/g, ''));

/** A valid body for each route, then a mutation of it. */
const validBodies: Record<string, () => unknown> = {
  enroll: () => ({ type: 'PERMANENT', metadata: { local: { elastic: { agent: { id: 'x', version: '9.6.0' } } }, user_provided: {}, tags: ['a'] } }),
  checkin: () => ({ status: 'online', message: 'Running', ack_token: '', local_metadata: { host: { hostname: 'h' } },
    components: [{ id: 'c', type: 'log', status: 'HEALTHY', units: [{ id: 'u', type: 'input', status: 'HEALTHY' }] }],
    agent_policy_id: 'default-policy', policy_revision_idx: 1 }),
  acks: () => ({ events: [{ type: 'ACTION_RESULT', subtype: 'ACKNOWLEDGED', agent_id: agent.id, action_id: 'policy:default-policy:1', message: 'ok', timestamp: new Date().toISOString() }] }),
  audit: () => ({ reason: 'uninstall', timestamp: new Date().toISOString() }),
  status: () => undefined,
  pgp: () => undefined,
  uploadBegin: () => ({ action_id: `fuzz-${Math.random()}`, agent_id: agent.id, src: 'agent', file: { name: 'f.zip', mime_type: 'application/zip', size: 10 } }),
  uploadChunk: () => CHUNK_BYTES.toString(),
  uploadComplete: () => ({ transithash: { sha256: 'a'.repeat(64) } }),
  file: () => undefined,
  artifact: () => undefined,
};

type Mutation = { kind: 'keep' } | { kind: 'set'; path: string[]; value: unknown } | { kind: 'replace'; value: unknown }
  | { kind: 'truncate'; at: number } | { kind: 'bytes'; value: Uint8Array };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { arbitrary: fc.constant<Mutation>({ kind: 'keep' }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('set' as const), path: fc.array(fc.constantFrom('type', 'metadata', 'local', 'user_provided', 'tags', 'status', 'message',
    'ack_token', 'poll_timeout', 'components', 'units', 'upgrade_details', 'events', '0', 'action_id', 'agent_id', 'reason', 'timestamp', 'payload',
    'policy_revision_idx', 'local_metadata', 'upgrade', 'rollbacks', 'id', 'replace_token', 'enrollment_id',
    'file', 'size', 'name', 'mime_type', 'src', 'transithash', 'sha256'), { minLength: 1, maxLength: 3 }),
  value: fc.oneof(jsonValue, anyString, fc.constantFrom('', '5m', '99999999999999h', '-1s', 'EPHEMERAL', 'orphaned')) }), weight: 6 },
  { arbitrary: fc.record({ kind: fc.constant('replace' as const), value: jsonValue }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('truncate' as const), at: fc.nat(400) }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('bytes' as const), value: fc.uint8Array({ maxLength: 200 }) }), weight: 1 },
);

function setPath(obj: unknown, path: string[], value: unknown): unknown {
  if (path.length === 0) return value;
  const base = obj !== null && typeof obj === 'object' ? obj as Record<string, unknown> : {};
  const copy: Record<string, unknown> = Array.isArray(base) ? [...base] as unknown as Record<string, unknown> : { ...base };
  copy[path[0]!] = setPath(base[path[0]!], path.slice(1), value);
  return copy;
}

function bodyFor(route: string, m: Mutation): Buffer | undefined {
  const valid = validBodies[route]!();
  switch (m.kind) {
    case 'keep': return valid === undefined ? undefined : Buffer.from(JSON.stringify(valid));
    case 'set': return Buffer.from(JSON.stringify(setPath(valid, m.path, m.value)));
    case 'replace': return Buffer.from(JSON.stringify(m.value));
    case 'truncate': return Buffer.from(JSON.stringify(valid ?? {}).slice(0, m.at));
    case 'bytes': return Buffer.from(m.value);
  }
}

const routes = ['enroll', 'checkin', 'acks', 'audit', 'status', 'pgp', 'uploadBegin', 'uploadChunk', 'uploadComplete', 'file', 'artifact'] as const;
const GETS = new Set(['status', 'pgp', 'file', 'artifact']);

const requestArb = fc.record({
  route: fc.constantFrom(...routes),
  method: fc.oneof({ arbitrary: fc.constant(undefined), weight: 5 }, { arbitrary: fc.constantFrom('GET', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS'), weight: 1 }),
  id: fc.oneof({ arbitrary: fc.constant(undefined), weight: 4 }, { arbitrary: fc.oneof(anyString.map(encodeURIComponent), fc.constantFrom('%zz', '%', '%C0%AF', '%ED%A0%80', 'a%2Fb', '..', 'enroll')), weight: 2 }),
  extraSegment: fc.oneof({ arbitrary: fc.constant(''), weight: 6 }, { arbitrary: fc.constantFrom('/', '/x', '//', '?', '?a=%zz', '#f'), weight: 1 }),
  auth: fc.constantFrom('agent', 'enrollment', 'none', 'garbage', 'two', 'bearer', 'not-base64'),
  userAgent: fc.oneof({ arbitrary: fc.constant('Elastic Agent 9.6.0'), weight: 4 }, { arbitrary: fc.oneof(headerString, fc.constantFrom('Elastic Agent 7.0.0', 'elastic agent', 'Elastic Agent 99.0.0')), weight: 1 }),
  apiVersion: fc.oneof({ arbitrary: fc.constant(undefined), weight: 4 }, { arbitrary: fc.constantFrom('2023-06-01', '2020-01-01', 'yesterday', ''), weight: 1 }),
  encoding: fc.oneof({ arbitrary: fc.constant(undefined), weight: 6 }, { arbitrary: fc.constantFrom('gzip', 'identity', 'br', 'gzip, deflate'), weight: 1 }),
  gzipBody: fc.boolean(),
  body: mutation,
  chunkSha: fc.oneof({ arbitrary: fc.constant(CHUNK_SHA), weight: 3 }, { arbitrary: fc.oneof(headerString, fc.constant(undefined)), weight: 1 }),
  range: fc.oneof({ arbitrary: fc.constant(undefined), weight: 3 },
    { arbitrary: fc.oneof(headerString, fc.constantFrom('bytes=0-1', 'bytes=-5', 'bytes=5-', 'bytes=0-1,3-4', 'bytes=99999999999999999999-')), weight: 2 }),
  chunk: fc.oneof({ arbitrary: fc.constant('0'), weight: 3 }, { arbitrary: fc.constantFrom('-1', '1', 'x', '99999999999', '0x0', '%zz'), weight: 1 }),
});

type FuzzRequest = typeof requestArb extends fc.Arbitrary<infer T> ? T : never;

function authHeader(kind: FuzzRequest['auth']): string | string[] | undefined {
  switch (kind) {
    case 'agent': return `ApiKey ${agent.apiKey}`;
    case 'enrollment': return `ApiKey ${token}`;
    case 'none': return undefined;
    case 'garbage': return 'ApiKey ' + Buffer.from('abc:def').toString('base64');
    case 'two': return [`ApiKey ${agent.apiKey}`, `ApiKey ${token}`];
    case 'bearer': return 'Bearer x';
    case 'not-base64': return 'ApiKey ***';
  }
}

async function send(r: FuzzRequest): Promise<{ res: Response | 'held'; method: string }> {
  const id = r.id ?? agent.id;
  const path = { enroll: '/api/fleet/agents/enroll', checkin: `/api/fleet/agents/${id}/checkin`, acks: `/api/fleet/agents/${id}/acks`,
    audit: `/api/fleet/agents/${id}/audit/unenroll`, status: '/api/status',
    pgp: `/api/agents/upgrades/${r.id ?? '9.6.0'}/pgp-public-key`, uploadBegin: '/api/fleet/uploads',
    uploadChunk: `/api/fleet/uploads/${r.id ?? uploadId}/${r.chunk}`, uploadComplete: `/api/fleet/uploads/${r.id ?? uploadId}`,
    file: `/api/fleet/file/${r.id ?? fileId}`, artifact: `/api/fleet/artifacts/${r.id ?? 'endpoint-exceptionlist-linux-v1'}/${'a'.repeat(64)}` }[r.route] + r.extraSegment;
  const method = r.method ?? (GETS.has(r.route) ? 'GET' : r.route === 'uploadChunk' ? 'PUT' : 'POST');
  let body = method === 'GET' || method === 'HEAD' ? undefined : bodyFor(r.route, r.body);
  const headers: Record<string, string | string[]> = { 'User-Agent': r.userAgent, 'Content-Type': 'application/json' };
  const auth = authHeader(r.auth);
  if (auth !== undefined) headers['Authorization'] = auth;
  if (r.apiVersion !== undefined) headers['elastic-api-version'] = r.apiVersion;
  if (r.encoding !== undefined) headers['Content-Encoding'] = r.encoding;
  if (r.route === 'uploadChunk' && r.chunkSha !== undefined) headers['X-Chunk-SHA2'] = r.chunkSha;
  if (r.route === 'file' && r.range !== undefined) headers['Range'] = r.range;
  if (body !== undefined && r.encoding === 'gzip' && r.gzipBody) body = gzipSync(body);
  // A valid check-in may be held as a long poll (1 s, or a minute when it names poll_timeout): a held
  // poll is a success, so the client stops waiting after a few seconds.
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), 4000);
  try {
    return { res: await request(`${server.url}${path}`, { method, headers, body, signal: ac.signal }), method };
  } catch (err) {
    if (ac.signal.aborted) return { res: 'held', method };
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

test('every route, fuzzed: never a 5xx, refusals in the error shape, the server alive and logging no errors', async () => {
  const before = server.logs().length;
  const seen = new Map<number | 'held', number>();
  await fc.assert(fc.asyncProperty(requestArb, async (r) => {
    const { res, method } = await send(r);
    seen.set(res === 'held' ? 'held' : res.status, (seen.get(res === 'held' ? 'held' : res.status) ?? 0) + 1);
    if (res === 'held') return;
    // The one 5xx that is no failure: the PGP key route on a server without TLS (upstream's 501).
    const tlsRequired = r.route === 'pgp' && res.status === 501 && (method === 'HEAD' || res.json?.error === 'ErrTLSRequired');
    if (!tlsRequired) expect(res.status).toBeLessThan(500);
    if (res.status >= 400 && method !== 'HEAD') {
      expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
      expect(res.json).toEqual(expect.objectContaining({ statusCode: res.status, error: expect.any(String) }));
    }
    if (res.status === 405) expect(res.headers['allow']).toBeDefined();
    if (res.status === 429) expect(res.headers['retry-after']).toBeDefined();
  }), { numRuns: 700 });
  // The fuzzer reached past authentication and validation (answers of 200), not only the first refusal.
  expect(seen.get(200) ?? 0).toBeGreaterThan(0);
  expect([...seen.keys()].filter((s) => typeof s === 'number' && s >= 400).length).toBeGreaterThan(4);
  expect(server.exitCode).toBeUndefined();
  expect((await request(`${server.url}/api/status`)).status).toBe(200);
  expect(server.logs().slice(before).filter((l) => l['log.level'] === 'error')).toEqual([]);
}, 120_000);
