// fleet-server.yml as the Go server reads it: ${VAR:default}, -E overrides with array indices, TLS.
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { DIST, removeDir, startFleetServer, tempDir } from './support/fleet-server';
import { NODE_FLAGS, START_ENV } from './support/node-flags';
import { request } from './support/http';
import { freePort } from './support/ports';

test('--version prints the version and commit', () => {
  const out = execFileSync(process.execPath, [DIST, '--version']).toString();
  expect(out).toMatch(/^fleet-server version 9\.6\.0 \(commit \w+\)/);
});

test('the bundle runs directly through its shebang, with the V8 flags and start environment it ships with', () => {
  const first = readFileSync(DIST, 'utf8').split('\n', 1)[0];
  const env = Object.entries(START_ENV).map(([k, v]) => `${k}=${v} `).join('');
  expect(env).not.toBe('');
  expect(first).toBe(`#!/usr/bin/env -S ${env}node ${NODE_FLAGS.join(' ')}`);
  // `node` on PATH is the pinned runtime under npm; the shebang must resolve and accept the flags.
  expect(execFileSync(DIST, ['--version']).toString()).toMatch(/^fleet-server version 9\.6\.0/);
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
    expect(server.createdDefaultPolicy).toBe(true);
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

test('log files rotate by size, keep the configured number, and are created 0600', async () => {
  const dir = tempDir();
  const logs = join(dir, 'logs');
  const server = await startFleetServer({ dataDir: dir, logFile: join(logs, 'fleet-server.log'), overrides: [
    'logging.to_files=true', `logging.files.path=${logs}`, 'logging.files.rotateeverybytes=4096',
    'logging.files.keepfiles=2', 'logging.files.permissions=0600', 'logging.level=debug',
  ] });
  try {
    // Each unauthenticated request logs a line or two; enough of them cross 4 KiB several times.
    for (let i = 0; i < 120; i++) await request(`${server.url}/api/fleet/agents/x/checkin`, { method: 'POST', body: '{}' });
  } finally {
    await server.stop();
  }
  const files = readdirSync(logs).sort();
  expect(files).toEqual(['fleet-server.log', 'fleet-server.log.1', 'fleet-server.log.2']);
  for (const f of files) {
    const st = statSync(join(logs, f));
    expect(st.size).toBeLessThanOrEqual(4096);
    expect(st.mode & 0o777).toBe(0o600);
    // Every line in every file is a whole ECS JSON record: rotation never splits one.
    for (const line of readFileSync(join(logs, f), 'utf8').split('\n').filter(Boolean)) expect(JSON.parse(line)['ecs.version']).toBe('1.6.0');
  }
  removeDir(dir);
});
