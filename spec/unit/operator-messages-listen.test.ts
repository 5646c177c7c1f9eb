// Start-up failures of the listeners in an operator's words (src/http/listen-host.ts, server.ts,
// metrics.ts, src/runtime/serve.ts and server-instance.ts): each names its setting and what is wrong,
// and a start that cannot listen leaves nothing behind that says otherwise.
import { existsSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { buildConfig } from '../../src/config/config';
import { withStoreContext } from '../../src/runtime/serve';
import { ServerInstance } from '../../src/runtime/server-instance';
import { describeError } from '../../src/util/error-text';
import { removeDir, tempDir } from '../support/fleet-server';
import { freePort } from '../support/ports';

const silent = pino({ level: 'silent' });

function config(dir: string, server: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return buildConfig({ path: { data: dir }, logging: { level: 'error' }, ...extra,
    inputs: [{ type: 'fleet-server', server: { host: '127.0.0.1', internal_port: 0, workers: 1, ...server } }] });
}

/** The start's failure, as main.ts prints it (`fleet-server: <this>`). */
async function startFailure(dir: string, server: Record<string, unknown>, extra: Record<string, unknown> = {}, log = silent): Promise<string> {
  const instance = await ServerInstance.create(config(dir, server, extra), log);
  try {
    await instance.start();
  } catch (err) {
    return describeError(err);
  } finally {
    await instance.stop();
  }
  throw new Error('the start succeeded');
}

let dir: string;
beforeEach(() => { dir = tempDir(); });
afterEach(() => removeDir(dir));

describe('inputs.0.server.host', () => {
  test('a host with a port in it names the setting and says where the port goes', async () => {
    const port = await freePort();
    expect(await startFailure(dir, { host: '127.0.0.1:9000', port }))
      .toBe('inputs.0.server.host 127.0.0.1:9000: a host name or address without a port (give the port in inputs.0.server.port)');
  });

  test('a host that does not resolve names the host and the setting', async () => {
    const port = await freePort();
    // Offline, the resolver may answer EAI_AGAIN instead: either way the setting and host lead.
    expect(await startFailure(dir, { host: 'no-such-host.invalid', port }))
      .toMatch(/^inputs\.0\.server\.host no-such-host\.invalid: (no such host \(ENOTFOUND\)|.*\(EAI_AGAIN\))$/);
  });

  test('a server start that could never listen opens no store: the first start\'s policy and help are left for a start that can', async () => {
    const port = await freePort();
    // As openServer opens it (its dynamic import is beyond jest's module loader).
    const c = config(dir, { host: '127.0.0.1:9000', port });
    await expect(withStoreContext(c, () => ServerInstance.create(c, silent)))
      .rejects.toThrow('inputs.0.server.host 127.0.0.1:9000: a host name or address without a port');
    expect(existsSync(join(dir, 'fleet-server.db'))).toBe(false);
  });
});

describe('the metrics listener (http.enabled)', () => {
  let taken: net.Server;
  let takenPort: number;
  beforeEach(async () => {
    takenPort = await freePort();
    taken = net.createServer();
    await new Promise<void>((r) => taken.listen(takenPort, '127.0.0.1', () => r()));
  });
  afterEach(() => new Promise<void>((r) => taken.close(() => r())));

  test('a taken port names http.host and http.port, and fails the start before "fleet-server listening"', async () => {
    const lines: Record<string, unknown>[] = [];
    const log = pino({ level: 'info' }, new Writable({ write(chunk, _enc, done) {
      lines.push(JSON.parse(String(chunk)));
      done();
    } }));
    const port = await freePort();
    const failure = await startFailure(dir, { port }, { http: { enabled: true, host: '127.0.0.1', port: takenPort } }, log);
    expect(failure).toBe(`cannot listen on 127.0.0.1:${takenPort} (http.host, http.port): address already in use (EADDRINUSE)`);
    expect(lines.map((l) => l['msg'])).not.toContain('fleet-server listening');
    // Nothing was left listening on the API's port.
    const free = net.createServer();
    await new Promise<void>((resolve, reject) => free.once('error', reject).listen(port, '127.0.0.1', () => resolve()));
    await new Promise<void>((r) => free.close(() => r()));
  });
});
