// What Fleet Server contributes to an agent's diagnostics bundle: the running configuration (secrets
// redacted) and the TLS and connection facts of its listener and its Elasticsearch output.
import { X509Certificate } from 'node:crypto';
import { stringify } from 'yaml';
import { pemOrFile, type FleetServerConfig } from '../config/config';
import type { DiagnosticHook } from './client';

const REDACTED = '[REDACTED]';
// proxy_headers: as a whole (Proxy-Authorization, tokens of the proxy's own).
const SECRET_KEYS = /^(service_token|api_key|key|key_passphrase|password|secret_token|passphrase|token_key|proxy_headers)$/i;
/** Keys whose values are URLs, or lists of them, that may carry user:password@. */
const URL_KEYS = /^(hosts|proxy_url)$/i;

/**
 * A URL's user:password@ (with or without a scheme) becomes [REDACTED]@: the host stays readable, the
 * credentials do not leave in the bundle.
 */
export function redactUrl(url: string): string {
  // Up to the authority's last @: an unencoded @ in a password must not leave its tail behind.
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)?[^/?#\s]+@/i, `$1${REDACTED}@`);
}

/**
 * The bundle goes to Fleet. Every `headers` value is redacted, names kept: upstream's RedactOutput
 * redacts only names containing auth, token, key or bearer, which passes Cookie, X-Secret and whatever
 * a gateway in front of Elasticsearch invents, and a header's value tells little when diagnosing.
 */
export function redact(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(redact);
  if (v === null || typeof v !== 'object') return v;
  return Object.fromEntries(Object.entries(v).map(([k, x]) => {
    if (SECRET_KEYS.test(k) && x !== '') return [k, REDACTED];
    if (k === 'headers' && x !== null && typeof x === 'object' && !Array.isArray(x)) {
      return [k, Object.fromEntries(Object.keys(x).map((name) => [name, REDACTED]))];
    }
    if (URL_KEYS.test(k)) {
      if (typeof x === 'string') return [k, redactUrl(x)];
      if (Array.isArray(x)) return [k, x.map((h) => (typeof h === 'string' ? redactUrl(h) : redact(h)))];
    }
    return [k, redact(x)];
  }));
}

function describeCert(pem: string | undefined): string {
  if (!pem) return '  (none)\n';
  try {
    const c = new X509Certificate(pemOrFile(pem)!);
    return `  subject: ${c.subject.replace(/\n/g, ', ')}\n  issuer: ${c.issuer.replace(/\n/g, ', ')}\n  valid: ${c.validFrom} → ${c.validTo}\n  subjectAltName: ${c.subjectAltName ?? ''}\n`;
  } catch (err) {
    return `  unreadable: ${(err as Error).message}\n`;
  }
}

export function diagnosticHooks(current: () => FleetServerConfig | undefined, probeOutput: () => Promise<string>): DiagnosticHook[] {
  return [
    {
      name: 'fleet-server config', filename: 'fleet-server.yml', description: 'Fleet Server running configuration (secrets redacted)', contentType: 'application/yml',
      collect: () => stringify(redact(current()?.raw ?? {})),
    },
    {
      name: 'fleet-server api tls diag', filename: 'fleet-server-api-tls.txt', description: 'Fleet Server API listener TLS', contentType: 'text/plain',
      collect: () => {
        const t = current()?.server.tls;
        if (!t?.enabled) return 'TLS: disabled (plain HTTP)\n';
        return `TLS: enabled\nclient_authentication: ${t.clientAuthentication}\ncertificate:\n${describeCert(t.certificate)}certificate_authorities: ${t.certificateAuthorities.length}\n`;
      },
    },
    {
      name: 'fleet-server output tls diag', filename: 'fleet-server-output-tls.txt', description: 'Elasticsearch output TLS', contentType: 'text/plain',
      collect: () => {
        const es = current()?.elasticsearch;
        if (!es) return 'no Elasticsearch output\n';
        return `hosts: ${es.hosts.map(redactUrl).join(', ')}\nprotocol: ${es.protocol}\nverification_mode: ${es.ssl.verificationMode}\n`
          + `certificate_authorities: ${es.ssl.certificateAuthorities.length}\nca_trusted_fingerprint: ${es.ssl.caTrustedFingerprint ? 'set' : 'unset'}\nclient certificate:\n${describeCert(es.ssl.certificate)}`;
      },
    },
    {
      name: 'fleet-server output request diag', filename: 'fleet-server-output-request.txt', description: 'A test request to Elasticsearch', contentType: 'text/plain',
      optionalTag: 'CONN',
      collect: async () => {
        const t0 = Date.now();
        try {
          return `GET / → Elasticsearch ${await probeOutput()} in ${Date.now() - t0} ms\n`;
        } catch (err) {
          return `GET / failed after ${Date.now() - t0} ms: ${(err as Error).message}\n`;
        }
      },
    },
  ];
}
