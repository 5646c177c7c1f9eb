// A minimal WebSocket client for the tests (RFC 6455 from the client's side: masked frames), enough to
// speak OpAMP's WebSocket transport and to send what a broken client would.
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { Socket } from 'node:net';

export interface WsFrame {
  opcode: number;
  payload: Buffer;
}

export interface UpgradeRefusal {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** A client frame; `fin` false starts or continues a fragmented message. */
export function clientFrame(opcode: number, payload: Buffer, fin = true, declaredLength?: number): Buffer {
  const n = declaredLength ?? payload.length;
  const head = n < 126 ? Buffer.alloc(2) : n < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
  head[0] = (fin ? 0x80 : 0) | opcode;
  if (n < 126) head[1] = 0x80 | n;
  else if (n < 65536) {
    head[1] = 0x80 | 126;
    head.writeUInt16BE(n, 2);
  } else {
    head[1] = 0x80 | 127;
    head.writeBigUInt64BE(BigInt(n), 2);
  }
  const mask = randomBytes(4);
  const masked = Buffer.from(payload);
  for (let i = 0; i < masked.length; i++) masked[i]! ^= mask[i & 3]!;
  return Buffer.concat([head, mask, masked]);
}

export class WsClient {
  private buf = Buffer.alloc(0);
  private readonly frames: WsFrame[] = [];
  private waiters: (() => void)[] = [];
  closed = false;
  closeCode: number | undefined;

  private constructor(readonly socket: Socket, head: Buffer) {
    socket.on('data', (c: Buffer) => this.receive(c));
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
    if (head.length > 0) this.receive(head);
  }

  /** Opens a WebSocket; resolves with the refusal instead when the server does not switch protocols. */
  static connect(url: string, headers: Record<string, string> = {}): Promise<WsClient | UpgradeRefusal> {
    const key = randomBytes(16).toString('base64');
    return new Promise((resolve, reject) => {
      const req = http.request(url, {
        agent: false,
        headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': key, ...headers },
      });
      req.on('upgrade', (res, socket, head) => {
        const expected = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
        if (res.headers['sec-websocket-accept'] !== expected) reject(new Error('bad Sec-WebSocket-Accept'));
        else resolve(new WsClient(socket, head));
      });
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      });
      req.on('error', reject);
      req.end();
    });
  }

  write(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  sendBinary(payload: Buffer): void {
    this.write(clientFrame(0x2, payload));
  }

  close(code = 1000): void {
    const p = Buffer.alloc(2);
    p.writeUInt16BE(code);
    this.write(clientFrame(0x8, p));
  }

  /** The next data or close frame (pongs are returned too); rejects after `timeoutMs`. */
  async next(timeoutMs = 5000): Promise<WsFrame> {
    const deadline = Date.now() + timeoutMs;
    while (this.frames.length === 0) {
      if (this.closed) throw new Error('connection closed');
      if (Date.now() > deadline) throw new Error('no frame in time');
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.max(1, deadline - Date.now()));
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    return this.frames.shift()!;
  }

  /** Resolves once the server has closed the connection (the close code, if it sent one). */
  async closedWith(timeoutMs = 5000): Promise<number | undefined> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < deadline) {
      const f = this.frames.shift();
      if (!f) await new Promise((r) => setTimeout(r, 20));
    }
    return this.closeCode;
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private receive(c: Buffer): void {
    this.buf = Buffer.concat([this.buf, c]);
    for (;;) {
      if (this.buf.length < 2) return;
      let len = this.buf[1]! & 0x7f;
      let pos = 2;
      if (len === 126) {
        if (this.buf.length < 4) return;
        len = this.buf.readUInt16BE(2);
        pos = 4;
      } else if (len === 127) {
        if (this.buf.length < 10) return;
        len = Number(this.buf.readBigUInt64BE(2));
        pos = 10;
      }
      if (this.buf.length < pos + len) return;
      const frame = { opcode: this.buf[0]! & 0x0f, payload: Buffer.from(this.buf.subarray(pos, pos + len)) };
      this.buf = this.buf.subarray(pos + len);
      if (frame.opcode === 0x8) this.closeCode = frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : undefined;
      this.frames.push(frame);
      this.wake();
    }
  }
}
