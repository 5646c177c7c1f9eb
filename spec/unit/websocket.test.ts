// The server side of RFC 6455 in process, over a real socket pair: fragments reassembled, control
// frames between fragments, the size limit (1009), the close handshake and the liveness sweep.
import net from 'node:net';
import { CLOSE, WebSocketConnection } from '../../src/http/websocket';
import { clientFrame } from '../support/ws-client';

interface Pair {
  client: net.Socket;
  ws: WebSocketConnection;
  messages: Buffer[];
  texts: Buffer[];
  closed: Promise<number>;
  received: () => Buffer;
  server: net.Server;
}

async function pair(maxMessageBytes = 1024): Promise<Pair> {
  const messages: Buffer[] = [];
  const texts: Buffer[] = [];
  let closedWith!: (code: number) => void;
  const closed = new Promise<number>((r) => (closedWith = r));
  let ws!: WebSocketConnection;
  const server = net.createServer((socket) => {
    ws = new WebSocketConnection(socket, maxMessageBytes, { onMessage: (d) => void messages.push(d), onText: (d) => texts.push(d), onClose: closedWith });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  const chunks: Buffer[] = [];
  client.on('data', (c: Buffer) => chunks.push(c));
  client.on('error', () => undefined);
  await new Promise((r) => client.once('connect', r));
  while (!ws) await new Promise((r) => setTimeout(r, 5));
  return { client, ws, messages, texts, closed, received: () => Buffer.concat(chunks), server };
}

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
}

test('fragments are reassembled, a ping between them is answered, text is told apart', async () => {
  const p = await pair();
  try {
    p.client.write(clientFrame(0x2, Buffer.from('hel'), false));
    p.client.write(clientFrame(0x9, Buffer.from('p')));
    // One byte at a time: frames are parsed across reads.
    for (const b of clientFrame(0x0, Buffer.from('lo'), true)) p.client.write(Buffer.from([b]));
    p.client.write(clientFrame(0x1, Buffer.from('txt')));
    // The pong travels back on the client's socket, read in a turn of its own.
    await until(() => p.texts.length === 1 && p.received().length >= 3);
    expect(p.messages).toEqual([Buffer.from('hello')]);
    expect(p.texts).toEqual([Buffer.from('txt')]);
    expect(p.received()).toEqual(Buffer.from([0x8a, 0x01, 0x70]));
    p.ws.send(Buffer.alloc(300, 1));
    await until(() => p.received().length >= 3 + 4 + 300);
    expect(p.received().subarray(3, 7)).toEqual(Buffer.from([0x82, 126, 0x01, 0x2c]));
  } finally {
    p.client.destroy();
    p.server.close();
  }
});

test('a message over the limit across fragments closes with 1009; the close handshake ends the connection', async () => {
  const p = await pair(10);
  try {
    p.client.write(clientFrame(0x2, Buffer.alloc(6), false));
    p.client.write(clientFrame(0x0, Buffer.alloc(6), true));
    expect(await p.closed).toBe(CLOSE.tooBig);
    expect(p.messages).toEqual([]);
    expect(p.received().subarray(0, 4)).toEqual(Buffer.from([0x88, 0x11, 0x03, 0xf1]));
  } finally {
    p.client.destroy();
    p.server.close();
  }
  const q = await pair();
  try {
    const code = Buffer.alloc(2);
    code.writeUInt16BE(1000);
    q.client.write(clientFrame(0x8, code));
    expect(await q.closed).toBe(1000);
    await new Promise((r) => q.client.once('close', r));
    expect(q.received()).toEqual(Buffer.from([0x88, 0x02, 0x03, 0xe8]));
  } finally {
    q.server.close();
  }
});

test('liveness: a silent peer is pinged, and dropped when it stays silent; one that answers is kept', async () => {
  const p = await pair();
  try {
    const t = p.ws.lastHeard;
    p.ws.checkAlive(t + 1000, 5000);
    expect(p.received().length).toBe(0);
    p.ws.checkAlive(t + 6000, 5000);
    await until(() => p.received().length > 0);
    expect(p.received()).toEqual(Buffer.from([0x89, 0x00]));
    // It answers: kept.
    p.client.write(clientFrame(0xa, Buffer.alloc(0)));
    await until(() => p.ws.lastHeard > t);
    p.ws.checkAlive(p.ws.lastHeard + 1000, 5000);
    expect(p.client.destroyed).toBe(false);
    // Silent through a ping and the next sweep: dropped.
    p.ws.checkAlive(p.ws.lastHeard + 6000, 5000);
    p.ws.checkAlive(p.ws.lastHeard + 9000, 5000);
    expect(await p.closed).toBe(1006);
  } finally {
    p.client.destroy();
    p.server.close();
  }
});
