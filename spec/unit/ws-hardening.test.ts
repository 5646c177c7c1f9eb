// What a hostile or broken WebSocket peer cannot make the server do: hold a socket after the close
// handshake, copy a trickled frame once per piece, keep endless fragments, make it queue answers it does
// not read, or pipeline messages past one being handled. A fake socket makes reads and the send buffer
// exact; the half-open case runs on a real loopback pair.
import net from 'node:net';
import { BodyBudget } from '../../src/http/body';
import { CLOSE, WebSocketConnection, type WebSocketOptions } from '../../src/http/websocket';
import { FakeSocket } from '../support/fake-socket';
import { clientFrame } from '../support/ws-client';

interface Session {
  sock: FakeSocket;
  ws: WebSocketConnection;
  messages: Buffer[];
  closed: Promise<number>;
}

function session(maxMessageBytes: number, onMessage?: (d: Buffer) => void | Promise<unknown>, opts?: WebSocketOptions): Session {
  const sock = new FakeSocket();
  const messages: Buffer[] = [];
  let closedWith!: (code: number) => void;
  const closed = new Promise<number>((r) => (closedWith = r));
  const ws = new WebSocketConnection(sock as unknown as net.Socket, maxMessageBytes, {
    onMessage: (d) => {
      messages.push(d);
      return onMessage?.(d);
    },
    onText: () => undefined,
    onClose: closedWith,
  }, undefined, opts);
  return { sock, ws, messages, closed };
}

const closeCode = (payload: Buffer): number => payload.readUInt16BE(0);
/** Buffer.concat as it is before any spy. */
const realConcat = Buffer.concat.bind(Buffer);

