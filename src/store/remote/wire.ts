// The store proxy's wire: length-prefixed frames of V8-serialized messages over one socket (dates,
// byte arrays and undefined survive, as they would in one process), and store errors carried as their
// class and client message so the HTTP edge renders them as it does for a local store.
import type { Socket } from 'node:net';
import { deserialize, serialize } from 'node:v8';
import { ConflictError, NotFoundError, StoreBusyError, StoreUnavailableError } from '../port';

/** A frame larger than this is a broken peer, not a message (chunks are at most a few MiB). */
const MAX_FRAME = 256 * 1024 * 1024;

export interface WireError {
  name: string;
  message: string;
  clientMessage?: string;
  clientError?: string;
}

export interface StoreHello {
  kind: 'sqlite' | 'elasticsearch';
  traits: { remoteApiKeys: boolean; filesExpire: boolean };
}

/** What travels between a worker (the client) and the store's owner (the server). */
export type Frame =
  | { t: 'hello'; hello: StoreHello }
  | { t: 'call'; id: number; path: string; args: unknown[] }
  /** The abort signal of call `id` fired. */
  | { t: 'cancel'; id: number }
  | { t: 'result'; id: number; value?: unknown; stream?: number; error?: WireError }
  /** Stream `sid` of the receiver (exported by it): its next item, please. */
  | { t: 'pull'; sid: number }
  | { t: 'item'; sid: number; done: boolean; value?: unknown; error?: WireError }
  /** The reader of stream `sid` stopped early. */
  | { t: 'drop'; sid: number }
  | { t: 'fault'; fault: string | undefined };

/** An AsyncIterable argument or result, replaced by its stream id. */
export interface StreamRef { $stream: number }
/** An AbortSignal argument; its abort travels as a cancel frame. */
export interface SignalRef { $signal: true }

export function isStreamRef(v: unknown): v is StreamRef {
  return typeof v === 'object' && v !== null && typeof (v as StreamRef).$stream === 'number';
}

export function isSignalRef(v: unknown): v is SignalRef {
  return typeof v === 'object' && v !== null && (v as SignalRef).$signal === true;
}

export function isAsyncIterable(v: unknown): v is AsyncIterable<unknown> {
  return typeof v === 'object' && v !== null && typeof (v as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function';
}

export function toWire(err: unknown): WireError {
  if (err instanceof Error) {
    const { clientMessage, clientError } = err as { clientMessage?: unknown; clientError?: unknown };
    return {
      name: err.name, message: err.message,
      ...(typeof clientMessage === 'string' ? { clientMessage } : {}), ...(typeof clientError === 'string' ? { clientError } : {}),
    };
  }
  return { name: 'Error', message: String(err) };
}

/** The error again, of its port class where it has one (the edge maps those to 503, 429, 404). */
export function fromWire(e: WireError): Error {
  const opts = { ...(e.clientMessage === undefined ? {} : { clientMessage: e.clientMessage }), ...(e.clientError === undefined ? {} : { clientError: e.clientError }) };
  switch (e.name) {
    case 'StoreUnavailableError': return new StoreUnavailableError(e.message, opts);
    case 'StoreBusyError': return new StoreBusyError(e.message, opts);
    case 'NotFoundError': return new NotFoundError(e.message);
    case 'ConflictError': return new ConflictError(e.message);
    default: return Object.assign(new Error(e.message), { name: e.name });
  }
}

/** Writes frames to the socket and hands every whole frame it reads to `onFrame`. */
export class FramedSocket {
  /** What has arrived of the frames not yet whole; joined once a frame is complete, not per read. */
  private chunks: Buffer[] = [];
  private size = 0;
  /** The length of the frame being read, header included, once its header is in. */
  private need = -1;

  constructor(readonly socket: Socket, onFrame: (f: Frame) => void, onBroken: (err: Error) => void) {
    socket.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.size += chunk.length;
      while (this.size >= 4) {
        if (this.need < 0) {
          const head = this.chunks[0]!.length >= 4 ? this.chunks[0]! : this.join();
          const len = head.readUInt32BE(0);
          if (len > MAX_FRAME) {
            onBroken(new Error(`store proxy: frame of ${len} bytes`));
            socket.destroy();
            return;
          }
          this.need = 4 + len;
        }
        if (this.size < this.need) return;
        const buf = this.join();
        let frame: Frame;
        try {
          frame = deserialize(buf.subarray(4, this.need)) as Frame;
        } catch (err) {
          onBroken(err as Error);
          socket.destroy();
          return;
        }
        const rest = buf.subarray(this.need);
        // A small leftover of a large read is copied, so that the large buffer can be freed.
        this.chunks = rest.length === 0 ? [] : [buf.length > 65536 && rest.length < buf.length / 2 ? Buffer.from(rest) : rest];
        this.size = rest.length;
        this.need = -1;
        onFrame(frame);
      }
    });
  }

  private join(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks, this.size)];
    return this.chunks[0]!;
  }

  send(frame: Frame): void {
    if (this.socket.destroyed) return;
    const body = serialize(frame);
    const head = Buffer.allocUnsafe(4);
    head.writeUInt32BE(body.length, 0);
    this.socket.cork();
    this.socket.write(head);
    this.socket.write(body);
    process.nextTick(() => this.socket.uncork());
  }
}
