// The Elasticsearch client's connection (src/store/elasticsearch/http-connection.ts) against a server
// that sends its answer's head and then stalls: the call ends at the request timeout, or when its signal
// aborts, instead of hanging on the body for good.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ElasticsearchOutputConfig } from '../../src/config/config';
import { createClient } from '../../src/store/elasticsearch/connection';
import { esOutput } from '../support/es-output';

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
