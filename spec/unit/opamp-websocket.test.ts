// OpAMP's WebSocket session in process: a refused handshake lets its socket go, a pipelining Collector
// has one message decoded at a time (the rest wait in TCP), and nothing is handled once it has closed.
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import type { OpampReply, Push } from '../../src/fleet/opamp';
import type { UpgradeContext } from '../../src/http/route';
import { handleOpampWebSocket } from '../../src/opamp/websocket';
import { agentToServer, CAP } from '../support/collector';
import { FakeSocket } from '../support/fake-socket';
import { clientFrame } from '../support/ws-client';

interface FakeOpamp {
  handle: jest.Mock<Promise<OpampReply>, [unknown, unknown, Push | undefined]>;
  detach: jest.Mock<void, [Push]>;
  settle: (() => void)[];
}

function fakeOpamp(): FakeOpamp {
  const settle: (() => void)[] = [];
  return {
    settle,
    handle: jest.fn((_e: unknown, _m: unknown, _p: Push | undefined) => new Promise<OpampReply>((r) => settle.push(() => r({ capabilities: ['AcceptsStatus'] })))),
    detach: jest.fn(),
  };
}

function upgradeRequest(headers: Record<string, string> = {}): http.IncomingMessage {
  return {
    method: 'GET',
    headers: { upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': randomBytes(16).toString('base64'), host: 'fleet', ...headers },
  } as unknown as http.IncomingMessage;
}

function context(socket: unknown, req: http.IncomingMessage, opamp: FakeOpamp) {
  const counters = { body_in: 0, body_out: 0 };
  const noop = (): void => undefined;
  const ctx = {
    req, socket, head: Buffer.alloc(0), params: {}, fleet: { opamp }, counters, stopping: new AbortController().signal,
    config: { server: { limits: { routes: { opamp: { maxBodyDecompressed: 1024 * 1024 } } } } },
    log: { debug: noop, info: noop, warn: noop, error: noop }, responseHeaders: {}, enrollment: { policyId: 'p', namespaces: [] },
  } as unknown as UpgradeContext<'enrollment'>;
  return { ctx, counters };
}

const message = (seq: number): Buffer => Buffer.concat([Buffer.from([0]), agentToServer(Buffer.alloc(16, 1), seq, CAP.ReportsStatus, {})]);
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

test('a Collector pipelining messages has one decoded and handled at a time; the rest are not read meanwhile', async () => {
  const socket = new FakeSocket();
  const opamp = fakeOpamp();
  const { ctx, counters } = context(socket, upgradeRequest(), opamp);
  const ended = handleOpampWebSocket(ctx);
  const msgs = [1, 2, 3].map(message);
  socket.emit('data', Buffer.concat(msgs.map((m) => clientFrame(0x2, m))));
  await tick();
  expect(opamp.handle).toHaveBeenCalledTimes(1);
  // Old: all three taken in (and held, decoded in turn) while the first waited on the store.
  expect(counters.body_in).toBe(msgs[0]!.length);
  expect(socket.paused).toBe(true);
  opamp.settle.shift()!();
  await tick();
  expect(opamp.handle).toHaveBeenCalledTimes(2);
  expect(counters.body_in).toBe(msgs[0]!.length + msgs[1]!.length);
  opamp.settle.shift()!();
  await tick();
  opamp.settle.shift()!();
  await tick();
  expect(opamp.handle).toHaveBeenCalledTimes(3);
  expect(socket.paused).toBe(false);
  socket.destroy();
  await ended;
});

test('a connection that closes with a message in flight: nothing more is handled, answered or pushed', async () => {
  const socket = new FakeSocket();
  const opamp = fakeOpamp();
  const { ctx } = context(socket, upgradeRequest(), opamp);
  const ended = handleOpampWebSocket(ctx);
  socket.emit('data', Buffer.concat([1, 2, 3].map((seq) => clientFrame(0x2, message(seq)))));
  await tick();
  expect(opamp.handle).toHaveBeenCalledTimes(1);
  const push = opamp.handle.mock.calls[0]![2]!;
  const writes = socket.written.length;
  socket.destroy();
  await ended;
  expect(opamp.detach).toHaveBeenCalledWith(push);
  opamp.settle.shift()!();
  await tick();
  await tick();
  // Old: the two queued messages were handled for a dead connection (and registered its push again).
  expect(opamp.handle).toHaveBeenCalledTimes(1);
  push(Buffer.alloc(16, 1), { remoteConfig: { body: 'a: 1', hash: Buffer.alloc(32) } });
  await tick();
  expect(socket.written.length).toBe(writes);
});

test('a refused handshake is answered 400 and its socket destroyed, though the client keeps its half open', async () => {
  let serverSocket!: net.Socket;
  const server = http.createServer();
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => {
    serverSocket = socket;
    void handleOpampWebSocket(context(socket, req, fakeOpamp()).ctx);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const client = net.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
  client.on('error', () => undefined);
  const received: Buffer[] = [];
  client.on('data', (c: Buffer) => received.push(c));
  // The answer is read once the client has seen the server's end (its data come before it).
  const clientEnded = new Promise((r) => {
    client.once('end', r);
    client.once('close', r);
  });
  try {
    await new Promise((r) => client.once('connect', r));
    // A valid upgrade but for its key: refused by the session, not by node:http.
    client.write('GET /v1/opamp HTTP/1.1\r\nHost: fleet\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n\r\n');
    while (!serverSocket) await new Promise((r) => setTimeout(r, 5));
    const closed = serverSocket.destroyed ? Promise.resolve() : new Promise((r) => serverSocket.once('close', r));
    // Old: ended only; the client never sends its FIN, so the socket (an fd, a connection) stayed.
    const late = new Promise((r) => setTimeout(() => r('late'), 5000).unref());
    expect(await Promise.race([closed.then(() => 'closed'), late])).toBe('closed');
    await clientEnded;
    expect(Buffer.concat(received).toString()).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n[\s\S]*Sec-WebSocket-Key missing or malformed$/);
  } finally {
    client.destroy();
    server.close();
  }
});
