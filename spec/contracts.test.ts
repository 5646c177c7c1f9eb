// The project's own contracts — docs/openapi.yaml and docs/fleet-documents.schema.json — are complete for
// the routes the server has, are not vacuous, and describe what the fleet logic actually produces. When
// upstream's contracts sit beside the checkout (../shared/reference/upstream), ours are also checked to
// agree with them; otherwise that is announced, not silently skipped.
import { Router } from '../src/http/router';
import { ROUTES as DECLARED_ROUTES } from '../src/http/routes';
import { ackAnswer } from '../src/http/handlers/acks';
import { classify, errorBody, HttpError, type HttpErrorCode } from '../src/http/errors';
import { FleetError, type FleetErrorCode } from '../src/fleet/errors';
import type { CheckinResult } from '../src/fleet/checkin';
import { UploadService } from '../src/fleet/uploads';
import type { Store } from '../src/store/port';
import pino from 'pino';
import { esPolicy, InProcessFleet } from './support/in-process-fleet';
import { expectSchema, openApiDocument, openApiValidator, responseProblems } from './support/openapi';
import { documentSchema, documentValidator, expectDocument, withoutNulls } from './support/schema';
import {
  UPSTREAM_DIR, upstreamApiErrors, upstreamApiSchemas, upstreamAvailable, upstreamDocumentDefinitions, upstreamDocumentErrors,
} from './support/upstream';

type Node = Record<string, any>;

const ROUTES: [method: string, path: string, concrete: string][] = [
  ['get', '/api/status', '/api/status'],
  ['post', '/api/fleet/agents/enroll', '/api/fleet/agents/enroll'],
  ['post', '/api/fleet/agents/{id}/checkin', '/api/fleet/agents/a-1/checkin'],
  ['post', '/api/fleet/agents/{id}/acks', '/api/fleet/agents/a-1/acks'],
  ['post', '/api/fleet/agents/{id}/audit/unenroll', '/api/fleet/agents/a-1/audit/unenroll'],
  ['get', '/api/fleet/artifacts/{id}/{sha2}', `/api/fleet/artifacts/endpoint-exceptionlist-linux-v1/${'ab'.repeat(32)}`],
  ['post', '/api/fleet/uploads', '/api/fleet/uploads'],
  ['put', '/api/fleet/uploads/{id}/{n}', '/api/fleet/uploads/u-1/0'],
  ['post', '/api/fleet/uploads/{id}', '/api/fleet/uploads/u-1'],
  ['get', '/api/fleet/file/{id}', '/api/fleet/file/f-1'],
  ['get', '/api/agents/upgrades/{version}/pgp-public-key', '/api/agents/upgrades/9.6.0/pgp-public-key'],
  ['post', '/v1/opamp', '/v1/opamp'],
  ['get', '/v1/opamp', '/v1/opamp'],
];

/**
 * The errors each file route raises beyond the generic ones (authentication, limits, store): each must be
 * named, by its identifier, under its status in the route's documentation.
 */
const FILE_ROUTE_ERRORS: Record<string, (FleetErrorCode | HttpErrorCode)[]> = {
  'get /api/fleet/artifacts/{id}/{sha2}': [
    'AgentNotFound', 'AgentCorrupted', 'MalformedSha256', 'NoPolicyId', 'ArtifactNotAuthorized', 'ArtifactThrottled', 'NotFound',
    'ArtifactCorrupted',
  ],
  'post /api/fleet/uploads': [
    'AgentNotFound', 'AgentCorrupted', 'FileInfoBodyRequired', 'AgentIdMissing', 'AgentIdentity', 'FileFeatureDisabled',
    'FileSizeRequired', 'InvalidFileSize', 'FileSizeTooLarge', 'FieldRequired', 'UploadExists', 'PayloadTooLarge', 'TooManyUploads',
    'BadRequest',
  ],
  'put /api/fleet/uploads/{id}/{n}': [
    'AgentNotFound', 'AgentCorrupted', 'InvalidChunkNum', 'ChunkHashRequired', 'InvalidFileId', 'AgentIdentity', 'UploadExpired',
    'UploadStopped', 'HashMismatch',
  ],
  'post /api/fleet/uploads/{id}': [
    'AgentNotFound', 'AgentCorrupted', 'TransitHashRequired', 'InvalidFileId', 'AgentIdentity', 'UploadExpired', 'StatusNoUploads',
    'MissingChunks', 'FailValidation', 'PayloadTooLarge', 'BadRequest',
  ],
  'get /api/fleet/file/{id}': ['AgentNotFound', 'AgentCorrupted', 'ClientFileForbidden', 'NoFile', 'RangeNotSatisfiable'],
};

