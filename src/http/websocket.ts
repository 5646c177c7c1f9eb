// A server-side WebSocket (RFC 6455) over an upgraded socket: the handshake, frame parsing with client
// masking, fragmentation, ping/pong and the close handshake, binary messages bounded in size and in
// fragments (1009), what the peer leaves unread bounded (1008), and no more read while the send buffer is
// full or a message is being handled. No extensions (permessage-deflate is not offered). Written for
// OpAMP, which needs only this much.
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export const CLOSE = { normal: 1000, goingAway: 1001, protocolError: 1002, policy: 1008, tooBig: 1009, internal: 1011, tryAgainLater: 1013 } as const;

/** How long a closing connection may take to go before it is destroyed (a peer that neither reads nor closes). */
const CLOSE_GRACE_MS = 2000;
/**
 * A send that finds more than this still unsent drops the connection: the peer stopped reading, and
 * every push or pong would otherwise stay in memory. One message may go past it (a large configuration),
 * never a second.
 */
const MAX_UNSENT_BYTES = 4 * 1024 * 1024;
/**
 * Fragments a message may come in: one per KiB of the limit, at least 64. Each is a Buffer kept until
 * the message ends, so a flood of tiny (or empty) continuation frames would cost memory far past the
 * limit while its byte count stayed small. gorilla/websocket (opamp-go's client) sends a message in
 * fragments of its 4 KiB write buffer.
 */
const MIN_FRAGMENTS = 64;
const FRAGMENT_BYTES = 1024;

/** Memory shared by every connection's unread and unfinished messages (http/body.ts BodyBudget). */
export interface ByteBudget {
  take(n: number): boolean;
  give(n: number): void;
}

/** The bounds above, for a caller (or a test) that needs others. */
export interface WebSocketOptions {
  closeGraceMs?: number;
  maxUnsentBytes?: number;
  /**
   * What this connection holds of messages not yet whole (read and unparsed, fragments) is taken from
   * it: each connection may hold one message up to its limit, so without a shared bound thousands of
   * connections trickling large messages would hold thousands of limits. Past it: close 1013.
   */
  budget?: ByteBudget;
}

/** Reasons reading is held: a message's handler still running, or the peer not taking what it was sent. */
const HOLD_HANDLER = 1;
const HOLD_WRITE = 2;

