// Bad input on every endpoint gets its 4xx in upstream's error shape, and the server keeps serving.
import { gzipSync } from 'node:zlib';
import { SimAgent } from './support/agent';
import { cli } from './support/cli';
import { removeDir, startFleetServer, type FleetServerProcess } from './support/fleet-server';
import { request, type Response } from './support/http';
import { expectSchema } from './support/openapi';

let server: FleetServerProcess;
let token: string;
let a: SimAgent;
let b: SimAgent;

beforeAll(async () => {
  server = await startFleetServer({ overrides: [
    'inputs.0.server.timeouts.checkin_long_poll=2s', 'inputs.0.server.timeouts.checkin_jitter=0s', 'inputs.0.server.compression_threshold=256',
  ] });
  token = (await server.enrollmentToken());
  a = new SimAgent(server.url);
  b = new SimAgent(server.url);
  expect((await a.enroll(token)).status).toBe(200);
  expect((await b.enroll(token)).status).toBe(200);
});

afterAll(async () => {
  expect(await server.stop()).toBe(0);
  removeDir(server.dataDir);
});

function expectError(res: Response, status: number, error: string, message?: string | RegExp): void {
  expect({ status: res.status, error: res.json?.error }).toEqual({ status, error });
  expectSchema('error', res.json);
  expect(res.json.statusCode).toBe(status);
  expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
  if (typeof message === 'string') expect(res.json.message).toBe(message);
  else if (message) expect(res.json.message).toMatch(message);
}

const enrollBody = JSON.stringify({ type: 'PERMANENT', metadata: { local: {}, user_provided: {} } });
const ua = { 'User-Agent': 'Elastic Agent 9.6.0' };
const b64 = (s: string): string => Buffer.from(s).toString('base64');

function enroll(headers: Record<string, string | string[]>, body: string | Buffer = enrollBody): Promise<Response> {
  return request(`${server.url}/api/fleet/agents/enroll`, { method: 'POST', headers, body });
}

describe('Authorization header', () => {
  test.each([
    ['absent', {}, 401, 'ErrNoAuthHeader', 'no authorization header'],
    ['wrong scheme', { Authorization: 'Bearer abc' }, 400, 'ErrMalformedHeader', 'malformed authorization header'],
    ['two headers', { Authorization: ['ApiKey a', 'ApiKey b'] }, 400, 'ErrMalformedHeader', undefined],
    ['not base64', { Authorization: 'ApiKey !!!***' }, 401, 'ErrInvalidToken', 'token not valid utf8'],
    ['not utf8', { Authorization: `ApiKey ${Buffer.from([0xff, 0xfe, 0x3a, 0x41]).toString('base64')}` }, 401, 'ErrInvalidToken', undefined],
    ['no colon', { Authorization: `ApiKey ${b64('nocolon')}` }, 400, 'ErrMalformedToken', 'malformed token'],
    ['unknown key', { Authorization: `ApiKey ${b64('AAAAAAAAAAAAAAAAAAAA:BBBBBBBBBBBBBBBBBBBBBB')}` }, 401, 'ErrUnauthorized', 'unauthorized'],
  ])('enroll with %s → %i %s', async (_n, headers, status, error, message) => {
    expectError(await enroll({ ...ua, ...(headers as Record<string, string>) }), status, error, message);
  });

  test('an agent access key cannot enroll', async () => {
    expectError(await enroll({ ...ua, Authorization: `ApiKey ${a.apiKey}` }), 401, 'ErrUnauthorized');
  });

  test("another agent's key cannot check in as this agent", async () => {
    const res = await request(`${server.url}/api/fleet/agents/${a.id}/checkin`, {
      method: 'POST', headers: { ...ua, Authorization: `ApiKey ${b.apiKey}` }, body: '{"status":"online"}',
    });
    expectError(res, 403, 'ErrAgentIdentity', 'Agent header contains wrong identifier');
  });

  test('an unknown agent id answers 403, as upstream', async () => {
    const res = await request(`${server.url}/api/fleet/agents/nope/acks`, {
      method: 'POST', headers: { Authorization: `ApiKey ${a.apiKey}` }, body: '{"events":[]}',
    });
    expectError(res, 403, 'ErrAgentIdentity');
  });
});

