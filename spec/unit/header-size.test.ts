// max_header_byte_size as Go's net/http applies it: MaxHeaderBytes plus 4096 bytes of slack, then 431.
import { request } from 'node:http';
import pino from 'pino';
import { buildConfig } from '../../src/config/config';
import { ServerInstance } from '../../src/runtime/server-instance';
import { removeDir, tempDir } from '../support/fleet-server';
import { freePort } from '../support/ports';

const status = (port: number, headerBytes: number): Promise<number> => new Promise((resolve, reject) => {
  request({ host: '127.0.0.1', port, path: '/api/status', agent: false, headers: { 'X-Forwarded-Client-Cert': 'x'.repeat(headerBytes) } }, (res) => {
    res.resume();
    res.on('end', () => resolve(res.statusCode ?? 0));
  }).on('error', reject).end();
});

async function withLimit(bytes: number, fn: (port: number) => Promise<void>): Promise<void> {
  const dir = tempDir();
  const port = await freePort();
  const config = buildConfig({ path: { data: dir }, logging: { level: 'error' },
    inputs: [{ type: 'fleet-server', server: { host: '127.0.0.1', port, internal_port: 0, workers: 1, limits: { max_header_byte_size: bytes } } }] });
  const server = await ServerInstance.create(config, pino({ level: 'silent' }));
  try {
    await server.start({ metrics: false });
    await fn(port);
  } finally {
    await server.stop();
    removeDir(dir);
  }
}

test('headers past max_header_byte_size are served within Go\'s 4 KiB of slack, refused beyond it', () => withLimit(8192, async (port) => {
  expect(await status(port, 10_000)).toBe(200);
  expect(await status(port, 12_500)).toBe(431);
}));

test('max_header_byte_size 0 is Go\'s default, 1 MiB', () => withLimit(0, async (port) => {
  expect(await status(port, 100_000)).toBe(200);
}));
