// Before the server starts: each TLS file it names is read and parsed on its own, so a missing or
// malformed one is reported by its setting and path rather than as OpenSSL's bare "no start line"
// from the listener.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { pemOrFile, type TlsConfig } from '../config/config';
import { withContext } from '../util/error-text';

const PREFIX = 'inputs.0.server.ssl';

function read(key: string, value: string): string {
  const where = value.includes('-----BEGIN') ? `${PREFIX}.${key}` : `${value} (${PREFIX}.${key})`;
  let pem: string;
  try {
    pem = pemOrFile(value)!;
  } catch (err) {
    throw withContext(`cannot read TLS file ${where}`, err);
  }
  return pem;
}

function parse(key: string, value: string, fn: () => unknown): void {
  const where = value.includes('-----BEGIN') ? `${PREFIX}.${key}` : `${value} (${PREFIX}.${key})`;
  try {
    fn();
  } catch (err) {
    throw withContext(`invalid TLS ${key.replace('_', ' ')} ${where}`, err);
  }
}

export function checkServerTls(tls: TlsConfig): void {
  if (!tls.enabled) return;
  if (!tls.certificate || !tls.key) throw new Error(`${PREFIX}: TLS is enabled but certificate or key is not set`);
  const cert = read('certificate', tls.certificate);
  const key = read('key', tls.key);
  parse('certificate', tls.certificate, () => new X509Certificate(cert));
  parse('key', tls.key, () => createPrivateKey({ key, passphrase: tls.keyPassphrase }));
  for (const ca of tls.certificateAuthorities) {
    const pem = read('certificate_authorities', ca);
    parse('certificate_authorities', ca, () => new X509Certificate(pem));
  }
  // node:tls is loaded only when TLS is on (server.ts).
  const { createSecureContext } = require('node:tls') as typeof import('node:tls');
  parse('key', tls.key, () => createSecureContext({ cert, key, passphrase: tls.keyPassphrase }));
}
