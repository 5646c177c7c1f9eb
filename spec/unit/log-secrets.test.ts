// What logs never carry (src/logging/log-secrets.ts): an Elasticsearch client error's request (an
// agent's API key in its headers, a secret's plaintext in its body), or the credential fields redacted by name.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { errors } from '@elastic/elasticsearch';
import { createLogger } from '../../src/logging/logger';
import { removeDir, tempDir } from '../support/fleet-server';

function fileLogger(dir: string) {
  return createLogger({
    level: 'info', toStderr: false, toFiles: true, filesPath: dir, filesName: 'fleet-server.log',
    rotateEveryBytes: 10 * 1024 * 1024, keepFiles: 2, permissions: 0o600, rotateOnStartup: false,
  });
}

test('an Elasticsearch error is logged by its type, message, status and error type, not its request or response', async () => {
  const dir = tempDir('log-secrets-');
  try {
    const log = fileLogger(dir);
    const err = new errors.ResponseError({
      body: { error: { type: 'illegal_argument_exception', reason: 'value [agent-secret-value] is not allowed' }, status: 400 },
      statusCode: 400,
      headers: {},
      warnings: null,
      meta: {
        context: null, name: 'fleet-server', attempts: 0, aborted: false,
        request: { params: { method: 'POST', path: '/_fleet/secret', headers: { authorization: 'ApiKey QUdFTlQtS0VZ' }, body: '{"value":"agent-secret-value"}' }, options: {}, id: 1 },
        connection: null,
      },
    } as never);
    log.error({ err, service_token: 'AAEAAW-token', output: { api_key: 'hunter2', hosts: ['https://es:9200'] } }, 'store call failed');
    log.flush();
    const path = join(dir, 'fleet-server.log');
    let text = '';
    for (let i = 0; i < 200 && !text.includes('store call failed'); i++) {
      await new Promise((r) => setTimeout(r, 25));
      text = readFileSync(path, 'utf8');
    }
    const line = JSON.parse(text.trim().split('\n').at(-1)!);
    expect(line.err).toMatchObject({ type: 'ResponseError', statusCode: 400, 'elasticsearch.error.type': 'illegal_argument_exception' });
    expect(line.err.meta).toBeUndefined();
    for (const secret of ['QUdFTlQtS0VZ', 'agent-secret-value', 'AAEAAW-token', 'hunter2']) expect(text).not.toContain(secret);
    expect(line.output.hosts).toEqual(['https://es:9200']);
  } finally {
    removeDir(dir);
  }
});