export interface WebSocketHandlers {
  /**
   * A whole binary message. When it returns a promise, nothing more is read until it settles: a client
   * sending faster than its messages are handled waits in TCP, not in the server's memory.
   */
  onMessage(data: Buffer): void | Promise<unknown>;
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

/**
 * Answers a refused handshake and lets the socket go: once the answer is out, or after the grace period
 * for a peer that does not read it. An ended socket is not a closed one: with half-open connections
 * allowed (node:http's servers), a client that never sends its FIN would hold it for good.
 */
export function refuseHandshake(socket: Socket, response: string, graceMs = CLOSE_GRACE_MS): void {
  socket.end(response);
  socket.destroySoon();
  const timer = setTimeout(() => socket.destroy(), graceMs).unref();
  socket.once('close', () => clearTimeout(timer));
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
  /** Bytes read and not yet parsed (a frame's pieces are joined once all of it is here). */
  private buffered: Buffer[] = [];
  private bufferedBytes = 0;
  /** Bytes the frame being read needs in all, counted from the first buffered byte (0: unknown). */
  private needed = 0;
  /** The message being reassembled from fragments. */
  private fragments: Buffer[] = [];
  private fragmentBytes = 0;
  private fragmentCount = 0;
  private fragmentOpcode = 0;
  private readonly maxFragments: number;
  private closeSent = false;
  private ended = false;
  /** A protocol fault: nothing more is parsed. */
  private failed = false;
  private held = 0;
  private parsing = false;
  private destroyTimer: NodeJS.Timeout | undefined;
  private readonly closeGraceMs: number;
  private readonly maxUnsentBytes: number;
  private readonly budget: ByteBudget | undefined;
  /** Bytes taken from the budget: what is buffered and in fragments, as of the last account(). */
  private reserved = 0;
  /** When the peer last sent anything (ms since the epoch), for liveness sweeps. */
  lastHeard = Date.now();
  private pinged = false;

  constructor(private readonly socket: Socket, private readonly maxMessageBytes: number, private readonly h: WebSocketHandlers,
    head?: Buffer, opts: WebSocketOptions = {}) {
    this.closeGraceMs = opts.closeGraceMs ?? CLOSE_GRACE_MS;
    this.maxUnsentBytes = opts.maxUnsentBytes ?? MAX_UNSENT_BYTES;
    this.budget = opts.budget;
    this.maxFragments = Math.max(MIN_FRAGMENTS, Math.ceil(maxMessageBytes / FRAGMENT_BYTES));
    socket.setNoDelay(true);
    socket.on('data', (c: Buffer) => this.receive(c));
    socket.on('close', () => {
      clearTimeout(this.destroyTimer);
      this.finish(1006);
    });
    socket.on('error', () => socket.destroy());
    if (head && head.length > 0) this.receive(head);
  }

  get open(): boolean {
    return !this.closeSent && !this.ended;
  }

  /** Sends one binary message. */
  send(data: Buffer): void {
    if (this.open) this.write(frame(0x2, data));
  }

  /** Starts the close handshake; the socket ends when the peer answers (or after a grace period). */
  close(code: number, reason = ''): void {
    if (this.closeSent || this.ended) return;
    this.closeSent = true;
    this.closeCode = code;
    const payload = Buffer.alloc(2 + Buffer.byteLength(reason));
    payload.writeUInt16BE(code, 0);
    payload.write(reason, 2);
    this.write(frame(0x8, payload));
    // A peer that never answers the close does not keep the socket.
    this.destroyLater();
  }

  private closeCode = 1006;

  private finish(code: number): void {
    if (this.ended) return;
    this.ended = true;
    this.buffered = [];
    this.bufferedBytes = 0;
    this.fragments = [];
    this.fragmentBytes = 0;
    this.account();
    this.h.onClose(this.closeSent ? this.closeCode : code);
  }

  /** Brings the budget's share to what is held now; false when the budget cannot cover it. */
  private account(): boolean {
    if (!this.budget) return true;
    const held = this.bufferedBytes + this.fragmentBytes;
    if (held > this.reserved) {
      if (!this.budget.take(held - this.reserved)) return false;
    } else if (held < this.reserved) {
      this.budget.give(this.reserved - held);
    }
    this.reserved = held;
    return true;
  }

  private destroyLater(): void {
    if (this.destroyTimer || this.socket.destroyed) return;
    this.destroyTimer = setTimeout(() => this.socket.destroy(), this.closeGraceMs);
    this.destroyTimer.unref();
  }

  /**
   * Every frame out goes through here. Past the unsent bound the peer is not reading: the connection is
   * dropped (1008 to the handler; a close frame would only queue behind the rest). Above the socket's
   * high-water mark, reading stops until it drains, so a peer's pings or messages cannot make the
   * server queue answers it does not take.
   */
  private write(bytes: Buffer): void {
    if (this.socket.destroyed) return;
    if (this.socket.writableLength > this.maxUnsentBytes) {
      if (!this.closeSent) {
        this.closeSent = true;
        this.closeCode = CLOSE.policy;
      }
      this.socket.destroy();
      return;
    }
    if (!this.socket.write(bytes) && (this.held & HOLD_WRITE) === 0) {
      this.hold(HOLD_WRITE);
      this.socket.once('drain', () => this.release(HOLD_WRITE));
    }
  }

  private hold(reason: number): void {
    if (this.held === 0) this.socket.pause();
    this.held |= reason;
  }

  private release(reason: number): void {
    if ((this.held & reason) === 0) return;
    this.held &= ~reason;
    if (this.held !== 0 || this.ended) return;
    // What arrived meanwhile is parsed first (which may hold again); a release from inside the parse
    // loop (a handler settling at once) lets that loop go on.
    if (!this.parsing) this.parse();
    if (this.held === 0 && !this.ended) this.socket.resume();
  }

  /**
   * A liveness check, called periodically: a peer silent for `idleMs` is pinged; one still silent at
   * the next check (no pong, nothing else) is gone (a vanished host sends no FIN) and is dropped. While
   * a message's handler runs nothing is read, so that silence is the server's own and does not count.
   */
  checkAlive(now: number, idleMs: number): void {
    if (this.ended || (this.held & HOLD_HANDLER) !== 0 || now - this.lastHeard < idleMs) {
      this.pinged = false;
      return;
    }
    if (this.pinged) {
      this.socket.destroy();
      return;
    }
    this.pinged = true;
    if (this.open) this.write(frame(0x9, Buffer.alloc(0)));
  }

  private receive(chunk: Buffer): void {
    if (this.ended || this.failed) return;
    this.lastHeard = Date.now();
    this.buffered.push(chunk);
    this.bufferedBytes += chunk.length;
    if (!this.account()) {
      this.fail(CLOSE.tryAgainLater, 'server busy');
      return;
    }
    if (this.held === 0) this.parse();
  }

  /**
   * Parses the whole frames buffered. The pieces are joined only once the frame they start has all
   * arrived: joining at every read would copy a large frame trickled in small pieces once per piece.
   */
  private parse(): void {
    if (this.bufferedBytes === 0 || this.bufferedBytes < this.needed) return;
    this.needed = 0;
    const buf = this.buffered.length === 1 ? this.buffered[0]! : Buffer.concat(this.buffered, this.bufferedBytes);
    let off = 0;
    this.parsing = true;
    try {
      while (this.held === 0 && !this.ended && !this.failed) {
        const used = this.parseFrame(buf, off);
        if (used === 0) break;
        off += used;
      }
    } finally {
      this.parsing = false;
    }
    if (this.ended || this.failed) {
      this.buffered = [];
      this.bufferedBytes = 0;
      this.account();
      return;
    }
    const rest = buf.subarray(off);
    this.buffered = rest.length > 0 ? [rest] : [];
    this.bufferedBytes = rest.length;
    // Only less than before: what was parsed moved into fragments or was handed on.
    this.account();
  }

  /** Parses one frame at `off`; returns the bytes it used, or 0 when it has not all arrived (`needed` says how much). */
  private parseFrame(buf: Buffer, off: number): number {
    if (buf.length - off < 2) return this.incomplete(2);
    const b0 = buf[off]!;
    const b1 = buf[off + 1]!;
    const fin = (b0 & 0x80) !== 0;
    const opcode = b0 & 0x0f;
    let len = b1 & 0x7f;
    let pos = off + 2;
    if ((b0 & 0x70) !== 0 || (b1 & 0x80) === 0) return this.fail(CLOSE.protocolError, 'reserved bits set or frame not masked');
    if (len === 126) {
      if (buf.length - pos < 2) return this.incomplete(4);
      len = buf.readUInt16BE(pos);
      pos += 2;
    } else if (len === 127) {
      if (buf.length - pos < 8) return this.incomplete(10);
      const big = buf.readBigUInt64BE(pos);
      if (big > BigInt(Number.MAX_SAFE_INTEGER)) return this.fail(CLOSE.tooBig, 'message too big');
      len = Number(big);
      pos += 8;
    }
    const control = opcode >= 0x8;
    if (control && (!fin || len > 125)) return this.fail(CLOSE.protocolError, 'bad control frame');
    // Refused on its declared length, before its bytes are buffered.
    if (!control && this.fragmentBytes + len > this.maxMessageBytes) return this.fail(CLOSE.tooBig, 'message too big');
    if (buf.length - pos < 4 + len) return this.incomplete(pos - off + 4 + len);
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
    if (++this.fragmentCount > this.maxFragments) return this.fail(CLOSE.tooBig, 'message in too many fragments');
    if (len > 0) this.fragments.push(payload);
    this.fragmentBytes += len;
    if (fin) {
      const data = this.fragments.length === 1 ? this.fragments[0]! : Buffer.concat(this.fragments, this.fragmentBytes);
      const kind = this.fragmentOpcode;
      this.fragments = [];
      this.fragmentBytes = 0;
      this.fragmentCount = 0;
      this.fragmentOpcode = 0;
      if (!this.closeSent) {
        if (kind === 0x2) this.deliver(data);
        else this.h.onText(data);
      }
    }
    return used;
  }

  private incomplete(frameBytes: number): number {
    this.needed = frameBytes;
    return 0;
  }

  private deliver(data: Buffer): void {
    const handled = this.h.onMessage(data);
    if (typeof (handled as Promise<unknown> | undefined)?.then !== 'function') return;
    this.hold(HOLD_HANDLER);
    const done = (): void => this.release(HOLD_HANDLER);
    (handled as Promise<unknown>).then(done, done);
  }

  private control(opcode: number, payload: Buffer): void {
    if (opcode === 0x9) {
      if (this.open) this.write(frame(0xa, payload));
    } else if (opcode === 0x8) {
      const code = payload.length >= 2 ? payload.readUInt16BE(0) : CLOSE.normal;
      if (!this.closeSent) {
        this.closeSent = true;
        this.closeCode = code;
        this.write(frame(0x8, payload.subarray(0, 2)));
      }
      // The handshake is over: the socket goes once the answer is out (RFC 6455 has the server close the
      // TCP connection first), or after the grace period for a peer that reads nothing and sends no FIN.
      this.socket.destroySoon();
      this.destroyLater();
      this.finish(code);
    }
  }

  private fail(code: number, reason: string): number {
    this.failed = true;
    this.close(code, reason);
    this.buffered = [];
    this.bufferedBytes = 0;
    this.fragments = [];
    this.fragmentBytes = 0;
    this.account();
    // Nothing more is read from a connection being closed for a protocol fault.
    this.socket.removeAllListeners('data');
    this.socket.on('data', () => undefined);
    return 0;
  }
}
