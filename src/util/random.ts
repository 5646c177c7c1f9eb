// Random bytes for the many short values a first check-in and an enrollment draw (key ids, secrets,
// salts, IVs: five per output key), taken from a CSPRNG buffer refilled 4 KiB at a time, as Node's
// randomUUID does: randomBytes() costs a few microseconds a call whatever its size, which made it a
// sixth of the embedded store's CPU per first check-in.
import { randomBytes, randomFillSync } from 'node:crypto';

const POOL_BYTES = 4096;
/** Larger draws go to randomBytes directly. */
const MAX_POOLED = 256;

const pool = Buffer.alloc(POOL_BYTES);
let used = POOL_BYTES;

/** `n` fresh random bytes in a buffer of their own; the pool keeps no copy of them. */
export function randomBytesPooled(n: number): Buffer {
  if (n > MAX_POOLED) return randomBytes(n);
  if (used + n > POOL_BYTES) {
    randomFillSync(pool);
    used = 0;
  }
  const out = Buffer.from(pool.subarray(used, used + n));
  pool.fill(0, used, used + n);
  used += n;
  return out;
}
