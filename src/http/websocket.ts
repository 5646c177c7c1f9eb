// A server-side WebSocket (RFC 6455) over an upgraded socket: the handshake, frame parsing with client
// masking, fragmentation, ping/pong and the close handshake, binary messages bounded in size (1009).
// No extensions (permessage-deflate is not offered). Written for OpAMP, which needs only this much.
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export const CLOSE = { normal: 1000, goingAway: 1001, protocolError: 1002, tooBig: 1009, internal: 1011 } as const;

export interface WebSocketHandlers {
  /** A whole binary message. */
  onMessage(data: Buffer): void;
  /** A whole text message (not what the protocol carries; the handler decides). */
  onText(data: Buffer): void;
  /** The connection ended; `code` is the close code received or sent (1006 when it just dropped). */
  onClose(code: number): void;
}

/** Why a handshake cannot be accepted, or undefined when it can. */
export function handshakeProblem(req: IncomingMessage): string | undefined {
  if (req.method !== 'GET') return 'WebSocket handshake must be a GET';
  if (String(req.headers['upgrade'] ?? '').toLowerCase() !== 'websocket') return 'Upgrade: websocket required';
  if (req.headers['sec-websocket-version'] !== '13') return 'Sec-WebSocket-Version: 13 required';
  const key = req.headers['sec-websocket-key'];
  if (typeof key !== 'string' || Buffer.from(key, 'base64').length !== 16) return 'Sec-WebSocket-Key missing or malformed';
  return undefined;
}

/** The 101 answer for a handshake handshakeProblem() accepted. */
export function handshakeResponse(req: IncomingMessage, headers: Record<string, string> = {}): string {
  const accept = createHash('sha1').update(`${req.headers['sec-websocket-key']}${GUID}`).digest('base64');
  const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  return `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n${extra}\r\n`;
}

function frame(opcode: number, payload: Buffer): Buffer {
  const n = payload.length;
  const head = n < 126 ? Buffer.alloc(2) : n < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
  head[0] = 0x80 | opcode;
  if (n < 126) head[1] = n;
  else if (n < 65536) {
    head[1] = 126;
    head.writeUInt16BE(n, 2);
  } else {
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(n), 2);
  }
  return Buffer.concat([head, payload]);
}

export class WebSocketConnection {
  private buffered: Buffer[] = [];
  private bufferedBytes = 0;
  /** The message being reassembled from fragments. */
  private fragments: Buffer[] = [];
  private fragmentBytes = 0;
  private fragmentOpcode = 0;
  private closeSent = false;
  private ended = false;
  /** When the peer last sent anything (ms since the epoch), for liveness sweeps. */
  lastHeard = Date.now();
  private pinged = false;

  constructor(private readonly socket: Socket, private readonly maxMessageBytes: number, private readonly h: WebSocketHandlers, head?: Buffer) {
    socket.setNoDelay(true);
    socket.on('data', (c: Buffer) => this.receive(c));
    socket.on('close', () => this.finish(1006));
    socket.on('error', () => socket.destroy());
    if (head && head.length > 0) this.receive(head);
  }

  get open(): boolean {
    return !this.closeSent && !this.ended;
  }

  /** Sends one binary message. */
  send(data: Buffer): void {
    if (this.open) this.socket.write(frame(0x2, data));
  }

  /** Starts the close handshake; the socket ends when the peer answers (or after a grace period). */
  close(code: number, reason = ''): void {
    if (this.closeSent || this.ended) return;
    this.closeSent = true;
    const payload = Buffer.alloc(2 + Buffer.byteLength(reason));
    payload.writeUInt16BE(code, 0);
    payload.write(reason, 2);
    this.socket.write(frame(0x8, payload));
    this.closeCode = code;
    // A peer that never answers the close does not keep the socket.
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }

  private closeCode = 1006;

  private finish(code: number): void {
    if (this.ended) return;
    this.ended = true;
    this.h.onClose(this.closeSent ? this.closeCode : code);
  }

  /**
   * A liveness check, called periodically: a peer silent for `idleMs` is pinged; one still silent at
   * the next check (no pong, nothing else) is gone (a vanished host sends no FIN) and is dropped.
   */
  checkAlive(now: number, idleMs: number): void {
    if (this.ended || now - this.lastHeard < idleMs) {
      this.pinged = false;
      return;
    }
    if (this.pinged) {
      this.socket.destroy();
      return;
    }
    this.pinged = true;
    if (this.open) this.socket.write(frame(0x9, Buffer.alloc(0)));
  }

