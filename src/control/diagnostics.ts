// What Fleet Server contributes to an agent's diagnostics bundle: the running configuration (secrets
// redacted) and the TLS and connection facts of its listener and its Elasticsearch output.
import { X509Certificate } from 'node:crypto';
import { stringify } from 'yaml';
import { pemOrFile, type FleetServerConfig } from '../config/config';
import { redact, redactUrl } from '../util/redact';
import type { DiagnosticHook } from './client';

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
