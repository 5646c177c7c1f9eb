// CBOR request and response bodies, as Elasticsearch's XContent (Jackson CBOR) reads and writes them.
// cbor-x decodes everything Elasticsearch accepts except indefinite-length byte and text strings, which
// upstream Fleet Server sends for the final chunk of an upload; a pre-pass rewrites those into their
// definite form first. Byte strings come back as plain Uint8Arrays (the double's binary values).
import { decode, encode } from 'cbor-x/index-no-eval';
import { EsError } from './errors';

const parseError = (reason: string): EsError => new EsError(400, 'x_content_parse_exception', `[1:1] ${reason}`);

/** Reads one data item's head at `at`: major type, additional info, argument and where the item's content starts. */
function readHead(b: Uint8Array, at: number): { major: number; info: number; arg: number; next: number } {
  if (at >= b.length) throw parseError('unexpected end of CBOR input');
  const major = b[at]! >> 5;
  const info = b[at]! & 0x1f;
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (info < 24) return { major, info, arg: info, next: at + 1 };
  const width = info === 24 ? 1 : info === 25 ? 2 : info === 26 ? 4 : info === 27 ? 8 : 0;
  if (info === 31) return { major, info, arg: -1, next: at + 1 };
  if (width === 0) throw parseError(`malformed CBOR additional information ${info}`);
  if (at + 1 + width > b.length) throw parseError('unexpected end of CBOR input');
  const arg = width === 1 ? view.getUint8(at + 1) : width === 2 ? view.getUint16(at + 1) : width === 4 ? view.getUint32(at + 1)
    : Number(view.getBigUint64(at + 1));
  return { major, info, arg, next: at + 1 + width };
}

/**
 * Copies the item at `at` into `out`, turning indefinite-length byte and text strings into definite
 * ones; returns where the next item starts.
 */
function copyItem(b: Uint8Array, at: number, out: Uint8Array[]): number {
  const h = readHead(b, at);
  if ((h.major === 2 || h.major === 3) && h.info === 31) {
    const parts: Uint8Array[] = [];
    let p = h.next;
    while (b[p] !== 0xff) {
      const c = readHead(b, p);
      if (c.major !== h.major || c.info === 31) throw parseError('malformed indefinite-length string chunk');
      if (c.next + c.arg > b.length) throw parseError('unexpected end of CBOR input');
      parts.push(b.subarray(c.next, c.next + c.arg));
      p = c.next + c.arg;
      if (p >= b.length) throw parseError('unexpected end of CBOR input');
    }
    const total = parts.reduce((n, x) => n + x.length, 0);
    out.push(definiteHead(h.major, total), ...parts);
    return p + 1;
  }
  out.push(b.subarray(at, h.next));
  if (h.major === 2 || h.major === 3) {
    if (h.next + h.arg > b.length) throw parseError('unexpected end of CBOR input');
    out.push(b.subarray(h.next, h.next + h.arg));
    return h.next + h.arg;
  }
  if (h.major === 4 || h.major === 5) {
    const per = h.major === 5 ? 2 : 1;
    let p = h.next;
    if (h.info === 31) {
      while (b[p] !== 0xff) {
        p = copyItem(b, p, out);
        if (p >= b.length) throw parseError('unexpected end of CBOR input');
      }
      out.push(b.subarray(p, p + 1));
      return p + 1;
    }
    for (let i = 0; i < h.arg * per; i++) p = copyItem(b, p, out);
    return p;
  }
  if (h.major === 6) return copyItem(b, h.next, out);
  return h.next;
}

function definiteHead(major: number, n: number): Uint8Array {
  const b = new Uint8Array(5);
  b[0] = (major << 5) | 26;
  new DataView(b.buffer).setUint32(1, n);
  return b;
}

/**
 * Byte strings as plain Uint8Arrays, whatever cbor-x returned (Buffer or typed-array tag); 64-bit
 * integers (cbor-x's BigInt) as numbers, as the double holds every JSON long.
 */
function plain(v: unknown): unknown {
  if (typeof v === 'bigint') return Number(v);
  if (v instanceof Uint8Array) return new Uint8Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength));
  if (Array.isArray(v)) return v.map(plain);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = plain(x);
    return out;
  }
  return v;
}

export function decodeCbor(body: Uint8Array): unknown {
  const out: Uint8Array[] = [];
  const end = copyItem(body, 0, out);
  if (end !== body.length) throw parseError('trailing bytes after the CBOR document');
  try {
    return plain(decode(Buffer.concat(out)));
  } catch (err) {
    throw parseError(`failed to parse CBOR: ${(err as Error).message}`);
  }
}

/** Binary values as CBOR byte strings (cbor-x tags a bare Uint8Array; a Buffer is a plain byte string). */
function forEncoding(v: unknown): unknown {
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  if (Array.isArray(v)) return v.map(forEncoding);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = forEncoding(x);
    return out;
  }
  return v;
}

export function encodeCbor(value: unknown): Buffer {
  return Buffer.from(encode(forEncoding(value)));
}

/** How a JSON answer renders a binary value: base64, as Elasticsearch renders a binary field. */
export function jsonReplacer(_key: string, v: unknown): unknown {
  return v instanceof Uint8Array ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') : v;
}

/** Saved state keeps binary values as binary: `{"$binary": base64}` on disk, bytes again when loaded. */
export function saveReplacer(_key: string, v: unknown): unknown {
  return v instanceof Uint8Array ? { $binary: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') } : v;
}

export function loadReviver(_key: string, v: unknown): unknown {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
  const keys = Object.keys(v);
  const b64 = (v as Record<string, unknown>)['$binary'];
  return keys.length === 1 && typeof b64 === 'string' ? new Uint8Array(Buffer.from(b64, 'base64')) : v;
}