  private receive(chunk: Buffer): void {
    if (this.ended) return;
    this.lastHeard = Date.now();
    this.buffered.push(chunk);
    this.bufferedBytes += chunk.length;
    let buf = this.buffered.length === 1 ? this.buffered[0]! : Buffer.concat(this.buffered, this.bufferedBytes);
    let off = 0;
    for (;;) {
      const used = this.parseFrame(buf, off);
      if (used === 0) break;
      off += used;
      if (this.ended) return;
    }
    buf = buf.subarray(off);
    this.buffered = buf.length > 0 ? [buf] : [];
    this.bufferedBytes = buf.length;
  }

  /** Parses one frame at `off`; returns the bytes it used, or 0 when it has not all arrived. */
  private parseFrame(buf: Buffer, off: number): number {
    if (buf.length - off < 2) return 0;
    const b0 = buf[off]!;
    const b1 = buf[off + 1]!;
    const fin = (b0 & 0x80) !== 0;
    const opcode = b0 & 0x0f;
    let len = b1 & 0x7f;
    let pos = off + 2;
    if ((b0 & 0x70) !== 0 || (b1 & 0x80) === 0) return this.fail(CLOSE.protocolError, 'reserved bits set or frame not masked');
    if (len === 126) {
      if (buf.length - pos < 2) return 0;
      len = buf.readUInt16BE(pos);
      pos += 2;
    } else if (len === 127) {
      if (buf.length - pos < 8) return 0;
      const big = buf.readBigUInt64BE(pos);
      if (big > BigInt(Number.MAX_SAFE_INTEGER)) return this.fail(CLOSE.tooBig, 'message too big');
      len = Number(big);
      pos += 8;
    }
    const control = opcode >= 0x8;
    if (control && (!fin || len > 125)) return this.fail(CLOSE.protocolError, 'bad control frame');
    // Refused on its declared length, before its bytes are buffered.
    if (!control && this.fragmentBytes + len > this.maxMessageBytes) return this.fail(CLOSE.tooBig, 'message too big');
    if (buf.length - pos < 4 + len) return 0;
    const mask = buf.subarray(pos, pos + 4);
    pos += 4;
    const payload = Buffer.from(buf.subarray(pos, pos + len));
    for (let i = 0; i < payload.length; i++) payload[i]! ^= mask[i & 3]!;
    const used = pos + len - off;
    if (control) {
      this.control(opcode, payload);
      return used;
    }
    if (opcode === 0x0) {
      if (this.fragmentOpcode === 0) return this.fail(CLOSE.protocolError, 'continuation without a message');
    } else if (opcode === 0x1 || opcode === 0x2) {
      if (this.fragmentOpcode !== 0) return this.fail(CLOSE.protocolError, 'new message inside a fragmented one');
      this.fragmentOpcode = opcode;
    } else {
      return this.fail(CLOSE.protocolError, 'unknown opcode');
    }
    this.fragments.push(payload);
    this.fragmentBytes += len;
    if (fin) {
      const data = this.fragments.length === 1 ? this.fragments[0]! : Buffer.concat(this.fragments, this.fragmentBytes);
      const kind = this.fragmentOpcode;
      this.fragments = [];
      this.fragmentBytes = 0;
      this.fragmentOpcode = 0;
      if (!this.closeSent) {
        if (kind === 0x2) this.h.onMessage(data);
        else this.h.onText(data);
      }
    }
    return used;
  }

  private control(opcode: number, payload: Buffer): void {
    if (opcode === 0x9) {
      if (this.open) this.socket.write(frame(0xa, payload));
    } else if (opcode === 0x8) {
      const code = payload.length >= 2 ? payload.readUInt16BE(0) : CLOSE.normal;
      if (!this.closeSent) {
        this.closeSent = true;
        this.closeCode = code;
        this.socket.write(frame(0x8, payload.subarray(0, 2)));
      }
      this.socket.end();
      this.finish(code);
    }
  }

  private fail(code: number, reason: string): number {
    this.close(code, reason);
    this.buffered = [];
    this.bufferedBytes = 0;
    this.fragments = [];
    this.fragmentBytes = 0;
    // Nothing more is read from a connection being closed for a protocol fault.
    this.socket.removeAllListeners('data');
    this.socket.on('data', () => undefined);
    return 0;
  }
}
