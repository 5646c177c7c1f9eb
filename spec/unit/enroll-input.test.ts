// Enroll input the store would refuse is a 400 before anything is minted or written, and what a client
// sent is neither echoed whole in the answer nor in the access log.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { EnrollRequest } from '../../src/fleet/messages';
import { FleetError, badRequest } from '../../src/fleet/errors';
import { classify } from '../../src/http/errors';
import { HttpService } from '../../src/http/server';
import { esPolicy, InProcessFleet, VERSION } from '../support/in-process-fleet';

describe('enroll input', () => {
  let f: InProcessFleet;
  let minted: number;
  beforeAll(async () => {
    f = await InProcessFleet.start(esPolicy('p1'));
    minted = 0;
    const createApiKey = f.store.createApiKey.bind(f.store);
    f.store.createApiKey = (req) => (minted++, createApiKey(req));
  });
  afterAll(() => f.stop());

  const enroll = (body: Record<string, unknown>) =>
    f.fleet.enrollment.enroll({ policyId: 'p1', namespaces: [] }, VERSION, { type: 'PERMANENT', metadata: { local: {} }, ...body } as EnrollRequest);

  test.each([
    ['an id of 300 KB', { id: 'a'.repeat(300 * 1024) }],
    ['an id of 513 UTF-8 bytes (2-byte characters)', { id: `${'é'.repeat(256)}a` }],
    ['an id with a NUL', { id: '../\u0000x' }],
    ['an id with a newline', { id: 'a\nb' }],
    ['an id with a lone surrogate', { id: 'a\ud800' }],
    ['an id starting with _', { id: '_doc' }],
    // Elasticsearch's API-key name rules (the key is named after the agent): 256 characters at most, no spaces at either end.
    ['an id of 257 characters (257 bytes)', { id: 'a'.repeat(257) }],
    ['an id with a trailing space', { id: 'agent ' }],
    ['an id with a leading space', { id: ' agent' }],
    ['an enrollment_id of 600 bytes', { enrollment_id: 'e'.repeat(600) }],
    ['an enrollment_id with a control character', { enrollment_id: 'e\u001b[31m' }],
    ['metadata.local a number', { metadata: { local: 5 } }],
    ['metadata.local a string', { metadata: { local: 'x' } }],
    ['metadata.local an array', { metadata: { local: [{}] } }],
    // Fields .fleet-agents maps with a type (Elasticsearch refused the document: a 500 after the key was minted).
    ['metadata.local.elastic.agent.upgradeable not a boolean', { metadata: { local: { elastic: { agent: { upgradeable: 'yes' } } } } }],
    ['metadata.local.host not an object', { metadata: { local: { host: 'web-1' } } }],
    ['metadata.local.os not an object', { metadata: { local: { os: 'linux' } } }],
  ])('%s → 400 BadRequest, nothing minted or written', async (_n, body) => {
    const before = minted;
    const err = await enroll(body).then(() => undefined, (e: unknown) => e);
    // Old: accepted here; Elasticsearch then refused the document (500) after a key was minted.
    expect(err).toBeInstanceOf(FleetError);
    expect(classify(err)).toMatchObject({ status: 400, error: 'BadRequest' });
    expect((err as Error).message.length).toBeLessThan(200);
    expect(minted).toBe(before);
    expect(await f.store.listAgents({})).toHaveLength(0);
  });

  test('ids at the bounds, and null or absent local metadata, enroll', async () => {
    for (const id of ['é'.repeat(256), 'a', 'x_y/z ü']) expect((await enroll({ id })).id).toBe(id);
    expect((await enroll({ metadata: { local: null } })).local_metadata).toBeNull();
    // What Elastic Agent sends.
    const local = { elastic: { agent: { id: 'x', version: '9.6.0', snapshot: false, upgradeable: true, unprivileged: false, fips: false, log_level: 'info' } },
      host: { hostname: 'web-1', architecture: 'x86_64', ip: ['10.0.0.1'] }, os: { family: 'debian', name: 'Ubuntu', version: '24.04' } };
    expect((await enroll({ metadata: { local } })).local_metadata).toMatchObject({ host: local.host, os: local.os });
    expect((await enroll({ metadata: {} })).local_metadata).toBeNull();
  });

  test('an unknown type is refused in upstream\'s words, without the value', async () => {
    const err = await enroll({ type: `FOREVER${'x'.repeat(500 * 1024)}` }).then(() => undefined, (e: unknown) => e);
    // Old: "Bad request: unknown enroll request type: FOREVERxxx…" (up to 512 KiB, answered and logged).
    expect(classify(err)).toMatchObject({ status: 400, error: 'BadRequest', message: 'Bad request: unknown enroll request type' });
  });
});

describe('the access log', () => {
  type Logged = { level: string; fields: Record<string, unknown>; text: string }[];
  function service(logged: Logged): Record<string, (...args: unknown[]) => void> {
    const at = (level: string) => (fields: Record<string, unknown>, text: string) => logged.push({ level, fields, text });
    return Object.assign(Object.create(HttpService.prototype) as object, {
      log: { isLevelEnabled: () => true, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') },
    }) as unknown as Record<string, (...args: unknown[]) => void>;
  }
  const req = { url: '/api/fleet/agents/enroll', method: 'POST', headers: {}, socket: { remoteAddress: '127.0.0.1' } } as unknown as IncomingMessage;
  const huge = badRequest('unknown thing', 'v'.repeat(512 * 1024));

  test('a request\'s error message is cut to 1 KiB', () => {
    const logged: Logged = [];
    service(logged)['logRequest']!(req, { statusCode: 400 } as ServerResponse, 0, 'r1', huge, classify(huge));
    const m = logged[0]!.fields['error.message'] as string;
    // Old: the whole 512 KiB in one line.
    expect(m.length).toBeLessThanOrEqual(1025);
    expect(m.startsWith('Bad request: unknown thing: vvv')).toBe(true);
  });

  test('a refused upgrade\'s error message is cut to 1 KiB', () => {
    const logged: Logged = [];
    service(logged)['logUpgrade']!(req, 0, 'r1', 400, classify(huge));
    expect((logged[0]!.fields['error.message'] as string).length).toBeLessThanOrEqual(1025);
  });

  test('a short message is logged as it is', () => {
    const logged: Logged = [];
    const short = badRequest('unknown enroll request type');
    service(logged)['logRequest']!(req, { statusCode: 400 } as ServerResponse, 0, 'r1', short, classify(short));
    expect(logged[0]!.fields['error.message']).toBe('Bad request: unknown enroll request type');
  });
});
