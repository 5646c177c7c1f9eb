// The Elasticsearch client's connection (src/store/elasticsearch/http-connection.ts) against a server
// that sends its answer's head and then stalls: the call ends at the request timeout, or when its signal
// aborts, instead of hanging on the body for good. And the API-key calls against a cluster pushing back.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { errors, type Client } from '@elastic/elasticsearch';
import type { ElasticsearchOutputConfig } from '../../src/config/config';
import { classify } from '../../src/http/errors';
import { EsApiKeys } from '../../src/store/elasticsearch/api-keys';
import { createClient } from '../../src/store/elasticsearch/connection';
import { StoreBusyError, StoreUnavailableError } from '../../src/store/port';
import { Semaphore } from '../../src/util/semaphore';
import { esOutput } from '../support/es-output';
import { fromWire, toWire } from '../../src/store/remote/wire';

let server: http.Server;
let port = 0;
const stalled = new Set<http.ServerResponse>();

beforeAll(async () => {
  server = http.createServer((req, res) => {
    if (req.url === '/hang') return;
    res.writeHead(200, { 'content-type': 'application/json', 'x-elastic-product': 'Elasticsearch' });
    if (req.url?.startsWith('/stall')) {
      // Half a document, then nothing.
      res.write('{"took":1,"hits":');
      stalled.add(res);
      return;
    }
    res.end('{"name":"n","cluster_name":"c","cluster_uuid":"u","version":{"number":"9.6.0"},"tagline":"t"}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  port = (server.address() as AddressInfo).port;
});
afterAll(() => {
  server.closeAllConnections();
  return new Promise<void>((r) => server.close(() => r()));
});

const output = (): ElasticsearchOutputConfig => esOutput(`http://127.0.0.1:${port}`);

it('a body that stalls after the head fails the call at the request timeout', async () => {
  const client = createClient(output(), { maxRetries: 0, requestTimeoutMs: 300 });
  try {
    await expect(client.transport.request({ method: 'GET', path: '/stall' })).rejects.toThrow(/closed while reading the body|stalled/);
    // The connection still serves the next call.
    expect((await client.info()).name).toBe('n');
  } finally {
    await client.close();
  }
});

/** A call to `path` whose signal is aborted after `waitMs`: what it fails with. */
async function abortedCall(path: string, waitMs: number, meanwhile: () => void = () => {}): Promise<unknown> {
  const client = createClient(output(), { maxRetries: 0, requestTimeoutMs: 60_000 });
  try {
    const controller = new AbortController();
    const call = client.transport.request({ method: 'GET', path }, { signal: controller.signal });
    await new Promise((r) => setTimeout(r, waitMs));
    meanwhile();
    controller.abort();
    return await call.then(() => undefined, (err: unknown) => err);
  } finally {
    await client.close();
  }
}

it('a signal aborted while the body is arriving ends the call', async () => {
  const err = await abortedCall('/stall-abort', 200, () => expect(stalled.size).toBeGreaterThan(0)); // the head was sent
  expect(String(err)).toMatch(/closed while reading the body|aborted/i);
});

it('a signal aborted before the head arrives ends the call as the transport does (no body to watch yet)', async () => {
  expect(String(await abortedCall('/hang', 100))).toMatch(/aborted/i);
});

// API-key authentication (src/store/elasticsearch/api-keys.ts) against a cluster answering 429: asked
// once, answered in upstream's words, and the security semaphore's slot never held through a backoff.
describe('API-key calls under Elasticsearch back-pressure', () => {
  const rejected = (status: number) => new errors.ResponseError({
    body: { error: { type: 'es_rejected_execution_exception', reason: 'rejected' }, status }, statusCode: status, headers: {}, warnings: null,
    meta: { context: null, name: 'fleet-server', attempts: 0, aborted: false, request: { params: { method: 'GET', path: '/' }, options: {}, id: 1 }, connection: null },
  } as never);

  test('authenticate answered 429 is not retried: the agent is told 429 "exceeded the elasticsearch api key auth limit"', async () => {
    let calls = 0;
    const client = { security: { authenticate: async () => {
      calls++;
      throw rejected(429);
    } } } as unknown as Client;
    const keys = new EsApiKeys(client, new Semaphore(1));
    // Old: retried five times with backoff (about 20 s) while holding the semaphore, then TooManyBulkDispatches' words.
    const err = await keys.checkApiKey('id', 'secret').then(() => undefined, (e: unknown) => e);
    expect(calls).toBe(1);
    expect(err).toBeInstanceOf(StoreBusyError);
    expect(classify(err)).toMatchObject({ status: 429, error: 'ElasticsearchAPIKeyAuthLimit', message: 'exceeded the elasticsearch api key auth limit' });
    expect(classify(err).retryAfter).toBeGreaterThan(0);
    // A worker gets it from the store owner with the same name (the store proxy carries it).
    expect(classify(fromWire(toWire(err)))).toMatchObject({ status: 429, error: 'ElasticsearchAPIKeyAuthLimit' });
  }, 3000);

  test('authenticate answered 401 is an invalid key; 503 is a store outage, asked once', async () => {
    let status = 401;
    let calls = 0;
    const client = { security: { authenticate: async () => {
      calls++;
      throw rejected(status);
    } } } as unknown as Client;
    const keys = new EsApiKeys(client, new Semaphore(1));
    expect(await keys.checkApiKey('id', 'secret')).toBe('invalid');
    status = 503;
    await expect(keys.checkApiKey('id', 'secret')).rejects.toBeInstanceOf(StoreUnavailableError);
    expect(calls).toBe(2);
  }, 3000);

  test('a call backing off after a 429 gives its semaphore slot back meanwhile', async () => {
    const order: string[] = [];
    let invalidations = 0;
    const client = { security: {
      invalidateApiKey: async () => {
        if (invalidations++ === 0) throw rejected(429);
        order.push('invalidated');
        return {};
      },
      authenticate: async () => {
        order.push('authenticated');
        return { enabled: true, api_key: { id: 'id' } };
      },
    } } as unknown as Client;
    const keys = new EsApiKeys(client, new Semaphore(1));
    const invalidating = keys.invalidateApiKeys(['k']);
    while (invalidations === 0) await new Promise((r) => setImmediate(r));
    // Old: the authentication waited for the slot through the invalidation's backoff (0.25–0.75 s).
    expect(await keys.checkApiKey('id', 'secret')).toBe('valid');
    await invalidating;
    expect(order).toEqual(['authenticated', 'invalidated']);
  });
});
