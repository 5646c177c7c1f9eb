// The header deadline after an event-loop stall, in-process: the test shares the server's event loop, so it
// can stall it between the accept of a connection and the read of its request, as a worker does that
// accepted thousands of reconnecting agents at once on a starved box.
import { connect, type Socket } from 'node:net';
import pino from 'pino';
import { buildConfig } from '../../src/config/config';
import { ServerInstance } from '../../src/runtime/server-instance';
import { removeDir, tempDir } from '../support/fleet-server';
import { freePort } from '../support/ports';
import { until } from '../support/in-process-fleet';

let server: ServerInstance | undefined;
let dir: string;
const sockets: Socket[] = [];

beforeEach(async () => {
  dir = tempDir();
  const port = await freePort();
  const config = buildConfig({
    path: { data: dir },
    logging: { level: 'error' },
    inputs: [{ type: 'fleet-server', server: { host: '127.0.0.1', port, internal_port: 0, workers: 1, timeouts: { read_header: '1s' } } }],
  });
  server = await ServerInstance.create(config, pino({ level: 'silent' }));
  await server.start({ metrics: false });
});

afterEach(async () => {
  for (const s of sockets) s.destroy();
  await server?.stop();
  removeDir(dir);
});

/** A connection the server has accepted (its header deadline running), nothing sent yet; what it receives. */
async function accepted(port: number): Promise<{ socket: Socket; received: Promise<string> }> {
  const before = server!.http.tcp.open;
  const socket = connect(port, '127.0.0.1');
  sockets.push(socket);
  let data = '';
  socket.on('data', (d) => (data += d.toString()));
  const received = new Promise<string>((resolve) => socket.on('close', () => resolve(data)));
  socket.on('error', () => undefined);
  await until(() => server!.http.tcp.open > before);
  return { socket, received };
}

/**
 * Sends `request` and blocks the event loop for `ms` in the same turn: the server cannot read it before
 * the stall ends, and Node's deadline timer then runs before the loop next reads its sockets.
 */
const sendThenStall = (socket: Socket, request: string, ms: number): Promise<void> => new Promise((resolve) => setImmediate(() => {
  socket.write(request);
  const end = Date.now() + ms;
  while (Date.now() < end) { /* the stall */ }
  resolve();
}));

test('a request sent in time but not read before a stall longer than read_header is answered, not 408', async () => {
  const port = server!.http.ports[0]!;
  const { socket, received } = await accepted(port);
  await sendThenStall(socket, 'GET /api/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 1500);
  expect(await received).toMatch(/^HTTP\/1\.1 200 /);
});

test('a connection that sends nothing is still answered 408 and closed, after a second header period', async () => {
  const port = server!.http.ports[0]!;
  const started = Date.now();
  const { received } = await accepted(port);
  const data = await received;
  expect(data).toMatch(/^HTTP\/1\.1 408 /);
  expect(data).toContain('"error":"RequestTimeout"');
  // read_header 1 s (checked every 0.5 s), then the second period of 1 s: 2 s at least, less a timer's rounding.
  expect(Date.now() - started).toBeGreaterThanOrEqual(1900);
});
