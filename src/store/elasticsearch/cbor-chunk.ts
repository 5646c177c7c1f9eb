// Upload chunk documents in CBOR, as upstream writes them (internal/pkg/file/cbor/chunk.go): a map of
// exactly five keys `@timestamp` (uint64 ms), `last`, `bid`, `sha2` and `data`. `data` is a byte string
// with a 32-bit definite length for a non-final chunk and an indefinite-length byte string (a piece of
// 32-bit definite length, then a break) for the final one. cbor-x writes neither form of header (nor
// indefinite byte strings at all), so this encoder is hand-written; the decoding is cbor-x's.
import { decode } from 'cbor-x/index-no-eval';

export interface ChunkHeader {
  timestampMs: number;
  last: boolean;
  bid: string;
  sha2: string;
}

const UTF8 = new TextEncoder();

/** A CBOR text string head and bytes (major type 3), with the shortest length form. */
function text(s: string): Buffer {
  const bytes = UTF8.encode(s);
  return Buffer.concat([head(3, bytes.length), bytes]);
}

function head(major: number, n: number): Buffer {
  const m = major << 5;
  if (n < 24) return Buffer.from([m | n]);
  if (n < 0x100) return Buffer.from([m | 24, n]);
  if (n < 0x10000) {
    const b = Buffer.alloc(3);
    b[0] = m | 25;
    b.writeUInt16BE(n, 1);
    return b;
  }
  return u32Head(major, n);
}

/** A head with a 4-byte argument, whatever the value (upstream's fixed form for byte-string lengths). */
function u32Head(major: number, n: number): Buffer {
  const b = Buffer.alloc(5);
  b[0] = (major << 5) | 26;
  b.writeUInt32BE(n, 1);
  return b;
}

/**
 * Writes a chunk document as its bytes arrive, into one buffer sized for the chunk: the bytes are
 * copied once, and a transfer holds one chunk. A non-final chunk's `data` is one definite byte string;
 * a final chunk's is an indefinite-length byte string holding one definite piece. Both lengths are
 * written in the 4-byte form and filled in at the end.
 */
export class ChunkEncoder {
  private buf: Buffer;
  private pos: number;
  private readonly lengthAt: number;
  private readonly dataAt: number;

  constructor(private readonly h: ChunkHeader, expectedBytes: number) {
    const ts = Buffer.alloc(9);
    ts[0] = 0x1b; // uint64 follows
    ts.writeBigUInt64BE(BigInt(h.timestampMs), 1);
    const prefix = Buffer.concat([
      Buffer.from([0xa5]), // map of five pairs
      text('@timestamp'), ts,
      text('last'), Buffer.from([h.last ? 0xf5 : 0xf4]),
      text('bid'), text(h.bid),
      text('sha2'), text(h.sha2),
      text('data'),
      ...(h.last ? [Buffer.from([0x5f])] : []),
      u32Head(2, 0),
    ]);
    this.buf = Buffer.allocUnsafe(prefix.length + Math.max(0, expectedBytes) + 1);
    prefix.copy(this.buf);
    this.pos = prefix.length;
    this.dataAt = prefix.length;
    this.lengthAt = prefix.length - 4;
  }

  push(piece: Uint8Array): void {
    if (this.pos + piece.length + 1 > this.buf.length) {
      // More than expected: grow (the caller bounds what it sends).
      const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + piece.length + 1));
      this.buf.copy(bigger, 0, 0, this.pos);
      this.buf = bigger;
    }
    this.buf.set(piece, this.pos);
    this.pos += piece.length;
  }

  /** The document's bytes (a view of the one buffer). */
  finish(): Buffer {
    this.buf.writeUInt32BE(this.pos - this.dataAt, this.lengthAt);
    if (this.h.last) this.buf[this.pos++] = 0xff;
    return this.buf.subarray(0, this.pos);
  }
}


/**
 * The `data` bytes of a chunk read as Elasticsearch answers `GET <index>/_doc/<id>?stored_fields=data`
 * with `Accept: application/cbor`: `{"fields": {"data": [<bytes>]}}` (upstream's cbor/decode.go).
 */
export function storedData(body: Uint8Array): Uint8Array {
  const doc = decode(body) as { fields?: { data?: unknown[] } } | undefined;
  const data = doc?.fields?.data?.[0];
  if (!(data instanceof Uint8Array)) throw new Error('chunk document has no stored data field');
  return data;
}