/** Follows a local "#/…" reference inside `root`. */
function deref(root: Node, node: Node): Node {
  let n = node;
  while (n && typeof n['$ref'] === 'string') {
    const ref = n['$ref'] as string;
    if (!ref.startsWith('#/')) throw new Error(`non-local $ref ${ref}`);
    n = ref.slice(2).split('/').reduce<any>((o, k) => o?.[k.replace(/~1/g, '/').replace(/~0/g, '~')], root);
    if (n === undefined) throw new Error(`unresolved $ref ${ref}`);
  }
  return n;
}

function refsIn(node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) node.forEach((n) => refsIn(n, out));
  else if (node && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) if (k === '$ref' && typeof v === 'string') out.push(v); else refsIn(v, out);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// The API description

describe('docs/openapi.yaml', () => {
  const doc = openApiDocument() as Node;

  test('is OpenAPI 3.1, every $ref resolves and every schema compiles', () => {
    expect(doc['openapi']).toMatch(/^3\.1\./);
    const refs = refsIn(doc);
    expect(refs.length).toBeGreaterThan(50);
    for (const ref of refs) expect(() => deref(doc, { $ref: ref })).not.toThrow();
    for (const name of Object.keys(doc['components']['schemas'])) expect(typeof openApiValidator(name)).toBe('function');
  });

  test('documents exactly the routes the router serves, each with its method', () => {
    const documented = Object.entries(doc['paths'] as Node).flatMap(([p, ops]) => Object.keys(ops).filter((m) => m !== 'parameters').map((m) => `${m} ${p}`));
    expect(documented.sort()).toEqual(ROUTES.map(([m, p]) => `${m} ${p}`).sort());
    const declared = DECLARED_ROUTES.map((r) => `${r.method.toLowerCase()} ${r.path.replace(/:(\w+)/g, '{$1}')}`);
    expect(declared.sort()).toEqual(ROUTES.map(([m, p]) => `${m} ${p}`).sort());
    const router = new Router(DECLARED_ROUTES);
    for (const [method, path, concrete] of ROUTES) {
      expect(router.match(method.toUpperCase(), concrete).route.method).toBe(method.toUpperCase());
      // A method the path does not serve (/v1/opamp serves both GET and POST).
      const methods = ROUTES.filter(([, p]) => p === path).map(([m]) => m);
      const other = ['GET', 'POST', 'PUT'].find((m) => !methods.includes(m.toLowerCase()))!;
      const allow = DECLARED_ROUTES.filter((r) => r.path.replace(/:(\w+)/g, '{$1}') === path).map((r) => (r.method === 'GET' ? 'GET, HEAD' : r.method)).join(', ');
      let refused: unknown;
      try {
        router.match(other, concrete);
      } catch (err) {
        refused = err;
      }
      expect(refused).toBeInstanceOf(HttpError);
      expect(refused).toMatchObject({ code: 'MethodNotAllowed', headers: { Allow: allow } });
    }
  });

  test('every response names X-Request-Id; 429 names Retry-After, 405 Allow; routed answers Elastic-Api-Version', () => {
    for (const [method, path] of ROUTES) {
      const op = doc['paths'][path][method] as Node;
      // A WebSocket route switches protocols (101) instead of answering 200.
      const ok = '101' in (op['responses'] as Node) ? '101' : '200';
      expect(Object.keys(op['responses'])).toEqual(expect.arrayContaining([ok, '400', '405', '429']));
      for (const [status, r] of Object.entries(op['responses'] as Node)) {
        const headers = Object.keys(deref(doc, r as Node)['headers'] ?? {});
        const where = `${method} ${path} ${status}`;
        expect({ where, headers }).toEqual({ where, headers: expect.arrayContaining(['X-Request-Id']) });
        if (status === '429') expect({ where, headers }).toEqual({ where, headers: expect.arrayContaining(['Retry-After']) });
        if (status === '405') expect({ where, headers }).toEqual({ where, headers: expect.arrayContaining(['Allow']) });
        if (status === '200') expect({ where, headers }).toEqual({ where, headers: expect.arrayContaining(['Elastic-Api-Version']) });
      }
      const params = (op['parameters'] as Node[]).map((p) => deref(doc, p)['name']);
      expect(params).toEqual(expect.arrayContaining(['Elastic-Api-Version', 'X-Request-Id']));
      if (path.includes('{id}')) expect(params).toContain('id');
      if (/agents\/enroll$|checkin$/.test(path)) expect(params).toContain('User-Agent');
      if (method === 'put') expect(params).toContain('X-Chunk-SHA2');
      if (path.startsWith('/api/fleet/file/')) expect(params).toEqual(expect.arrayContaining(['source', 'Range', 'X-elastic-product-origin']));
    }
  });

  test('every error a file route raises is named under its status, in the error shape', () => {
    expect(Object.keys(FILE_ROUTE_ERRORS).sort()).toEqual(ROUTES.map(([m, p]) => `${m} ${p}`).filter((r) => /fleet\/(artifacts|uploads|file)/.test(r)).sort());
    for (const [route, codes] of Object.entries(FILE_ROUTE_ERRORS)) {
      const [method, path] = route.split(' ') as [string, string];
      const responses = doc['paths'][path][method]['responses'] as Node;
      for (const code of codes) {
        const c = classify(code in ALL_HTTP_ERROR_CODES ? new HttpError(code as HttpErrorCode) : new FleetError(code as FleetErrorCode));
        const where = `${route} ${code} → ${c.status}`;
        const declared = responses[String(c.status)] as Node | undefined;
        expect({ where, documented: declared !== undefined }).toEqual({ where, documented: true });
        const r = deref(doc, declared!);
        expect({ where, names: (r['description'] as string).includes(`\`${c.error}\``) }).toEqual({ where, names: true });
        expect({ where, error: r['content']?.['application/json']?.['schema'] }).toEqual({ where, error: { $ref: '#/components/schemas/error' } });
      }
    }
  });

  test('every error the server can answer with matches the error schema', () => {
    const codes = Object.keys(ALL_ERROR_CODES) as FleetErrorCode[];
    expect(codes.length).toBeGreaterThan(20);
    for (const code of codes) expectSchema('error', errorBody(classify(new FleetError(code, 'detail'))));
    for (const code of Object.keys(ALL_HTTP_ERROR_CODES) as HttpErrorCode[]) expectSchema('error', errorBody(classify(new HttpError(code, 'detail'))));
    expectSchema('error', errorBody(classify(new Error('anything else'))));
  });

  test('responses of documented routes are checked: status, headers and body', () => {
    const base = { method: 'POST', url: 'http://x/api/fleet/agents/a-1/acks', text: '{}', json: {} };
    const ok = { 'x-request-id': 'r', 'elastic-api-version': '2023-06-01', 'content-type': 'application/json' };
    expect(responseProblems({ ...base, status: 200, headers: ok, json: { action: 'acks' }, text: '{"action":"acks"}' })).toEqual([]);
    expect(responseProblems({ ...base, status: 200, headers: { ...ok, 'x-request-id': undefined }, json: { action: 'acks' } }))
      .toEqual(['POST /api/fleet/agents/{id}/acks → 200: header X-Request-Id missing']);
    expect(responseProblems({ ...base, status: 200, headers: { ...ok, 'elastic-api-version': '2024-01-01' }, json: { action: 'acks' } })[0])
      .toMatch(/header Elastic-Api-Version "2024-01-01"/);
    expect(responseProblems({ ...base, status: 200, headers: ok, json: { action: 'checkin' } })[0]).toMatch(/→ 200: body/);
    expect(responseProblems({ ...base, status: 418, headers: ok })).toEqual(['POST /api/fleet/agents/{id}/acks → 418: status not documented']);
    const notAllowed = { statusCode: 405, error: 'MethodNotAllowed', message: 'method not allowed' };
    expect(responseProblems({ ...base, method: 'GET', status: 405, headers: { 'x-request-id': 'r', 'content-type': 'application/json' }, json: notAllowed, text: JSON.stringify(notAllowed) }))
      .toEqual(['GET /api/fleet/agents/{id}/acks → 405: header Allow missing']);
    expect(responseProblems({ ...base, method: 'GET', status: 200, headers: ok })).toEqual(['GET /api/fleet/agents/{id}/acks → 200: another method than the documented one must answer 405']);
    const capacity = { statusCode: 429, error: 'MaxConnections', message: 'Server capacity exceeded.' };
    const json = 'application/json; charset=utf-8';
    expect(responseProblems({ ...base, url: 'http://x/api/status', method: 'GET', status: 429, headers: { 'x-request-id': 'r', 'retry-after': '5', 'content-type': json }, json: capacity, text: JSON.stringify(capacity) })).toEqual([]);
    expect(responseProblems({ ...base, url: 'http://x/api/status', method: 'GET', status: 429, headers: { 'x-request-id': 'r', 'content-type': json }, json: capacity, text: JSON.stringify(capacity) }))
      .toEqual(['GET /api/status → 429: header Retry-After missing']);
    expect(responseProblems({ ...base, url: 'http://x/api/status', method: 'GET', status: 429, headers: { 'x-request-id': 'r', 'retry-after': '5', 'content-type': 'text/plain' }, text: 'x' })[0])
      .toMatch(/content type "text\/plain" not documented/);
    expect(responseProblems({ ...base, url: 'http://x/nowhere', status: 404, headers: {} })).toEqual([]);
    // File delivery: the body's type is the file's; ranges need their headers.
    const file = { method: 'GET', url: 'http://x/api/fleet/file/f-1', text: 'PK…', json: undefined };
    const whole = { ...ok, 'content-type': 'application/zip', 'accept-ranges': 'bytes', 'content-length': '3' };
    expect(responseProblems({ ...file, status: 200, headers: whole })).toEqual([]);
    expect(responseProblems({ ...file, status: 200, headers: { ...whole, 'content-type': undefined } })[0]).toMatch(/content type "" not documented/);
    expect(responseProblems({ ...file, status: 200, headers: { ...whole, 'accept-ranges': undefined } })).toEqual(['GET /api/fleet/file/{id} → 200: header Accept-Ranges missing']);
    expect(responseProblems({ ...file, status: 206, headers: { ...whole, 'content-range': 'bytes 0-2/10' } })).toEqual([]);
    expect(responseProblems({ ...file, status: 206, headers: whole })).toEqual(['GET /api/fleet/file/{id} → 206: header Content-Range missing']);
    const unsatisfiable = { statusCode: 416, error: 'ErrRangeNotSatisfiable', message: 'range not satisfiable' };
    const refused = { ...file, status: 416, json: unsatisfiable, text: JSON.stringify(unsatisfiable) };
    expect(responseProblems({ ...refused, headers: { ...ok, 'content-range': 'bytes */10' } })).toEqual([]);
    expect(responseProblems({ ...refused, headers: { ...ok, 'content-range': 'bytes 0-2/10' } })[0]).toMatch(/header Content-Range "bytes 0-2\/10"/);
    const chunk = { method: 'PUT', url: 'http://x/api/fleet/uploads/u-1/0', text: '', json: undefined };
    expect(responseProblems({ ...chunk, status: 200, headers: ok })).toEqual([]);
    expect(responseProblems({ ...chunk, status: 200, headers: ok, text: 'x' })).toEqual(['PUT /api/fleet/uploads/{id}/{n} → 200: a body where none is documented']);
  });

  test('the schemas refuse what the server never sends', () => {
    const refuse = (name: string, value: unknown): void => expect(openApiValidator(name)(value)).toBe(false);
    refuse('error', { error: 'X' });
    refuse('error', { statusCode: 400, error: 'X', message: '' });
    refuse('statusResponse', { name: 'fleet-server', status: 'healthy' });
    refuse('checkinResponse', { action: 'checkin' });
    refuse('checkinResponse', { ack_token: '', action: 'checkin', actions: [] });
    const action = { id: 'a', agent_id: 'b', type: 'SETTINGS', created_at: 't', input_type: '', data: { log_level: 'debug' } };
    expect(openApiValidator('action')(action)).toBe(true);
    refuse('action', { ...action, data: { log_level: 'debug', extra: 1 } });
    refuse('action', { ...action, type: 'UNENROLL' });
    refuse('action', { ...action, type: 'POLICY_CHANGE', data: {} });
    refuse('action', { ...action, type: 'UPDATE_TAGS' });
    refuse('action', { ...action, surprise: true });
    refuse('ackResponse', { action: 'acks', errors: false });
    refuse('ackResponse', { action: 'acks', items: [] });
    refuse('enrollResponse', { action: 'created', item: {} });
    const begin = { file: { name: 'a.zip', mime_type: 'application/zip', size: 1 }, action_id: 'x', agent_id: 'a', src: 'agent', contents: [] };
    expect(openApiValidator('uploadBeginRequest')(begin)).toBe(true);
    refuse('uploadBeginRequest', { ...begin, src: '../x' });
    refuse('uploadBeginRequest', { ...begin, file: { ...begin.file, size: 0 } });
    refuse('uploadBeginRequest', { ...begin, agent_id: undefined });
    refuse('uploadBeginResponse', { upload_id: 'u', chunk_size: 1024 });
    refuse('uploadBeginResponse', { upload_id: 'u', chunk_size: 4194304, extra: 1 });
    refuse('uploadCompleteRequest', { transithash: {} });
    refuse('uploadCompleteResponse', { status: 'done' });
  });
});

