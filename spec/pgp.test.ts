// GET /api/agents/upgrades/{major}.{minor}.{patch}/pgp-public-key: the key file's bytes over TLS only,
// from <server.pgp.dir>/default.pgp with mode 0600; every answer checked against docs/openapi.yaml.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { removeDir, startFleetServer, tempDir, type FleetServerProcess } from './support/fleet-server';
import { request, type Response } from './support/http';

const KEY = '-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBGVtest\n=abcd\n-----END PGP PUBLIC KEY BLOCK-----\n';
const PATH = '/api/agents/upgrades/9.6.0/pgp-public-key';

/** Over TLS; the answer is checked against docs/openapi.yaml like every other. */
const tlsRequest = (port: number, ca: Buffer, path: string, method = 'GET'): Promise<Response> =>
  request(`https://127.0.0.1:${port}${path}`, { ca, method });

describe('over TLS', () => {
  let dir: string;
  let keys: string;
  let ca: Buffer;
  let server: FleetServerProcess;

  beforeAll(async () => {
    dir = tempDir();
    keys = join(dir, 'keys');
    mkdirSync(keys);
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
      '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
    ca = readFileSync(join(dir, 'cert.pem'));
    server = await startFleetServer({ dataDir: dir, overrides: [
      'inputs.0.server.ssl.enabled=true', `inputs.0.server.ssl.certificate=${join(dir, 'cert.pem')}`,
      `inputs.0.server.ssl.key=${join(dir, 'key.pem')}`, `inputs.0.server.pgp.dir=${keys}`,
      'inputs.0.server.pgp.upstream_url=https://artifacts.example/GPG-KEY',
    ] });
  });

  afterAll(async () => {
    await server?.stop();
    removeDir(dir);
  });

  test('no key file: 500 ErrPGPKeyNotInstalled, the path logged; a file not 0600: 500 ErrPGPPermissions; then 0600: the bytes', async () => {
    const missing = await tlsRequest(server.port, ca, PATH);
    expect(missing.status).toBe(500);
    expect(missing.json).toEqual({ statusCode: 500, error: 'ErrPGPKeyNotInstalled', message: 'no PGP key is installed on this server' });
    const file = join(keys, 'default.pgp');
    writeFileSync(file, KEY, { mode: 0o644 });
    chmodSync(file, 0o644);
    const unsafe = await tlsRequest(server.port, ca, PATH);
    expect(unsafe.status).toBe(500);
    expect(unsafe.json).toEqual({ statusCode: 500, error: 'ErrPGPPermissions', message: 'pgp key permissions are incorrect' });
    // The operator is told which file and what to do; the client is not.
    await server.waitFor('it must be 0600');
    const logged = server.logs().filter((l) => l['error.type'] === 'ErrPGPKeyNotInstalled' || l['error.type'] === 'ErrPGPPermissions');
    expect(logged.map((l) => [l['log.level'] ?? l['level'], JSON.stringify(l['err'] ?? l['error'])])).toEqual([
      ['error', expect.stringContaining(`${file} does not exist`)],
      ['error', expect.stringContaining(`${file} has mode 0644; it must be 0600`)],
    ]);

    chmodSync(file, 0o600);
    const ok = await tlsRequest(server.port, ca, PATH);
    expect(ok.status).toBe(200);
    expect(ok.body.toString()).toBe(KEY);
    expect(ok.headers['content-type']).toBe('application/octet-stream');
    expect(ok.headers['content-length']).toBe(String(Buffer.byteLength(KEY)));
    expect(ok.headers['elastic-api-version']).toBe('2023-06-01');

    // Cached for 30 minutes, as upstream: a changed file is not read again meanwhile.
    writeFileSync(file, 'changed');
    expect((await tlsRequest(server.port, ca, '/api/agents/upgrades/8.0.1/pgp-public-key')).body.toString()).toBe(KEY);

    const head = await tlsRequest(server.port, ca, PATH, 'HEAD');
    expect([head.status, head.body.length, head.headers['content-length']]).toEqual([200, 0, String(Buffer.byteLength(KEY))]);
  });

  test('a version that is not three integers: 400 in the error shape', async () => {
    for (const v of ['9.6', '9.6.x', '9.6.0-SNAPSHOT', '9..0', '1.2.3.4']) {
      const r = await tlsRequest(server.port, ca, `/api/agents/upgrades/${v}/pgp-public-key`);
      expect({ v, status: r.status, error: r.json.error }).toEqual({ v, status: 400, error: 'BadRequest' });
    }
  });
});

describe('over plain HTTP', () => {
  let server: FleetServerProcess;
  beforeAll(async () => {
    server = await startFleetServer({ overrides: [
      'inputs.0.server.limits.pgp_retrieval_limit.interval=1m', 'inputs.0.server.limits.pgp_retrieval_limit.burst=3',
    ] });
  });
  afterAll(async () => {
    await server?.stop();
    removeDir(server.dataDir);
  });

  test('501 ErrTLSRequired; a bad version is refused first (400); pgp_retrieval_limit answers 429 with Retry-After', async () => {
    const r = await request(`${server.url}${PATH}`);
    expect(r.status).toBe(501);
    expect(r.json).toEqual({ statusCode: 501, error: 'ErrTLSRequired', message: 'server must run with tls to use this endpoint' });
    expect(r.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(typeof r.headers['x-request-id']).toBe('string');
    expect((await request(`${server.url}/api/agents/upgrades/a.b.c/pgp-public-key`)).status).toBe(400);
    expect((await request(`${server.url}${PATH}`, { method: 'HEAD' })).status).toBe(501);
    const limited = await request(`${server.url}${PATH}`);
    expect(limited.status).toBe(429);
    expect(limited.json.error).toBe('RateLimit');
    expect(limited.headers['retry-after']).toBeDefined();
  });
});
