// The metrics listener as a client that is not Elastic Agent meets it (it has no authentication and may
// be bound beyond loopback): requests share one document, connections are capped and must send their
// request promptly, and a failing accept does not end the process.
import http from 'node:http';
import net from 'node:net';
import pino from 'pino';
import { startMetrics, STATS_REUSE_MS, type StatsDocument } from '../../src/http/metrics';

let server: http.Server | undefined;
afterEach(() => server?.close());

const get = (port: number, path: string): Promise<{ status: number; body: string }> => new Promise((resolve, reject) => {
  http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
    let body = '';
    res.on('data', (d) => (body += d));
    res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
  }).on('error', reject);
});

async function start(source: () => Promise<StatsDocument>): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  server = await startMetrics('127.0.0.1', port, source, pino({ level: 'silent' }));
  return port;
}

test('requests that come together share one document: a loop of scrapes does not make one per request', async () => {
  let made = 0;
  const port = await start(async () => {
    made++;
    await new Promise((r) => setTimeout(r, 50));
    return { http_server: { tcp_open: made } };
  });
  const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => get(port, i % 2 ? '/stats' : '/metrics')));
  expect(answers.every((a) => a.status === 200)).toBe(true);
  expect(made).toBe(1);
  // Once the window has passed, a new one.
  await new Promise((r) => setTimeout(r, STATS_REUSE_MS + 50));
  expect(JSON.parse((await get(port, '/stats')).body)).toEqual({ http_server: { tcp_open: 2 } });
});

test('a failed document is not kept: the next request makes a new one', async () => {
  let made = 0;
  const port = await start(async () => {
    made++;
    if (made === 1) throw new Error('a worker did not answer');
    return { ok: made };
  });
  expect((await get(port, '/stats')).status).toBe(500);
  expect(JSON.parse((await get(port, '/stats')).body)).toEqual({ ok: 2 });
});

test('connections are capped, and must send their request within 5 s', async () => {
  const port = await start(async () => ({}));
  expect(server!.maxConnections).toBe(64);
  expect(server!.headersTimeout).toBe(5000);
  expect(server!.requestTimeout).toBe(10_000);
  // Accept failing (no descriptors left) is an 'error' event the listener keeps handling.
  expect(() => { server!.emit('error', Object.assign(new Error('accept EMFILE'), { code: 'EMFILE' })); server!.emit('error', new Error('again')); }).not.toThrow();
  expect((await get(port, '/')).status).toBe(200);
});

test('http.host forms: http://host:port with an IPv6 literal is listened on without its brackets; another scheme is refused', async () => {
  await expect(startMetrics('https://127.0.0.1:5066', 0, async () => ({}), pino({ level: 'silent' }))).rejects.toThrow(/http\.host https:\/\/127\.0\.0\.1:5066: the scheme is not supported/);
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '::1', r));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  server = await startMetrics(`http://[::1]:${port}`, 0, async () => ({}), pino({ level: 'silent' }));
  expect((server.address() as net.AddressInfo).address).toBe('::1');
});