/** Every FleetErrorCode: the Record type makes typecheck fail when a code is added and not listed here. */
const ALL_ERROR_CODES: Record<FleetErrorCode, true> = {
  AgentNotFound: true, ApiKeyDisabled: true, ClientClosed: true, AgentNotReplaceable: true, InvalidUserAgent: true,
  UnsupportedVersion: true, RateLimit: true, MaxLimit: true, EnrollDuplicate: true,
  AgentIdentity: true, AgentCorrupted: true, AgentInactive: true, NoAuthHeader: true,
  MalformedHeader: true, Unauthorized: true, MalformedToken: true, InvalidToken: true,
  PolicyNotFound: true, AuditReasonConflict: true, BadRequest: true, InvalidApiVersionFormat: true,
  UnsupportedApiVersion: true, Internal: true,
  NotFound: true, NoPolicyId: true, ArtifactNotAuthorized: true, ArtifactThrottled: true, ArtifactCorrupted: true,
  MalformedSha256: true, FileInfoBodyRequired: true, AgentIdMissing: true, FileFeatureDisabled: true, FileSizeTooLarge: true,
  FileSizeRequired: true, InvalidFileSize: true, FieldRequired: true, UploadExists: true, InvalidFileId: true,
  UploadExpired: true, UploadStopped: true, InvalidChunkNum: true, ChunkHashRequired: true, HashMismatch: true,
  TransitHashRequired: true, StatusNoUploads: true, MissingChunks: true, FailValidation: true, PayloadTooLarge: true, TooManyUploads: true,
  NoFile: true, ClientFileForbidden: true,
};
const ALL_HTTP_ERROR_CODES: Record<HttpErrorCode, true> = {
  RouteNotFound: true, MethodNotAllowed: true, MalformedUrl: true, MaxConnections: true, RequestTimeout: true,
  HeaderTooLarge: true, MalformedRequest: true, BodyTooComplex: true, BodyBudget: true,
  TlsRequired: true, PgpKeyMissing: true, PgpKeyUnsafe: true, RangeNotSatisfiable: true,
};

