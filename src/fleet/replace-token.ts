// The PBKDF2 replace-token hash, in upstream's stored format:
// $pbkdf2-sha512$<iterations>$<base64 raw salt>$<base64 raw key>
import { pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';

const pbkdf2Async = promisify(pbkdf2);
const b64raw = (b: Buffer): string => b.toString('base64').replace(/=+$/, '');

export interface Pbkdf2Options {
  iterations: number;
  keyLength: number;
  saltLength: number;
}

export async function hashReplaceToken(token: string, o: Pbkdf2Options): Promise<string> {
  const salt = randomBytes(o.saltLength);
  const key = await pbkdf2Async(token, salt, o.iterations, o.keyLength, 'sha512');
  return `$pbkdf2-sha512$${o.iterations}$${b64raw(salt)}$${b64raw(key)}`;
}

/** undefined when the stored hash is not in the expected format (upstream: agent record corrupted). */
export async function replaceTokenMatches(token: string, stored: string): Promise<boolean | undefined> {
  const parts = stored.split('$');
  if (parts.length !== 5 || parts[0] !== '' || parts[1] !== 'pbkdf2-sha512') return undefined;
  const iterations = Number(parts[2]);
  if (!Number.isInteger(iterations) || iterations <= 0) return undefined;
  const salt = Buffer.from(parts[3]!, 'base64');
  const expected = Buffer.from(parts[4]!, 'base64');
  if (salt.length === 0 || expected.length === 0) return undefined;
  const key = await pbkdf2Async(token, salt, iterations, expected.length, 'sha512');
  return timingSafeEqual(key, expected);
}