/** Whether `p` settles within `ms` (a bound far above what it takes when it does). */
async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)));
  try {
    return await Promise.race([p.then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

test('a large frame trickled in small pieces is joined once, not once per piece', () => {
  const { sock, messages } = session(1024 * 1024);
  const payload = Buffer.alloc(512 * 1024, 7);
  const bytes = clientFrame(0x2, payload);
  let copied = 0;
  const concat = jest.spyOn(Buffer, 'concat').mockImplementation((list, total) => {
    const out = realConcat(list, total);
    copied += out.length;
    return out;
  });
  try {
    for (let off = 0; off < bytes.length; off += 1024) sock.send(bytes.subarray(off, off + 1024));
  } finally {
    concat.mockRestore();
  }
  expect(messages.length).toBe(1);
  expect(messages[0]!.equals(payload)).toBe(true);
  // One join of the frame's 512 pieces (old: a join of everything so far at each piece, ~128 MiB).
  expect(copied).toBeLessThan(2 * bytes.length);
});


test('endless empty continuation frames close with 1009; a message in as many fragments as allowed is taken', async () => {
  const { sock, messages, closed } = session(1024);
  // 64 fragments (the floor for a small limit) make a message.
  sock.send(Buffer.concat([clientFrame(0x2, Buffer.from('a'), false),
    ...Array.from({ length: 62 }, () => clientFrame(0x0, Buffer.alloc(0), false)), clientFrame(0x0, Buffer.from('b'), true)]));
  expect(messages).toEqual([Buffer.from('ab')]);
  // A message that never ends, in frames that carry nothing.
  sock.send(clientFrame(0x2, Buffer.alloc(0), false));
  sock.send(Buffer.concat(Array.from({ length: 1000 }, () => clientFrame(0x0, Buffer.alloc(0), false))));
  const [[op, payload]] = sock.frames().filter(([o]) => o === 0x8);
  expect(op).toBe(0x8);
  expect(closeCode(payload!)).toBe(CLOSE.tooBig);
  sock.destroy();
  expect(await closed).toBe(CLOSE.tooBig);
});

test('a peer that sends pings and reads nothing: reading stops at the send buffer\'s high-water mark, resumes on drain', () => {
  const { sock, ws } = session(1024);
  const ping = clientFrame(0x9, Buffer.alloc(125, 1));
  // 1,000 pings in one read: answered until the send buffer is full, the rest wait.
  sock.send(Buffer.concat(Array.from({ length: 1000 }, () => ping)));
  const pongs = (): number => sock.frames().filter(([o]) => o === 0xa).length;
  const first = pongs();
  expect(sock.paused).toBe(true);
  expect(first).toBeLessThan(1000);
  expect(sock.writableLength).toBeLessThan(sock.writableHighWaterMark + 200);
  // More arrives meanwhile: not read (TCP holds it).
  sock.send(ping);
  expect(pongs()).toBe(first);
  // The peer reads: the rest is answered, as it drains.
  for (let i = 0; i < 100 && sock.paused; i++) {
    sock.drain();
    sock.flushBacklog();
  }
  expect(pongs()).toBe(1001);
  expect(sock.paused).toBe(false);
  expect(ws.open).toBe(true);
});

test('pushes to a peer that reads nothing: past the unsent bound the connection is dropped (1008)', async () => {
  const { sock, ws, closed } = session(1024, undefined, { maxUnsentBytes: 64 * 1024 });
  const push = Buffer.alloc(40 * 1024);
  ws.send(push);
  ws.send(push);
  expect(sock.destroyed).toBe(false);
  // 80 KiB unsent, over the 64 KiB bound: this one is not buffered, the connection goes.
  ws.send(push);
  expect(sock.destroyed).toBe(true);
  expect(sock.writableLength).toBe(2 * (push.length + 4));
  expect(await closed).toBe(CLOSE.policy);
});

test('a handler that returns a promise holds the next message until it settles', async () => {
  let settle!: () => void;
  const { sock, messages } = session(1024, () => new Promise<void>((r) => (settle = r)));
  sock.send(Buffer.concat([clientFrame(0x2, Buffer.from('1')), clientFrame(0x2, Buffer.from('2')), clientFrame(0x2, Buffer.from('3'))]));
  expect(messages).toEqual([Buffer.from('1')]);
  expect(sock.paused).toBe(true);
  settle();
  await new Promise((r) => setImmediate(r));
  expect(messages).toEqual([Buffer.from('1'), Buffer.from('2')]);
  settle();
  await new Promise((r) => setImmediate(r));
  settle();
  await new Promise((r) => setImmediate(r));
  expect(messages.map(String)).toEqual(['1', '2', '3']);
  expect(sock.paused).toBe(false);
});

test('after the peer\'s close, a socket it keeps half-open is destroyed: at once when the answer is out, else after the grace period', async () => {
  // Real sockets, both sides allowing half-open (node:http's server does): the client never sends its FIN.
  let serverSocket!: net.Socket;
  let closedWith!: (code: number) => void;
  const closed = new Promise<number>((r) => (closedWith = r));
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    serverSocket = socket;
    new WebSocketConnection(socket, 1024, { onMessage: () => undefined, onText: () => undefined, onClose: closedWith });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const client = net.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
  client.on('error', () => undefined);
  try {
    await new Promise((r) => client.once('connect', r));
    while (!serverSocket) await new Promise((r) => setTimeout(r, 5));
    const serverClosed = new Promise((r) => serverSocket.once('close', r));
    const code = Buffer.alloc(2);
    code.writeUInt16BE(1000);
    client.write(clientFrame(0x8, code));
    expect(await closed).toBe(1000);
    // Old: ended only, so the server's socket (an fd, a connection slot) stayed for as long as the client.
    expect(await within(serverClosed, 5000)).toBe(true);
    expect(serverSocket.destroyed).toBe(true);
  } finally {
    client.destroy();
    server.close();
  }
  // A peer that does not read the answer either: the grace period ends it.
  const { sock, closed: fakeClosed } = session(1024, undefined, { closeGraceMs: 20 });
  sock.writableLength = 1;
  sock.send(clientFrame(0x8, Buffer.from([0x03, 0xe8])));
  expect(await fakeClosed).toBe(1000);
  expect(sock.destroyed).toBe(false);
  expect(await within(new Promise((r) => sock.once('close', r)), 5000)).toBe(true);
});

test('unfinished messages of every connection share the server\'s body budget: past it a connection is closed 1013, and all is given back', async () => {
  const budget = new BodyBudget(256 * 1024);
  const a = session(1024 * 1024, undefined, { budget });
  const b = session(1024 * 1024, undefined, { budget });
  // a holds 150 KiB of a 200 KiB message; b's 120 KiB would take the budget past its bound.
  const big = clientFrame(0x2, Buffer.alloc(200 * 1024, 1));
  a.sock.send(big.subarray(0, 150 * 1024));
  expect(budget.inUse).toBe(150 * 1024);
  b.sock.send(clientFrame(0x2, Buffer.alloc(160 * 1024, 2)).subarray(0, 120 * 1024));
  expect(closeCode(b.sock.frames().find(([op]) => op === 0x8)![1])).toBe(CLOSE.tryAgainLater);
  expect(budget.inUse).toBe(150 * 1024);
  // a finishes its message: handed on, and its bytes given back.
  a.sock.send(big.subarray(150 * 1024));
  expect(a.messages).toHaveLength(1);
  expect(budget.inUse).toBe(0);
  // A connection that ends with part of a message given back too.
  a.sock.send(big.subarray(0, 10 * 1024));
  expect(budget.inUse).toBe(10 * 1024);
  a.sock.destroy();
  await a.closed;
  expect(budget.inUse).toBe(0);
});