// ---------------------------------------------------------------------------------------------------------
// The document schema

describe('docs/fleet-documents.schema.json', () => {
  test('compiles in strict mode and declares the five documents the server writes', () => {
    for (const d of ['agent', 'policy', 'action', 'action-result', 'enrollment_api_key']) expect(typeof documentValidator(d)).toBe('function');
    expect(Object.keys(documentSchema().$defs)).toEqual(expect.arrayContaining(['agent', 'policy', 'action', 'action-result', 'enrollment_api_key']));
  });

  test('refuses documents the server never writes', () => {
    const refuse = (d: string, doc: unknown): void => expect(documentValidator(d)(withoutNulls(doc))).toBe(false);
    const agent = { active: true, type: 'PERMANENT', enrolled_at: '2030-01-01T00:00:00Z', agent: { id: 'a', version: '9.6.0' } };
    expect(documentValidator('agent')(agent)).toBe(true);
    refuse('agent', { ...agent, enrolled_at: '2030-01-01T00:00:00.123Z' });
    refuse('agent', { ...agent, agent: { id: 'a' } });
    refuse('agent', { ...agent, outputs: { default: { api_key: 'x' } } });
    refuse('agent', { ...agent, unknown_field: 1 });
    refuse('action-result', { action_id: 'a', agent_id: 'b' });
    refuse('policy', { '@timestamp': '2030-01-01T00:00:00Z', policy_id: 'p', revision_idx: 1, default_fleet_server: false, data: { id: 'p', revision: 1, outputs: {} } });
  });
});