describe('User-Agent and API version', () => {
  test.each([
    ['missing', {}, 'InvalidUserAgent'],
    ['not an agent', { 'User-Agent': 'curl/8.0' }, 'InvalidUserAgent'],
    ['dash instead of space', { 'User-Agent': 'elastic-agent 9.6.0' }, 'InvalidUserAgent'],
    ['too old', { 'User-Agent': 'Elastic Agent 7.12.9' }, 'UnsupportedVersion'],
    ['newer minor than the server', { 'User-Agent': 'Elastic Agent 9.7.0' }, 'UnsupportedVersion'],
  ])('enroll with User-Agent %s → 400 %s', async (_n, headers, error) => {
    expectError(await enroll({ Authorization: `ApiKey ${token}`, ...headers }), 400, error);
  });

  test('newer patch and snapshot suffixes are accepted', async () => {
    expect((await enroll({ Authorization: `ApiKey ${token}`, 'User-Agent': 'Elastic Agent 9.6.9-SNAPSHOT' })).status).toBe(200);
    expect((await enroll({ Authorization: `ApiKey ${token}`, 'User-Agent': 'elastic agent 8.19' })).status).toBe(200);
  });

  test.each([
    ['2023/06/01', 'ErrInvalidAPIVersionFormat', /expected a valid date string formatted as YYYY-MM-DD/],
    ['2020-01-01', 'ErrUnsupportedAPIVersion', /is not supported\. supported versions are: \[2023-06-01\]/],
  ])('elastic-api-version %s → 400 %s', async (v, error, message) => {
    const res = await request(`${server.url}/api/status`, { headers: { 'elastic-api-version': v } });
    expectError(res, 400, error, message);
    expect(res.headers['elastic-api-version']).toBe('2023-06-01');
  });

  test('a supported version is echoed', async () => {
    const res = await request(`${server.url}/api/status`, { headers: { 'elastic-api-version': '2023-06-01' } });
    expect(res.status).toBe(200);
    expect(res.headers['elastic-api-version']).toBe('2023-06-01');
  });
});

describe('bodies', () => {
  const auth = (): Record<string, string> => ({ ...ua, Authorization: `ApiKey ${token}` });
  test.each([
    ['malformed JSON', '{"type":'],
    ['wrong type for type', '{"type":5,"metadata":{}}'],
    ['missing metadata', '{"type":"PERMANENT"}'],
    ['tags not strings', '{"type":"PERMANENT","metadata":{"tags":[1]}}'],
    ['unknown enroll type', '{"type":"FOREVER","metadata":{}}'],
    ['empty body', ''],
  ])('enroll with %s → 400 BadRequest', async (_n, body) => {
    expectError(await enroll(auth(), body), 400, 'BadRequest', /^Bad request: /);
  });

  test('an enroll body over 512 KiB → 400 request body too large', async () => {
    const big = JSON.stringify({ type: 'PERMANENT', metadata: { local: { pad: 'x'.repeat(600 * 1024) } } });
    expectError(await enroll(auth(), big), 400, 'BadRequest', /request body too large/);
  });

  const checkin = (body: string | Buffer, headers: Record<string, string> = {}): Promise<Response> => request(`${server.url}/api/fleet/agents/${a.id}/checkin`, {
    method: 'POST', headers: { ...a.headers(), ...headers }, body,
  });

  test.each([
    ['malformed JSON', '{"status":'],
    ['missing status', '{"message":"x"}'],
    ['empty status', '{"status":""}'],
    ['status not a string', '{"status":5}'],
    ['components not an array', '{"status":"online","components":{}}'],
    ['bad poll_timeout', '{"status":"online","poll_timeout":"soon"}'],
    ['policy_revision_idx not an integer', '{"status":"online","agent_policy_id":"p","policy_revision_idx":"1"}'],
  ])('checkin with %s → 400 BadRequest', async (_n, body) => {
    expectError(await checkin(body), 400, 'BadRequest', /^Bad request: /);
  });

  test('gzip request bodies are accepted; bad gzip is a 400', async () => {
    const ok = await checkin(gzipSync('{"status":"online","message":"gz","poll_timeout":"1s"}'), { 'Content-Encoding': 'gzip' });
    expect(ok.status).toBe(200);
    expectError(await checkin(Buffer.from('not gzip at all'), { 'Content-Encoding': 'gzip' }), 400, 'BadRequest', /gzip/);
  });

  test('a gzip bomb over the decompressed limit → 400 request body too large', async () => {
    const bomb = gzipSync(Buffer.from(`{"status":"online","message":"${'a'.repeat(21 * 1024 * 1024)}"}`));
    expect(bomb.length).toBeLessThan(1024 * 1024);
    expectError(await checkin(bomb, { 'Content-Encoding': 'gzip' }), 400, 'BadRequest', /request body too large/);
  });

  test('a raw check-in body over 1 MiB → 400 request body too large', async () => {
    expectError(await checkin(JSON.stringify({ status: 'online', message: 'x'.repeat(1100 * 1024) })), 400, 'BadRequest', /request body too large/);
  });

  test('acks: malformed body and wrong shapes → 400; items report per-event problems', async () => {
    const ack = (body: string): Promise<Response> => request(`${server.url}/api/fleet/agents/${a.id}/acks`, { method: 'POST', headers: a.headers(), body });
    expectError(await ack('{"events":'), 400, 'BadRequest');
    expectError(await ack('{"events":{}}'), 400, 'BadRequest');
    expectError(await ack('{"events":[{"agent_id":"x"}]}'), 400, 'BadRequest');
    const mixed = await ack(JSON.stringify({ events: [{ action_id: 'no-such-action' }, { action_id: 'x', agent_id: b.id }] }));
    expect(mixed.status).toBe(404);
    expect(mixed.json).toEqual({ action: 'acks', errors: true, items: [{ status: 404, message: 'Not Found' }, { status: 400, message: 'Bad Request' }] });
    expectSchema('ackResponse', mixed.json);
  });
});

