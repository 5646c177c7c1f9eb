// Before the server starts: each TLS file it names is read and parsed on its own, so a missing or
// malformed one is reported by its setting and path rather than as OpenSSL's bare "no start line"
// from the listener.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { pemOrFile, type TlsConfig } from '../config/config';
import { withContext } from '../util/error-text';

const PREFIX = 'inputs.0.server.ssl';

/**
 * Whether a value that is not PEM reads like a file name, and may be shown. Anything else may be key
 * material given inline without its PEM lines (base64): never repeated in a message, which would put it
 * on stderr and in the journal.
 */
function looksLikePath(value: string): boolean {
  if (value.length > 1024 || /[\r\n]/.test(value)) return false;
  if (/^[A-Za-z0-9+/=]{40,}$/.test(value)) return false;
  return /^[./~]/.test(value) || /\.[A-Za-z0-9]{1,8}$/.test(value) || !/[+=]/.test(value);
}

/** How a message names the setting: with its file, when the value is one. */
function where(key: string, value: string): string {
  if (value.includes('-----BEGIN')) return `${PREFIX}.${key}`;
  return looksLikePath(value) ? `${value} (${PREFIX}.${key})` : `${PREFIX}.${key} (an inline value that is not PEM)`;
}

function read(key: string, value: string): string {
  let pem: string;
  try {
    pem = pemOrFile(value)!;
  } catch (err) {
    // The system error names the "file", which is the value itself: only its code is kept.
    if (!looksLikePath(value)) throw new Error(`cannot read TLS file ${where(key, value)}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`);
    throw withContext(`cannot read TLS file ${where(key, value)}`, err);
  }
  return pem;
}

function parse(key: string, value: string, fn: () => unknown): void {
  try {
    fn();
  } catch (err) {
    throw withContext(`invalid TLS ${key.replace('_', ' ')} ${where(key, value)}`, err);
  }
}

/** OpenSSL's answers to an encrypted key read without its passphrase (it would have prompted) or with a wrong one. */
const DECRYPT_FAILURES = new Set(['ERR_OSSL_CRYPTO_INTERRUPTED_OR_CANCELLED', 'ERR_OSSL_BAD_DECRYPT', 'ERR_MISSING_PASSPHRASE']);

/**
 * The key parsed, or why not in an operator's words: OpenSSL's for an encrypted key read without a
 * passphrase is "interrupted or cancelled", and for a wrong one "bad decrypt".
 */
function parseKey(tls: TlsConfig, key: string): void {
  try {
    createPrivateKey({ key, passphrase: tls.keyPassphrase });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    const encrypted = /-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(key);
    if (encrypted || DECRYPT_FAILURES.has(code)) {
      const at = where('key', tls.key!);
      if (!tls.keyPassphrase) throw new Error(`invalid TLS key ${at}: the key is encrypted: give its passphrase in ${PREFIX}.key_passphrase_path`, { cause: err });
      const named = tls.key!.includes('-----BEGIN') ? `in ${PREFIX}.key` : tls.key!;
      if (code === 'ERR_OSSL_BAD_DECRYPT') throw new Error(`wrong passphrase for the key ${named} (${PREFIX}.key_passphrase_path)`, { cause: err });
    }
    throw withContext(`invalid TLS key ${where('key', tls.key!)}`, err);
  }
}

export function checkServerTls(tls: TlsConfig): void {
  if (!tls.enabled) return;
  if (!tls.certificate || !tls.key) throw new Error(`${PREFIX}: TLS is enabled but certificate or key is not set`);
  const cert = read('certificate', tls.certificate);
  const key = read('key', tls.key);
  parse('certificate', tls.certificate, () => new X509Certificate(cert));
  parseKey(tls, key);
  for (const ca of tls.certificateAuthorities) {
    const pem = read('certificate_authorities', ca);
    parse('certificate_authorities', ca, () => new X509Certificate(pem));
  }
  // node:tls is loaded only when TLS is on (server.ts).
  const { createSecureContext } = require('node:tls') as typeof import('node:tls');
  parse('key', tls.key, () => createSecureContext({ cert, key, passphrase: tls.keyPassphrase }));
}