// ---------------------------------------------------------------------------------------------------------
// What the fleet logic produces, rendered as the HTTP edge renders it

interface Samples {
  api: [schema: string, value: unknown][];
  documents: [definition: string, doc: unknown][];
}

const wireCheckin = (r: CheckinResult): Node => {
  const out: Node = { ack_token: r.ackToken, action: 'checkin' };
  if (r.policy) out['actions'] = [JSON.parse(r.policy.template.render(r.policy.values))];
  else if (r.actionsJson !== undefined) out['actions'] = JSON.parse(r.actionsJson);
  return out;
};

async function lifecycleSamples(): Promise<Samples> {
  const f = await InProcessFleet.start(esPolicy('p1', { agent: { monitoring: { enabled: false } }, fleet: { hosts: ['https://fleet:8220'] } }));
  try {
    const api: Samples['api'] = [];
    const token = await f.admin.createEnrollmentToken('p1', 'sample');
    const item = await f.fleet.enrollment.enroll({ policyId: 'p1', namespaces: ['default'] }, '9.6.0', {
      type: 'PERMANENT', metadata: { local: { elastic: { agent: { id: 'x', version: '9.6.0' } }, host: { hostname: 'h' } }, tags: ['b', 'a', 'b'] },
      enrollment_id: 'e-1', replace_token: 'r-1',
    });
    api.push(['enrollResponse', { action: 'created', item }]);
    const id = item.id;
    const checkin = async (body: Node, pollMs = 0): Promise<Node> =>
      wireCheckin(await (await f.beginCheckin(id, { status: 'online', message: 'Running', ...body }, pollMs)).result);
    api.push(['checkinResponse', await checkin({})]);
    // The begin answer depends on the store only through the create succeeding.
    const created: string[] = [];
    const uploadStore = { uploads: { listUploads: async () => [], countUploads: async () => 0, createUpload: async (src: string, docId: string) => { created.push(`${src}/${docId}`); return true; } } };
    const uploads = new UploadService(uploadStore as unknown as Store, { maxFileSize: undefined }, pino({ level: 'silent' }));
    api.push(['uploadBeginResponse', await uploads.begin(await f.agent(id), {
      file: { name: 'diag.zip', mime_type: 'application/zip', size: 9_000_000, hash: { sha256: 'ab'.repeat(32) } },
      action_id: 'diag-1', agent_id: id, src: 'agent', contents: [{ name: 'a.txt' }],
    })]);
    expect(created).toEqual([`agent/diag-1.${id}`]);
    await f.fleet.acks.ack(await f.agent(id), [{ action_id: 'policy:p1:1' } as never]);
    api.push(['checkinResponse', await checkin({ agent_policy_id: 'p1', policy_revision_idx: 1 })]);
    const hits = await f.createActions([
      { type: 'UPGRADE', agents: [id], data: { version: '9.6.1', source_uri: 'https://a', ignored: 1 }, start_time: '2030-01-01T01:00:00Z', rollout_duration_seconds: 60 },
      { type: 'SETTINGS', agents: [id], data: { log_level: 'debug' }, traceparent: '00-1-2-01', timeout: 30 },
      { type: 'REQUEST_DIAGNOSTICS', agents: [id], data: { additional_metrics: ['CPU'] } },
      { type: 'INPUT_ACTION', agents: [id], input_type: 'endpoint', data: { command: 'isolate' }, signed: { data: 'ZA==', signature: 'c2ln' } },
      { type: 'CANCEL', agents: [id], data: { target_id: 'x' } },
      { type: 'POLICY_REASSIGN', agents: [id], data: { policy_id: 'p2' } },
      { type: 'MIGRATE', agents: [id], data: { target_uri: 'https://other', enrollment_token: 't' } },
      { type: 'PRIVILEGE_LEVEL_CHANGE', agents: [id], data: { unprivileged: true, user_info: { username: 'u' } } },
    ]);
    const withActions = await checkin({ agent_policy_id: 'p1', policy_revision_idx: 1 });
    expect(withActions['actions']).toHaveLength(8);
    api.push(['checkinResponse', withActions]);
    const acks = await f.fleet.acks.ack(await f.agent(id), [
      ...hits.map((h) => ({ action_id: h._source.action_id, message: 'done', timestamp: '2030-01-01T00:00:02.123456789Z' })),
      { action_id: hits[3]!._source.action_id, action_input_type: 'endpoint', action_data: { command: 'isolate' }, action_response: { ok: true }, started_at: '2030-01-01T00:00:01Z', completed_at: '2030-01-01T00:00:02Z' },
      { action_id: 'missing' },
    ] as never);
    api.push(['ackResponse', ackAnswer(acks).body]);
    const ok = await f.fleet.acks.ack(await f.agent(id), [{ action_id: hits[0]!._source.action_id, error: 'retry', payload: { retry: true, retry_attempt: 1 } }] as never);
    api.push(['ackResponse', ackAnswer(ok).body]);
    await f.fleet.bookkeeper.flush();
    const [unenroll] = await f.createActions([{ type: 'UNENROLL', agents: [id] }]);
    const last = await checkin({ agent_policy_id: 'p1', policy_revision_idx: 1, ack_token: withActions['ack_token'] });
    api.push(['checkinResponse', last]);
    await f.fleet.acks.ack(await f.agent(id), [{ action_id: unenroll!._source.action_id }] as never);
    await f.fleet.bookkeeper.flush();

    const documents: Samples['documents'] = [];
    const agent = await f.agent(id);
    documents.push(['agent', { _id: agent._id, ...agent._source }]);
    for (const p of await f.store.latestPolicies()) documents.push(['policy', p._source]);
    for (const a of await f.store.listActions(100)) documents.push(['action', a._source]);
    for (const h of hits) for (const r of await f.store.listActionResults(h._source.action_id)) documents.push(['action-result', r._source]);
    documents.push(['enrollment_api_key', token._source]);
    return { api, documents };
  } finally {
    await f.stop();
  }
}

