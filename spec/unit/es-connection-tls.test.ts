// The Elasticsearch client over TLS as the output's ssl settings configure it (src/store/elasticsearch/
// connection.ts), against an HTTPS server answering as Elasticsearch's root does: the trusted CA, a
// CA pinned by fingerprint, verification modes, and a client certificate.
import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { errors } from '@elastic/elasticsearch';
import type { ElasticsearchOutputConfig } from '../../src/config/config';
import { createClient } from '../../src/store/elasticsearch/connection';
import { Authority } from '../support/certs';
import { esOutput, nodeName } from '../support/es-output';

const authority = new Authority('Test Elasticsearch CA');
const leaf = authority.leaf('localhost');
const stranger = new Authority('Another CA');
let server: https.Server;
let port = 0;
/** The client certificate of each request, by its subject CN ('' when none was presented). */
const clientNames: string[] = [];
/** Requests the server received. */
let requests = 0;

beforeAll(async () => {
  // The chain includes the CA, as Elasticsearch presents its http_ca: what a pinned fingerprint is looked for in.
  server = https.createServer({ cert: leaf.cert + authority.ca.cert, key: leaf.key, ca: authority.ca.cert, requestCert: true, rejectUnauthorized: false }, (req, res) => {
    requests++;
    const peer = (req.socket as import('node:tls').TLSSocket).getPeerCertificate();
    clientNames.push(peer && 'subject' in peer && peer.subject ? String(peer.subject.CN) : '');
    res.writeHead(200, { 'content-type': 'application/json', 'x-elastic-product': 'Elasticsearch' });
    res.end(JSON.stringify({ name: 'tls-double', cluster_name: 'c', cluster_uuid: 'u', version: { number: '9.6.0' }, tagline: 'You Know, for Search' }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  port = (server.address() as AddressInfo).port;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

function output(ssl: Partial<ElasticsearchOutputConfig['ssl']>, host = 'localhost'): ElasticsearchOutputConfig {
  return esOutput(`https://${host}:${port}`, { ssl: { verificationMode: 'full', certificateAuthorities: [], ...ssl } });
}

const info = nodeName;

const fingerprintOf = (pem: string): string => createHash('sha256').update(new X509Certificate(pem).raw).digest('hex');

describe('Elasticsearch client over TLS', () => {
  it('verifies the server against the configured CA, host name included', async () => {
    expect(await info(output({ certificateAuthorities: [authority.ca.cert] }))).toBe('tls-double');
    // The leaf names localhost only: 127.0.0.1 fails full verification, passes 'certificate' (chain only).
    await expect(info(output({ certificateAuthorities: [authority.ca.cert] }, '127.0.0.1'))).rejects.toThrow(/IP: 127\.0\.0\.1 is not in the cert's list|ERR_TLS_CERT_ALTNAME_INVALID|altnames/i);
    expect(await info(output({ certificateAuthorities: [authority.ca.cert], verificationMode: 'certificate' }, '127.0.0.1'))).toBe('tls-double');
  });

  it('refuses a server whose chain the configured CA did not sign, unless verification is none', async () => {
    await expect(info(output({ certificateAuthorities: [stranger.ca.cert] }))).rejects.toThrow(/certificate/i);
    expect(await info(output({ verificationMode: 'none' }))).toBe('tls-double');
  });

  it('trusts a CA pinned by fingerprint with no certificate_authorities, then verifies per mode', async () => {
    const pin = fingerprintOf(authority.ca.cert);
    expect(await info(output({ caTrustedFingerprint: pin }))).toBe('tls-double');
    // Upper case with colons, as openssl prints it.
    expect(await info(output({ caTrustedFingerprint: pin.toUpperCase().match(/../g)!.join(':') }))).toBe('tls-double');
    // The leaf names localhost only: full checks the host name on the pinned chain too, certificate does not.
    expect(await info(output({ caTrustedFingerprint: pin, verificationMode: 'certificate' }, '127.0.0.1'))).toBe('tls-double');
    requests = 0;
    const refused = info(output({ caTrustedFingerprint: pin }, '127.0.0.1'));
    await expect(refused).rejects.toBeInstanceOf(errors.ConnectionError);
    await expect(refused).rejects.toThrow(/IP: 127\.0\.0\.1 is not in the cert's list/);
    expect(requests).toBe(0);
  });

  it('refuses a chain without the pinned CA, before sending the request', async () => {
    requests = 0;
    const refused = info(output({ caTrustedFingerprint: fingerprintOf(stranger.ca.cert) }));
    await expect(refused).rejects.toBeInstanceOf(errors.ConnectionError);
    await expect(refused).rejects.toThrow(/SELF_SIGNED_CERT_IN_CHAIN.*no CA certificate in its chain matches ssl\.ca_trusted_fingerprint/);
    // Only a CA certificate can be pinned, as upstream.
    await expect(info(output({ caTrustedFingerprint: fingerprintOf(leaf.cert), verificationMode: 'certificate' })))
      .rejects.toThrow(/ca_trusted_fingerprint/);
    expect(requests).toBe(0);
  });

  it('accepts a chain the configured CA trusts whatever the pin, as upstream only adds a root', async () => {
    expect(await info(output({ certificateAuthorities: [authority.ca.cert], caTrustedFingerprint: fingerprintOf(authority.ca.cert) }))).toBe('tls-double');
    expect(await info(output({ certificateAuthorities: [authority.ca.cert], caTrustedFingerprint: fingerprintOf(stranger.ca.cert) }))).toBe('tls-double');
  });

  it('presents the configured client certificate', async () => {
    const client = authority.leaf('fleet-server-client');
    clientNames.length = 0;
    expect(await info(output({ certificateAuthorities: [authority.ca.cert], certificate: client.cert, key: client.key }))).toBe('tls-double');
    expect(clientNames).toEqual(['fleet-server-client']);
  });

  it('presents a client certificate whose key is encrypted, with ssl.key_passphrase', async () => {
    const client = authority.leaf('fleet-server-encrypted');
    const encrypted = createPrivateKey(client.key).export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'k3y-pass' }) as string;
    clientNames.length = 0;
    expect(await info(output({ certificateAuthorities: [authority.ca.cert], certificate: client.cert, key: encrypted, keyPassphrase: 'k3y-pass' }))).toBe('tls-double');
    expect(clientNames).toEqual(['fleet-server-encrypted']);
  });
});

describe('a pinned CA and an impostor', () => {
  it('refuses every connection to a server whose chain lacks the pin, back to back over TLS 1.2 (no session resumed past the check)', async () => {
    const impostorCa = new Authority('Impostor CA');
    const impostorLeaf = impostorCa.leaf('localhost');
    let seen = 0;
    const impostor = https.createServer({ cert: impostorLeaf.cert + impostorCa.ca.cert, key: impostorLeaf.key, maxVersion: 'TLSv1.2' }, (_req, res) => {
      seen++;
      res.writeHead(200, { 'content-type': 'application/json', 'x-elastic-product': 'Elasticsearch' });
      res.end(JSON.stringify({ name: 'impostor', cluster_name: 'c', cluster_uuid: 'u', version: { number: '9.6.0' }, tagline: 'You Know, for Search' }));
    });
    await new Promise<void>((r) => impostor.listen(0, '127.0.0.1', () => r()));
    const c = { ...output({ caTrustedFingerprint: fingerprintOf(authority.ca.cert) }), hosts: [`https://localhost:${(impostor.address() as AddressInfo).port}`] };
    const client = createClient(c, { maxRetries: 0, requestTimeoutMs: 5000 });
    try {
      // Sent at once, one after the other: a session cached by the refused handshake would be offered by the next.
      for (let i = 0; i < 4; i++) await expect(client.info()).rejects.toBeInstanceOf(errors.ConnectionError);
      const both = await Promise.allSettled([client.info(), client.info()]);
      expect(both.map((r) => r.status)).toEqual(['rejected', 'rejected']);
      expect(seen).toBe(0);
    } finally {
      await client.close();
      await new Promise<void>((r) => impostor.close(() => r()));
    }
  });
});
