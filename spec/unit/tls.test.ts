// The API listeners' TLS options (src/http/tls.ts) on a real https server in-process: ALPN still
// negotiates http/1.1 as upstream's listener does, and a held TLS connection keeps no Buffer-pool slab alive.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import v8 from 'node:v8';
import vm from 'node:vm';
import type { TlsConfig } from '../../src/config/config';
import { tlsOptions } from '../../src/http/tls';
import { localhostCertificate } from '../support/certs';

let dir: string;
let ca: Buffer;
let server: https.Server;
let port: number;
const serverSockets: tls.TLSSocket[] = [];
const allServerSockets: tls.TLSSocket[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fleet-tls-'));
  const c = localhostCertificate(dir);
  ca = c.ca;
  const config: TlsConfig = {
    enabled: true, certificate: readFileSync(c.certPath, 'utf8'), key: readFileSync(c.keyPath, 'utf8'), certificateAuthorities: [],
    clientAuthentication: 'none', supportedProtocols: [], reloadIntervalMs: 0,
  };
  server = https.createServer(tlsOptions(config, undefined), (_req, res) => res.end('ok'));
  server.on('secureConnection', (s: tls.TLSSocket) => {
    serverSockets.push(s);
    allServerSockets.push(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  for (const s of allServerSockets) s.destroy();
  await new Promise((r) => server.close(r));
  rmSync(dir, { recursive: true, force: true });
});

function connect(opts: tls.ConnectionOptions = {}): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca, ...opts }, () => resolve(s));
    s.once('error', reject);
  });
}

test('ALPN: http/1.1 when offered, none when the client offers none, refused when it offers only other protocols', async () => {
  const offered = await connect({ ALPNProtocols: ['h2', 'http/1.1'] });
  expect(offered.alpnProtocol).toBe('http/1.1');
  offered.destroy();
  const none = await connect();
  expect(none.alpnProtocol).toBe(false);
  none.destroy();
  await expect(connect({ ALPNProtocols: ['h2'] })).rejects.toThrow(/no application protocol|no_application_protocol/i);
});

test('held TLS connections keep no 64 KiB Buffer-pool slab alive each', async () => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  // What serving does between two handshakes: small Buffers carved from the pool, until a new slab is cut.
  const churn = (): void => {
    for (let n = 0; n < Buffer.poolSize; n += 512) Buffer.allocUnsafe(512);
  };
  serverSockets.length = 0;
  server.on('secureConnection', churn);
  // The clients in another process, so only the server's side is measured here.
  const count = 64;
  const clients = spawn(process.execPath, ['-e', `
    const tls = require('node:tls');
    (async () => {
      for (let i = 0; i < ${count}; i++) {
        await new Promise((resolve, reject) => {
          const s = tls.connect({ host: '127.0.0.1', port: ${port}, servername: 'localhost', ca: process.env.CA, ALPNProtocols: ['http/1.1'] }, resolve);
          s.once('error', reject);
        });
      }
      process.stdout.write('held');
    })();`], { env: { ...process.env, CA: ca.toString() }, stdio: ['ignore', 'pipe', 'inherit'] });
  gc();
  const before = process.memoryUsage().arrayBuffers;
  await new Promise((r) => clients.stdout.once('data', r));
  // A TLS 1.3 client is connected before the server has seen its Finished.
  while (serverSockets.length < count) await new Promise((r) => setTimeout(r, 10));
  gc();
  const perConnection = (process.memoryUsage().arrayBuffers - before) / count;
  clients.kill();
  server.off('secureConnection', churn);
  // Before: every server socket copied the ALPN list into the pool, pinning one 64 KiB slab each here.
  expect(perConnection).toBeLessThan(4096);
});
