// Elasticsearch failures in an operator's words (src/store/elasticsearch/connection.ts, http-connection.ts,
// src/logging/log-secrets.ts, src/runtime/serve.ts): a CA file with no certificate is refused at the start
// by its setting and path; a certificate the client does not trust says so and names the setting to check;
// each failure names the node it came from, says each cause once, and no internal step name.
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ElasticsearchOutputConfig } from '../../src/config/config';
import { buildConfig } from '../../src/config/config';
import { logError } from '../../src/logging/log-secrets';
import { withStoreContext } from '../../src/runtime/serve';
import { createClient, toStoreError } from '../../src/store/elasticsearch/connection';
import { describeError } from '../../src/util/error-text';
import { Authority } from '../support/certs';
import { esOutput } from '../support/es-output';
import { removeDir, tempDir } from '../support/fleet-server';
import { freePort } from '../support/ports';

/** The store error of one GET / through a client made for `c` (no retries). */
async function failure(c: ElasticsearchOutputConfig, step = 'connecting to Elasticsearch'): Promise<Error> {
  const client = createClient({ ...c, maxRetries: 0 }, { maxRetries: 0, requestTimeoutMs: 5000 });
  try {
    await client.info();
  } catch (err) {
    return toStoreError(err, step) as Error;
  } finally {
    await client.close();
  }
  throw new Error('the request succeeded');
}

function listening<S extends http.Server>(server: S): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

let dir: string;
beforeAll(() => { dir = tempDir(); });
afterAll(() => removeDir(dir));

describe('output.elasticsearch.ssl.certificate_authorities', () => {
  test('a file with no certificate in it is refused when the client is made, by its setting and path', () => {
    const garbage = join(dir, 'garbage.pem');
    writeFileSync(garbage, 'garbage\n');
    const c = esOutput('https://localhost:9200', { ssl: { verificationMode: 'full', certificateAuthorities: [garbage] } });
    expect(() => createClient(c, { maxRetries: 0, requestTimeoutMs: 1000 }))
      .toThrow(`invalid CA file ${garbage} (output.elasticsearch.ssl.certificate_authorities): no PEM certificate in it (-----BEGIN CERTIFICATE----- expected)`);
  });

  test('the start says it in that one line, not under "cannot open the Elasticsearch store"', async () => {
    const garbage = join(dir, 'garbage2.pem');
    writeFileSync(garbage, '-----BEGIN CERTIFICATE-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE-----\n');
    const config = buildConfig({ output: { elasticsearch: { hosts: ['https://localhost:9200'], service_token: 't', ssl: { certificate_authorities: [garbage] } } } });
    const opened = withStoreContext(config, async () => createClient(config.elasticsearch!, { maxRetries: 0, requestTimeoutMs: 1000 }));
    await expect(opened).rejects.toThrow(new RegExp(`^invalid CA file ${garbage} \\(output\\.elasticsearch\\.ssl\\.certificate_authorities\\): a certificate in it cannot be parsed`));
  });

  test('a server the configured CA did not sign: "certificate signed by unknown authority", the setting named, none of Node\'s advice', async () => {
    const authority = new Authority('Test Elasticsearch CA');
    const stranger = new Authority('Another CA');
    const leaf = authority.leaf('localhost');
    // Without its CA in the chain: Node then adds its --use-system-ca advice to the reason.
    const server = https.createServer({ cert: leaf.cert, key: leaf.key }, (_req, res) => res.end('{}'));
    const port = await listening(server);
    try {
      const err = await failure(esOutput(`https://localhost:${port}`, { ssl: { verificationMode: 'full', certificateAuthorities: [stranger.ca.cert] } }));
      expect(err.message).toBe(`connecting to Elasticsearch (https://localhost:${port}): certificate signed by unknown authority `
        + '(unable to verify the first certificate; check output.elasticsearch.ssl.certificate_authorities)');
      expect(logError(err)).toMatchObject({ message: err.message });
    } finally {
      server.close();
    }
  });
});

describe('connection failures', () => {
  test('a refused connection names the node once, in the log line too, and the bulker\'s step in operator words', async () => {
    const port = await freePort();
    const err = await failure(esOutput(`http://127.0.0.1:${port}`), 'msearch');
    expect(err.message).toBe(`reading from Elasticsearch (http://127.0.0.1:${port}): connect ECONNREFUSED 127.0.0.1:${port}`);
    // pino joined each cause's message to it: the address thrice in one line.
    const logged = (logError(err) as { message: string }).message;
    expect(logged.split('ECONNREFUSED').length - 1).toBe(1);
    expect(describeError(err)).not.toMatch(/msearch/);
  });

  test('a server that is not Elasticsearch is named by its URL', async () => {
    const server = http.createServer((_req, res) => res.end('hello'));
    const port = await listening(server);
    try {
      const err = await failure(esOutput(`http://127.0.0.1:${port}`));
      expect(err.message).toBe(`connecting to Elasticsearch (http://127.0.0.1:${port}): the server is not Elasticsearch (its answer has no X-Elastic-Product: Elasticsearch header)`);
    } finally {
      server.close();
    }
  });

  test('a service_token_path that cannot be read names the setting, and its path once', () => {
    const missing = join(dir, 'no-token');
    const c = esOutput('http://127.0.0.1:9200', { serviceTokenPath: missing });
    expect(() => createClient(c, { maxRetries: 0, requestTimeoutMs: 1000 }))
      .toThrow(`config key output.elasticsearch.service_token_path: cannot read ${missing}: no such file or directory (ENOENT)`);
  });
});
