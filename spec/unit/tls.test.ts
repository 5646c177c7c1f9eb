// The API listeners' TLS options (src/http/tls.ts) on a real https server in-process: ALPN still
// negotiates http/1.1 as upstream's listener does, a held TLS connection keeps no Buffer-pool slab alive,
// and ssl.curve_types picks the key-exchange groups.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import v8 from 'node:v8';
import vm from 'node:vm';
import { buildConfig, type TlsConfig } from '../../src/config/config';
import { tlsOptions } from '../../src/http/tls';
import { localhostCertificate } from '../support/certs';

let dir: string;
let ca: Buffer;
let config: TlsConfig;
let server: https.Server;
let port: number;
const serverSockets: tls.TLSSocket[] = [];
const allServerSockets: tls.TLSSocket[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fleet-tls-'));
  const c = localhostCertificate(dir);
  ca = c.ca;
  config = {
    enabled: true, certificate: readFileSync(c.certPath, 'utf8'), key: readFileSync(c.keyPath, 'utf8'), certificateAuthorities: [],
    clientAuthentication: 'none', supportedProtocols: [], curveTypes: [], reloadIntervalMs: 0,
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
  const collect = vm.runInNewContext('gc') as () => void;
  // V8 frees array buffers' memory on its own schedule after a collection: let it, twice over.
  const gc = async (): Promise<void> => {
    for (let i = 0; i < 2; i++) {
      collect();
      await new Promise((r) => setTimeout(r, 50));
    }
  };
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
  await gc();
  const before = process.memoryUsage().arrayBuffers;
  await new Promise((r) => clients.stdout.once('data', r));
  // A TLS 1.3 client is connected before the server has seen its Finished.
  while (serverSockets.length < count) await new Promise((r) => setTimeout(r, 10));
  await gc();
  const perConnection = (process.memoryUsage().arrayBuffers - before) / count;
  clients.kill();
  server.off('secureConnection', churn);
  // Before: every server socket copied the ALPN list into the pool, pinning one 64 KiB slab each here.
  expect(perConnection).toBeLessThan(4096);
});

test('ssl.curve_types: upstream names, checked when the configuration is read', () => {
  const tlsOf = (curves: unknown): TlsConfig => buildConfig({ inputs: [{ type: 'fleet-server', server: { ssl: { curve_types: curves } } }] }).server.tls;
  expect(tlsOf(['X25519', 'P-256']).curveTypes).toEqual(['X25519', 'P-256']);
  expect(tlsOf(undefined).curveTypes).toEqual([]);
  expect(() => tlsOf(['secp256k1'])).toThrow(/ssl.curve_types: unknown curve secp256k1/);
});

test('ssl.curve_types decides the key exchange: without ML-KEM, a client offering X25519MLKEM768 gets X25519', async () => {
  const groupWith = async (curveTypes: string[]): Promise<string | undefined> => {
    const s = https.createServer(tlsOptions({ ...config, curveTypes }, undefined));
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    try {
      const client = await new Promise<tls.TLSSocket>((resolve, reject) => {
        const c = tls.connect({ host: '127.0.0.1', port: (s.address() as AddressInfo).port, servername: 'localhost', ca }, () => resolve(c));
        c.once('error', reject);
      });
      const name = client.getEphemeralKeyInfo() as { name?: string };
      client.destroy();
      return name.name;
    } finally {
      s.closeAllConnections();
      await new Promise((r) => s.close(r));
    }
  };
  expect(await groupWith([])).toBe('X25519MLKEM768');
  expect(await groupWith(['X25519', 'P-256'])).toBe('X25519');
  expect(await groupWith(['P-256'])).toBe('prime256v1');
});
