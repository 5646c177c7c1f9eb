// API keys minted by the embedded store. The secret is random (128 bits), so a salted SHA-256 is a
// sufficient one-way store (PBKDF2 is for low-entropy secrets); comparison is constant-time.
import { createHash, timingSafeEqual } from 'node:crypto';
import { randomBytesPooled } from '../../util/random';

const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-';

/** 20 characters, like Elasticsearch API key ids. */
export function newApiKeyId(): string {
  const bytes = randomBytesPooled(20);
  let out = '';
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
