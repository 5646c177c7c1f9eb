// The API listeners' TLS settings (upstream's `inputs.0.server.ssl.*`): credentials, protocol versions,
// client authentication, ALPN and the session tickets shared by the workers.
import type https from 'node:https';
import type { SecureVersion } from 'node:tls';
import { pemOrFile, type TlsConfig } from '../config/config';

const TLS_VERSIONS: Record<string, SecureVersion> = { 'TLSv1.0': 'TLSv1', 'TLSv1.1': 'TLSv1.1', 'TLSv1.2': 'TLSv1.2', 'TLSv1.3': 'TLSv1.3' };

/** The one application protocol served (HTTP/2 is not). */
const HTTP1 = 'http/1.1';

/** The certificate, key and CAs, read from their files (again, for a reload). */
export function tlsCredentials(t: TlsConfig): { cert?: string; key?: string; ca?: string[]; passphrase?: string } {
  const ca = t.certificateAuthorities.map((c) => pemOrFile(c)!);
  return { cert: pemOrFile(t.certificate), key: pemOrFile(t.key), passphrase: t.keyPassphrase, ca: ca.length > 0 ? ca : undefined };
}

/**
 * ALPN as `ALPNProtocols: ['http/1.1']` negotiates it: `http/1.1` when the client offers it, a fatal
 * no_application_protocol alert when it offers only others. Chosen by a callback because Node copies an
 * ALPNProtocols list into a fresh Buffer for every connection: a few bytes, but sliced from the shared
 * 64 KiB Buffer pool, so each held connection kept a pool slab alive (~17 KiB of RSS per held TLS agent).
 */
export function selectAlpn({ protocols }: { protocols: string[] }): string | undefined {
  return protocols.includes(HTTP1) ? HTTP1 : undefined;
}

export function tlsOptions(t: TlsConfig, ticketKeys: Buffer | undefined): https.ServerOptions {
  const versions = t.supportedProtocols.map((p) => TLS_VERSIONS[p]).filter((v): v is SecureVersion => v !== undefined).sort();
  return {
    ...tlsCredentials(t),
    requestCert: t.clientAuthentication !== 'none',
    rejectUnauthorized: t.clientAuthentication === 'required',
    minVersion: versions[0] ?? 'TLSv1.2',
    maxVersion: versions[versions.length - 1] ?? 'TLSv1.3',
    ALPNCallback: selectAlpn,
    // OpenSSL knows upstream's names as they are. Left to OpenSSL's defaults, a TLS 1.3 client offering
    // X25519MLKEM768 (Go 1.24+, Node 24) gets it, and its ML-KEM key stays with the connection (~6 KiB).
    ...(t.curveTypes.length > 0 ? { ecdhCurve: t.curveTypes.join(':') } : {}),
    ...(ticketKeys ? { ticketKeys } : {}),
  };
}
