// UUIDs as 16 bytes and as canonical text (OpAMP's instance_uid travels as bytes; documents use text).
import { randomBytes } from 'node:crypto';

const CANONICAL = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The canonical lower-case text of 16 bytes, or undefined for any other length. */
export function uuidText(bytes: Uint8Array): string | undefined {
  if (bytes.length !== 16) return undefined;
  const h = Buffer.from(bytes.buffer, bytes.byteOffset, 16).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** The 16 bytes of a canonical UUID text, or undefined when it is not one. */
export function uuidBytes(text: string): Uint8Array | undefined {
  if (!CANONICAL.test(text)) return undefined;
  return new Uint8Array(Buffer.from(text.replace(/-/g, ''), 'hex'));
}

/** A version 7 UUID (RFC 9562): 48 bits of Unix milliseconds, then random bits; sorts by creation time. */
export function uuidV7(nowMs: number = Date.now()): string {
  const b = randomBytes(16);
  b.writeUIntBE(Math.floor(nowMs), 0, 6);
  b[6] = (b[6]! & 0x0f) | 0x70;
  b[8] = (b[8]! & 0x3f) | 0x80;
  return uuidText(b)!;
}