describe('what the fleet logic produces matches the contracts', () => {
  let samples: Samples;
  beforeAll(async () => { samples = await lifecycleSamples(); });

  test('responses of a whole lifecycle match docs/openapi.yaml', () => {
    expect(samples.api.length).toBeGreaterThanOrEqual(8);
    for (const [name, value] of samples.api) expectSchema(name, value);
  });

  test('documents of a whole lifecycle match docs/fleet-documents.schema.json', () => {
    expect(new Set(samples.documents.map(([d]) => d))).toEqual(new Set(['agent', 'policy', 'action', 'action-result', 'enrollment_api_key']));
    for (const [d, doc] of samples.documents) expectDocument(d, doc);
  });

  // ---------------------------------------------------------------------------------------------------------
  // Agreement with upstream, when its contracts are beside the checkout

  if (!upstreamAvailable()) {
    console.log(`contracts vs upstream: not run (no upstream contracts at ${UPSTREAM_DIR})`);
    return;
  }

  test('upstream: the same responses match upstream\'s openapi.yml', () => {
    for (const [name, value] of samples.api) expect({ name, errors: upstreamApiErrors(name, value) }).toEqual({ name, errors: undefined });
  });

  test('upstream: the same documents match upstream\'s schema.json', () => {
    for (const [d, doc] of samples.documents) expect({ d, errors: upstreamDocumentErrors(d, withoutNulls(doc)) }).toEqual({ d, errors: undefined });
  });

  test('upstream: every property we declare for a shared schema name, upstream declares with a compatible type', () => {
    const ours = openApiDocument() as Node;
    const theirsRoot = { components: { schemas: upstreamApiSchemas() } };
    const problems = compareSchemas(ours, ours['components']['schemas'], theirsRoot, upstreamApiSchemas(), API_ADDITIONS);
    expect(problems).toEqual([]);
  });

  test('upstream: the structural comparison notices a property upstream lacks or types otherwise', () => {
    const theirsRoot = { components: { schemas: upstreamApiSchemas() } };
    const ours: Node = { components: { schemas: {
      error: { type: 'object', properties: { statusCode: { type: 'string' }, error: { type: 'string' }, invented: { type: 'string' } } },
    } } };
    expect(compareSchemas(ours, ours['components']['schemas'], theirsRoot, upstreamApiSchemas(), {}, 0))
      .toEqual(['error.statusCode: ours string vs upstream number', 'error.invented: not declared upstream']);
  });

  test('upstream: every document property we declare, upstream declares with a compatible type', () => {
    const ours = documentSchema() as Node;
    const theirsRoot = { definitions: upstreamDocumentDefinitions() };
    const problems = compareSchemas(ours, ours['$defs'], theirsRoot, upstreamDocumentDefinitions(), DOCUMENT_ADDITIONS);
    expect(problems).toEqual([]);
  });
});

