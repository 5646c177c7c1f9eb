// fleet-server.yml as the Go server reads it: ${VAR:default}, -E overrides with array indices, TLS.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { DIST, removeDir, startFleetServer, tempDir } from './support/fleet-server';
import { request } from './support/http';
import { freePort } from './support/ports';

test('--version prints the version and commit', () => {
  const out = execFileSync(process.execPath, [DIST, '--version']).toString();
  expect(out).toMatch(/^fleet-server version 9\.6\.0 \(commit \w+\)/);
});

test('a config file with ${VAR:default}, dotted keys and -E overrides', async () => {
  const dir = tempDir();
  const port = await freePort();
  const file = join(dir, 'fleet-server.yml');
  writeFileSync(file, [
    'inputs:',
    '  - type: fleet-server',
    '    server:',
    '      host: ${FS_HOST:127.0.0.1}',
    '      port: ${FS_PORT}',
    '      timeouts.checkin_long_poll: 1m',
    'logging:',
    '  level: ${FS_LOG:info}',
  ].join('\n'));
  const server = await startFleetServer({ dataDir: dir, configFile: file, env: { FS_PORT: String(port), FS_LOG: 'debug' }, overrides: [] });
  try {
    // startFleetServer's own -E inputs.0.server.port wins over the file, as -E must.
    expect(server.port).not.toBe(port);
    expect((await request(`${server.url}/api/status`)).status).toBe(200);
    await server.waitFor('"log.level":"debug"');
    expect(server.logs().some((l) => l['log.level'] === 'debug')).toBe(true);
  } finally {
    await server.stop();
    removeDir(dir);
  }
});

test('an invalid configuration fails with a clear message and exit code 1', () => {
  const dir = tempDir();
  const r = spawnSync(process.execPath, [DIST, '-E', `path.data=${dir}`, '-E', 'inputs.0.server.timeouts.checkin_long_poll=soon'], { encoding: 'utf8' });
  expect(r.status).toBe(1);
  expect(r.stderr).toContain('config key inputs.0.server.timeouts.checkin_long_poll: invalid duration "soon"');
  const missing = spawnSync(process.execPath, [DIST, '-E', `path.data=${dir}`, '-E', 'inputs.0.server.port=${NO_SUCH_VAR}'], { encoding: 'utf8' });
  expect(missing.status).toBe(1);
  expect(missing.stderr).toContain('NO_SUCH_VAR');
  removeDir(dir);
});

test('TLS on the external and internal listeners, certificate by path and key inline', async () => {
  const dir = tempDir();
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
  const key = readFileSync(join(dir, 'key.pem'), 'utf8');
  const ca = readFileSync(join(dir, 'cert.pem'));
  const server = await startFleetServer({ dataDir: dir, overrides: [
    'inputs.0.server.ssl.enabled=true',
    `inputs.0.server.ssl.certificate=${join(dir, 'cert.pem')}`,
  ], env: { FS_KEY: key }, configFile: (() => {
    const f = join(dir, 'tls.yml');
    writeFileSync(f, 'inputs:\n  - type: fleet-server\n    server:\n      ssl:\n        key: ${FS_KEY}\n');
    return f;
  })() });
  try {
    expect(server.printedToken).toBeDefined();
    expect(server.stdout).toContain(`https://127.0.0.1:${server.port}`);
    for (const port of [server.port, server.internalPort]) {
      const body = await new Promise<string>((resolve, reject) => {
        httpsRequest({ host: port === server.port ? '127.0.0.1' : 'localhost', port, path: '/api/status', ca, servername: 'localhost' }, (res) => {
          let text = '';
          res.on('data', (d) => (text += d));
          res.on('end', () => resolve(text));
        }).on('error', reject).end();
      });
      expect(JSON.parse(body)).toEqual({ name: 'fleet-server', status: 'HEALTHY' });
    }
  } finally {
    await server.stop();
    removeDir(dir);
  }
});
