// Gzip for answers built from a template: the template's constant parts are deflated once (each ending
// in a sync flush, so it is byte-aligned and stands alone) and cached; per answer only the short values
// go in as stored blocks, and the CRC runs over the text. The result is one ordinary gzip member, so
// any gzip reader decodes it. Compressing a 4 KB policy for every one of 10,000 agents was most of a
// rollout's CPU; this makes it a copy and a checksum.
import { constants, crc32, deflateRawSync } from 'node:zlib';
import type { FilledTemplate, TextTemplate } from '../util/text-template';

const HEADER = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
/** An empty stored block with BFINAL set: ends the deflate stream. */
const FINAL = Buffer.from([1, 0, 0, 0xff, 0xff]);

interface Deflated {
  level: number;
  /** parts[i] as UTF-8 and as a sync-flushed raw deflate segment. */
  raw: Buffer[];
  deflated: Buffer[];
}

const cache = new WeakMap<TextTemplate, Deflated>();

function deflatedParts(t: TextTemplate, level: number): Deflated {
  let d = cache.get(t);
  if (!d || d.level !== level) {
    const raw = t.parts.map((p) => Buffer.from(p));
    d = { level, raw, deflated: raw.map((b) => (b.length === 0 ? Buffer.alloc(0) : deflateRawSync(b, { level, finishFlush: constants.Z_SYNC_FLUSH }))) };
    cache.set(t, d);
  }
  return d;
}

/** Stored (uncompressed) non-final deflate blocks holding `data`; the stream is byte-aligned before and after. */
function stored(data: Buffer, out: Buffer[]): void {
  for (let off = 0; off < data.length; off += 0xffff) {
    const len = Math.min(0xffff, data.length - off);
    const h = Buffer.allocUnsafe(5);
    h[0] = 0;
    h.writeUInt16LE(len, 1);
    h.writeUInt16LE(~len & 0xffff, 3);
    out.push(h, data.subarray(off, off + len));
  }
}

export function splicedGzip(f: FilledTemplate, level: number): Buffer {
  const d = deflatedParts(f.template, level);
  const out: Buffer[] = [HEADER];
  let crc = 0;
  let size = 0;
  const add = (raw: Buffer, deflated?: Buffer): void => {
    if (raw.length === 0) return;
    crc = crc32(raw, crc);
    size += raw.length;
    if (deflated) out.push(deflated);
    else stored(raw, out);
  };
  add(Buffer.from(f.head));
  for (let i = 0; i < d.raw.length; i++) {
    add(d.raw[i]!, d.deflated[i]!);
    if (i < f.values.length) add(Buffer.from(f.values[i]!));
  }
  add(Buffer.from(f.tail));
  const trailer = Buffer.allocUnsafe(8);
  trailer.writeUInt32LE(crc >>> 0, 0);
  trailer.writeUInt32LE(size >>> 0, 4);
  out.push(FINAL, trailer);
  return Buffer.concat(out);
}

export function filledLength(f: FilledTemplate): number {
  let n = f.head.length + f.tail.length;
  for (const p of f.template.parts) n += p.length;
  for (const v of f.values) n += v.length;
  return n;
}
