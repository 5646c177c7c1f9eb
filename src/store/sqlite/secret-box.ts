// Encryption at rest for the secrets the embedded store must give back (output API keys, Fleet
// secrets): AES-256-GCM, a fresh 96-bit IV per value, the row id as associated data so a ciphertext
// cannot be moved to another row. A copied database alone then reveals no usable credential; the key
// lives apart from it (config, environment, or its own 0600 file under path.data).
import { createCipheriv, createDecipheriv, createSecretKey, hkdfSync, randomBytes, type KeyObject } from 'node:crypto';
import { chmodSync, closeSync, fsyncSync, linkSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { StoreUnavailableError } from '../port';
import { randomBytesPooled } from '../../util/random';

const PREFIX = 'v1:';
const IV_BYTES = 12;
const TAG_BYTES = 16;
export const KEY_FILE = 'fleet-server.key';
export const KEY_ENV = 'FLEET_SERVER_ENCRYPTION_KEY';
const MIN_KEY_CHARS = 32;

export class SecretBox {
  // A KeyObject, imported once: a raw key buffer is imported again on every cipher (~4× the cost of
  // sealing or opening a short value, which a rollout does once per agent for its output key).
  private constructor(private readonly key: KeyObject, readonly source: string) {}

  /** Any high-entropy string of 32+ characters; HKDF turns it into the AES key. */
  static fromMaterial(material: string, source: string): SecretBox {
    if (material.length < MIN_KEY_CHARS) {
      throw new StoreUnavailableError(`the encryption key from ${source} is too short: give at least ${MIN_KEY_CHARS} characters (e.g. \`openssl rand -base64 32\`)`);
    }
    const key = createSecretKey(Buffer.from(hkdfSync('sha256', Buffer.from(material, 'utf8'), Buffer.alloc(0), 'fleet-server secrets v1', 32)));
    return new SecretBox(key, source);
  }

  /** A key for a database nobody will reopen (":memory:"). */
  static ephemeral(): SecretBox {
    return SecretBox.fromMaterial(randomBytes(32).toString('base64'), 'memory');
  }

  seal(plain: string, rowId: string): string {
    const iv = randomBytesPooled(IV_BYTES);
    const c = createCipheriv('aes-256-gcm', this.key, iv);
    c.setAAD(Buffer.from(rowId, 'utf8'));
    const body = Buffer.concat([c.update(plain, 'utf8'), c.final()]);
    return PREFIX + Buffer.concat([iv, c.getAuthTag(), body]).toString('base64');
  }

  /** The plaintext, or undefined when this key did not seal it (or the value was altered). */
  open(sealed: string, rowId: string): string | undefined {
    if (!sealed.startsWith(PREFIX)) return undefined;
    const raw = Buffer.from(sealed.slice(PREFIX.length), 'base64');
    if (raw.length < IV_BYTES + TAG_BYTES) return undefined;
    try {
      const d = createDecipheriv('aes-256-gcm', this.key, raw.subarray(0, IV_BYTES));
      d.setAAD(Buffer.from(rowId, 'utf8'));
      d.setAuthTag(raw.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
      return Buffer.concat([d.update(raw.subarray(IV_BYTES + TAG_BYTES)), d.final()]).toString('utf8');
    } catch {
      return undefined;
    }
  }
}

export function isSealed(value: string): boolean {
  return value.startsWith(PREFIX);
}

/**
 * The key from configuration or the environment when given; otherwise `<dir>/fleet-server.key`, made
 * (0600, 32 random bytes) only when `mayCreate` — a database that already holds sealed values must not
 * silently get a new key.
 */
export function resolveSecretBox(dir: string, given: string | undefined, mayCreate: () => boolean): SecretBox {
  if (given !== undefined && given !== '') return SecretBox.fromMaterial(given, 'inputs.0.server.secrets.key / ' + KEY_ENV);
  const file = join(dir, KEY_FILE);
  const existing = readKeyFile(file);
  if (existing !== undefined) return SecretBox.fromMaterial(existing, file);
  if (!mayCreate()) {
    throw new StoreUnavailableError(`the encryption key file ${file} is missing but the database holds encrypted secrets: restore the file, or give the key with ${KEY_ENV} or inputs.0.server.secrets.key`);
  }
  return SecretBox.fromMaterial(createKeyFile(file), file);
}

function readKeyFile(file: string): string | undefined {
  let material: string;
  try {
    material = readFileSync(file, 'utf8').trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  // A key file written by hand (or copied in) readable by others is narrowed to 0600, as the database
  // files are (files.ts): it opens every secret in them. Best effort: one not ours to change (an admin
  // CLI run by another user) or on a read-only mount (a secret volume) is used as it is.
  try {
    if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600);
  } catch {
    // Left as it is (see above).
  }
  return material;
}

/** Written aside and linked into place, so a server and the admin CLI starting together agree on one key. */
function createKeyFile(file: string): string {
  const material = randomBytes(32).toString('base64');
  // Not the pid: in a container it is the same on every start, and a crash between write and link would
  // leave a name that blocks every later start.
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  // On disk before it is linked into place, and the link before any secret is sealed with it: after a
  // power cut the database (whose writes are flushed before they are acknowledged) may hold secrets
  // sealed with this key, and a key file left empty or missing would make them unreadable for good.
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    try {
      writeSync(fd, `${material}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    linkSync(tmp, file);
    syncDir(dirname(file));
    return material;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return readKeyFile(file)!;
  } finally {
    unlinkSync(tmp);
  }
}

function syncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
