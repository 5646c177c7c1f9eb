// API keys minted by the embedded store. The secret is random (128 bits), so a salted SHA-256 is a
// sufficient one-way store (PBKDF2 is for low-entropy secrets); comparison is constant-time.
import { createHash, timingSafeEqual } from 'node:crypto';
import { randomBytesPooled } from '../../util/random';

/** base64url's characters in byte order, so that ids sort as the numbers they spell. */
const ID_ALPHABET = '-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz';

/**
 * 20 characters, like Elasticsearch API key ids (which are time-based too): the creation time's low
 * 42 bits of milliseconds (7 characters, in order until 2109; its top bits would only make every id
 * start with '-'), then 78 random bits. Ids made in order are keys in order, so a burst of first
 * check-ins adds its keys and their secrets to the same last pages of the two tables' indexes, where
 * random ids had each commit dirty a page of each index per key.
 */
export function newApiKeyId(now = Date.now()): string {
  let out = '';
  for (let shift = 36; shift >= 0; shift -= 6) out += ID_ALPHABET[Math.floor(now / 2 ** shift) & 63];
  const bytes = randomBytesPooled(13);
  for (const b of bytes) out += ID_ALPHABET[b & 63];
  return out;
}

/** 22 characters of base64url (16 random bytes), like Elasticsearch API key secrets. */
export function newApiKeySecret(): string {
  return randomBytesPooled(16).toString('base64url');
}

export function hashSecret(salt: Uint8Array, secret: string): Buffer {
  return createHash('sha256').update(salt).update(secret).digest();
}

export function newSalt(): Buffer {
  return randomBytesPooled(16);
}

export function secretMatches(salt: Uint8Array, hash: Uint8Array, secret: string): boolean {
  const candidate = hashSecret(salt, secret);
  return candidate.length === hash.length && timingSafeEqual(candidate, hash);
}
