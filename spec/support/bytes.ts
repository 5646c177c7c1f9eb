// Bytes as the file ports move them: async iterables of pieces, and their hashes.
import { createHash } from 'node:crypto';

export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** `buf` in pieces of `size` bytes. */
export async function* pieces(buf: Uint8Array, size = 65536): AsyncIterable<Uint8Array> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

/** `buf` as one piece. */
export async function* once(buf: Uint8Array): AsyncIterable<Uint8Array> {
  yield buf;
}

/** What the edge hands the upload logic: the body, refused past `max` as streamBody does. */
export function body(b: Buffer): (max: number) => AsyncIterable<Uint8Array> {
  return (max) => {
    if (b.length > max) throw new Error(`body over ${max}`);
    return once(b);
  };
}

export async function collect(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of it) parts.push(Buffer.from(p));
  return Buffer.concat(parts);
}