describe('enrollment semantics', () => {
  test('an agent id can be replaced only with its replace token', async () => {
    const first = new SimAgent(server.url);
    const res = await first.enroll(token, { id: 'host-a', replace_token: 'secret-1' });
    expect(res.status).toBe(200);
    expect(res.json.item.id).toBe('host-a');
    expect((await first.checkin({ poll_timeout: '1s' })).status).toBe(200);
    const doc = await cli(server.dataDir, ['agents', 'show', 'host-a', '--show-secrets']);
    expect(doc.replace_token).toMatch(/^\$pbkdf2-sha512\$210000\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/);

    expectError(await new SimAgent(server.url).enroll(token, { id: 'host-a' }), 403, 'AgentNotReplaceable', 'existing agent cannot be replaced');
    expectError(await new SimAgent(server.url).enroll(token, { id: 'host-a', replace_token: 'wrong' }), 403, 'AgentNotReplaceable');

    const second = new SimAgent(server.url);
    const replaced = await second.enroll(token, { id: 'host-a', replace_token: 'secret-1' });
    expect(replaced.status).toBe(200);
    expect(replaced.json.item.enrolled_at).toBe(res.json.item.enrolled_at);
    // The replaced agent's old key no longer works; the new one does.
    expect((await first.checkin()).status).toBe(401);
    expect((await second.checkin({ poll_timeout: '1s' })).status).toBe(200);
  });

  test('a second enroll with the same enrollment_id removes a never-checked-in duplicate', async () => {
    const x = new SimAgent(server.url);
    const y = new SimAgent(server.url);
    expect((await x.enroll(token, { enrollment_id: 'e-1' })).status).toBe(200);
    expect((await y.enroll(token, { enrollment_id: 'e-1' })).status).toBe(200);
    const all = await cli(server.dataDir, ['agents', 'list', '--all']);
    const ids = all.filter((d: { enrollment_id?: string }) => d.enrollment_id === 'e-1').map((d: { _id: string }) => d._id);
    expect(ids).toEqual([y.id]);
    expect((await x.checkin()).status).toBe(401);
  });

  test('a revoked enrollment token can no longer enroll', async () => {
    const created = await cli(server.dataDir, ['enrollment-token', 'create', '--policy', 'default-policy', '--name', 'temp']);
    expect((await new SimAgent(server.url).enroll(created.api_key)).status).toBe(200);
    await cli(server.dataDir, ['enrollment-token', 'revoke', created.id]);
    expectError(await new SimAgent(server.url).enroll(created.api_key), 401, 'ErrUnauthorized');
  });
});

describe('responses', () => {
  test('check-in answers are gzip-compressed only for Accept-Encoding exactly "gzip"', async () => {
    const fresh = new SimAgent(server.url);
    await fresh.enroll(token);
    const gz = await fresh.checkin({}, { headers: { 'Accept-Encoding': 'gzip' } });
    expect(gz.status).toBe(200);
    expect(gz.headers['content-encoding']).toBe('gzip');
    expect(gz.json.actions[0].type).toBe('POLICY_CHANGE');
    const plain = await fresh.checkin({}, { headers: { 'Accept-Encoding': 'gzip, deflate' } });
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(plain.json.actions[0].type).toBe('POLICY_CHANGE');
    // The gzip answer (spliced into the revision's cached deflate) carries exactly the same document.
    expect(gz.json).toEqual(plain.json);
  });

  test('unknown routes → 404; wrong method → 405', async () => {
    expect((await request(`${server.url}/api/fleet/nothing`)).status).toBe(404);
    expect((await request(`${server.url}/api/fleet/agents/enroll`)).status).toBe(405);
  });

  test('the server is still serving after all of the above', async () => {
    const res = await request(`${server.url}/api/status`, { headers: { Authorization: `ApiKey ${a.apiKey}` } });
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ name: 'fleet-server', status: 'HEALTHY', version: { number: '9.6.0' } });
    expectSchema('statusResponse', res.json);
  });
});
