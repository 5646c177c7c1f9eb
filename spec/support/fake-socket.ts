// A fake net.Socket for WebSocket tests: reads and the send buffer are exact and under the test's control.
import { EventEmitter } from 'node:events';

/** The parts of a net.Socket the connection uses; nothing is flushed until `drain()`. */
export class FakeSocket extends EventEmitter {
  readonly written: Buffer[] = [];
  writableLength = 0;
  readonly writableHighWaterMark = 16 * 1024;
  paused = false;
  ended = false;
  destroyed = false;

  setNoDelay(): this {
    return this;
  }

  write(b: Buffer | string): boolean {
    const buf = Buffer.from(b);
    this.written.push(buf);
    this.writableLength += buf.length;
    return this.writableLength < this.writableHighWaterMark;
  }

  /** The peer read everything. */
  drain(): void {
    this.writableLength = 0;
    this.emit('drain');
  }

  pause(): this {
    this.paused = true;
    return this;
  }

  resume(): this {
    this.paused = false;
    return this;
  }

  end(): this {
    this.ended = true;
    return this;
  }

  /** As net's: destroyed once what was written is flushed, which here is never unless drained. */
  destroySoon(): void {
    this.end();
    if (this.writableLength === 0) this.destroy();
  }

  destroy(): this {
    if (!this.destroyed) {
      this.destroyed = true;
      setImmediate(() => this.emit('close'));
    }
    return this;
  }

  /** A peer sending: delivered only while the socket is read (a paused socket emits nothing). */
  send(bytes: Buffer): void {
    if (!this.paused) this.emit('data', bytes);
    else this.backlog.push(bytes);
  }

  private readonly backlog: Buffer[] = [];

  /** Control frames the server sent, as [opcode, payload]. */
  frames(): [number, Buffer][] {
    const all = Buffer.concat(this.written);
    const out: [number, Buffer][] = [];
    for (let off = 0; off < all.length;) {
      let len = all[off + 1]! & 0x7f;
      let pos = off + 2;
      if (len === 126) {
        len = all.readUInt16BE(pos);
        pos += 2;
      } else if (len === 127) {
        len = Number(all.readBigUInt64BE(pos));
        pos += 8;
      }
      out.push([all[off]! & 0x0f, all.subarray(pos, pos + len)]);
      off = pos + len;
    }
    return out;
  }

  /** Whatever the peer sent while the socket was paused, now that it is read again. */
  flushBacklog(): void {
    while (!this.paused && this.backlog.length > 0) this.emit('data', this.backlog.shift());
  }
}
