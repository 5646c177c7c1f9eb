// The PBKDF2 replace-token hash, in upstream's stored format:
// $pbkdf2-sha512$<iterations>$<base64 raw salt>$<base64 raw key>
import { pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import { FleetError } from './errors';

const pbkdf2Async = promisify(pbkdf2);
const b64raw = (b: Buffer): string => b.toString('base64').replace(/=+$/, '');

export interface Pbkdf2Options {
  iterations: number;
  keyLength: number;
  saltLength: number;
}

export type Pbkdf2Fn = (password: string, salt: Buffer, iterations: number, keyLength: number, digest: string) => Promise<Buffer>;

/**
 * Bounds the hashes in flight. PBKDF2 runs on libuv's thread pool (4 threads), which gzip, file I/O and
 * DNS share; at upstream's 210,000 rounds one hash takes ~90 ms, so sixteen at once delayed an unrelated
 * gunzip from 4 ms to 1.5 s, and any enrollment-token holder can send a hundred a second. Upstream has no
 * bound (goroutines on every core). At most `concurrency` run, `queue` more wait in order; beyond that the
 * caller is refused with 429 MaxLimit (and Retry-After) and the agent comes back.
 */
export class HashGate {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly concurrency: number, private readonly queue: number, private readonly fn: Pbkdf2Fn = pbkdf2Async) {}

  /** Hashes waiting for a slot (for tests and metrics). */
  get queued(): number {
    return this.waiting.length;
  }

  async hash(password: string, salt: Buffer, iterations: number, keyLength: number): Promise<Buffer> {
    if (this.running < this.concurrency) {
      this.running++;
    } else {
      if (this.waiting.length >= this.queue) throw new FleetError('MaxLimit');
      await new Promise<void>((r) => this.waiting.push(r));
    }
    try {
      return await this.fn(password, salt, iterations, keyLength, 'sha512');
    } finally {
      // The slot passes straight to the next waiter; `running` counts slots, not callers.
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}

/** The process's gate: two hashes at once leave the thread pool's other threads to everything else. */
export const replaceTokenHashes = new HashGate(2, 64);

export async function hashReplaceToken(token: string, o: Pbkdf2Options, gate = replaceTokenHashes): Promise<string> {
  const salt = randomBytes(o.saltLength);
  const key = await gate.hash(token, salt, o.iterations, o.keyLength);
  return `$pbkdf2-sha512$${o.iterations}$${b64raw(salt)}$${b64raw(key)}`;
}

/** undefined when the stored hash is not in the expected format (upstream: agent record corrupted). */
export async function replaceTokenMatches(token: string, stored: string, gate = replaceTokenHashes): Promise<boolean | undefined> {
  const parts = stored.split('$');
  if (parts.length !== 5 || parts[0] !== '' || parts[1] !== 'pbkdf2-sha512') return undefined;
  const iterations = Number(parts[2]);
  if (!Number.isInteger(iterations) || iterations <= 0) return undefined;
  const salt = Buffer.from(parts[3]!, 'base64');
  const expected = Buffer.from(parts[4]!, 'base64');
  if (salt.length === 0 || expected.length === 0) return undefined;
  const key = await gate.hash(token, salt, iterations, expected.length);
  return timingSafeEqual(key, expected);
}