/** Properties ours declares that upstream's contract does not, each on purpose. */
const API_ADDITIONS: Record<string, string> = {
  'ackEvent.*': 'upstream splits events into genericEvent/upgradeEvent/…; ours is their union',
};
const DOCUMENT_ADDITIONS: Record<string, string> = {
  'policy.name': 'the admin CLI records the policy name, as Kibana does in its own index',
  'enrollment_api_key.api_key_prefix': 'the embedded store keeps no token, only its prefix for listing',
  'agent.remote_config_status': 'OpAMP remote configuration (beyond upstream): the state a Collector reported',
  'policy-data.opamp': 'OpAMP remote configuration (beyond upstream): what the policy\'s Collectors run',
  'policy_output.connection_hash': 'a remote output\'s connection when its key was minted: a moved output gets a new key, the old invalidated where it was minted',
};

/** JSON types a schema node admits, or 'any'. integer counts as number; null is left out (absent on the wire). */
function typesOf(root: Node, node: Node | undefined, seen = 0): Set<string> | 'any' {
  if (!node || seen > 20) return 'any';
  const n = deref(root, node);
  if (n['x-go-type'] === 'json.RawMessage' || n['format'] === 'raw') return 'any';
  const out = new Set<string>();
  const add = (t: string): void => { if (t !== 'null') out.add(t === 'integer' ? 'number' : t); };
  if (n['type'] !== undefined) [n['type']].flat().forEach(add);
  else if (n['const'] !== undefined) add(n['const'] === null ? 'null' : typeof n['const']);
  else if (Array.isArray(n['enum'])) n['enum'].forEach((v: unknown) => add(v === null ? 'null' : typeof v));
  else if (n['oneOf'] || n['anyOf']) {
    for (const branch of (n['oneOf'] ?? n['anyOf']) as Node[]) {
      const t = typesOf(root, branch, seen + 1);
      if (t === 'any') return 'any';
      t.forEach(add);
    }
  } else if (n['properties'] || n['additionalProperties'] !== undefined) add('object');
  else return 'any';
  return out;
}

function compareSchemas(oursRoot: Node, ours: Record<string, Node>, theirsRoot: Node, theirs: Record<string, Node>,
  additions: Record<string, string>, minCompared = 20): string[] {
  const problems: string[] = [];
  let compared = 0;
  for (const [name, mine] of Object.entries(ours)) {
    const their = theirs[name];
    if (!their || !mine['properties']) continue;
    const theirProps = (deref(theirsRoot, their)['properties'] ?? {}) as Record<string, Node>;
    for (const [prop, schema] of Object.entries(mine['properties'] as Record<string, Node>)) {
      if (additions[`${name}.${prop}`] || additions[`${name}.*`]) continue;
      compared++;
      if (!(prop in theirProps)) {
        problems.push(`${name}.${prop}: not declared upstream`);
        continue;
      }
      const a = typesOf(oursRoot, schema);
      const b = typesOf(theirsRoot, theirProps[prop]);
      if (b === 'any') continue;
      if (a === 'any' || [...a].some((t) => !b.has(t))) problems.push(`${name}.${prop}: ours ${a === 'any' ? 'any' : [...a]} vs upstream ${[...b]}`);
    }
  }
  if (compared < minCompared) problems.push(`only ${compared} properties compared: the shared names no longer line up`);
  return problems;
}
