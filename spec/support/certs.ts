// Certificates as Elastic Agent makes them for its control protocol: an RSA-2048 CA (CN localhost,
// O elastic-fleet) and, per component, a leaf whose CN and DNS SAN are the component's server_name,
// usable for both server and client authentication, with its key as PKCS#1 PEM.
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import forge from 'node-forge';

export interface Pair {
  cert: string;
  key: string;
}

function keyPair(): { pem: string; forgeKey: forge.pki.rsa.PrivateKey; publicKey: forge.pki.rsa.PublicKey } {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048, privateKeyEncoding: { type: 'pkcs1', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } });
  const forgeKey = forge.pki.privateKeyFromPem(privateKey);
  return { pem: privateKey, forgeKey, publicKey: forge.pki.setRsaPublicKey(forgeKey.n, forgeKey.e) };
}

function certificate(subjectCn: string, publicKey: forge.pki.rsa.PublicKey, issuer: forge.pki.CertificateField[] | undefined,
  signer: forge.pki.rsa.PrivateKey, extensions: object[]): string {
  const c = forge.pki.createCertificate();
  c.publicKey = publicKey;
  c.serialNumber = `01${randomBytes(8).toString('hex')}`;
  c.validity.notBefore = new Date(Date.now() - 60_000);
  c.validity.notAfter = new Date(Date.now() + 10 * 365 * 24 * 3600_000);
  const subject = [{ name: 'commonName', value: subjectCn }, { name: 'organizationName', value: 'elastic-fleet' }];
  c.setSubject(subject);
  c.setIssuer(issuer ?? subject);
  c.setExtensions(extensions);
  c.sign(signer, forge.md.sha256.create());
  return forge.pki.certificateToPem(c);
}

export class Authority {
  readonly ca: Pair;
  private readonly caKey: forge.pki.rsa.PrivateKey;
  private readonly caSubject: forge.pki.CertificateField[];

  /** `caName`: the CA's CN (a leaf named as its CA would look self-signed). */
  constructor(caName = 'localhost') {
    const k = keyPair();
    this.caKey = k.forgeKey;
    const pem = certificate(caName, k.publicKey, undefined, k.forgeKey, [
      { name: 'basicConstraints', cA: true, critical: true }, { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    ]);
    this.ca = { cert: pem, key: k.pem };
    this.caSubject = forge.pki.certificateFromPem(pem).subject.attributes;
  }

  /** A leaf for `name` (CN and DNS SAN), good for TLS servers and clients. */
  leaf(name: string): Pair {
    const k = keyPair();
    const cert = certificate(name, k.publicKey, this.caSubject, this.caKey, [
      { name: 'basicConstraints', cA: false }, { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true, clientAuth: true }, { name: 'subjectAltName', altNames: [{ type: 2, value: name }] },
    ]);
    return { cert, key: k.pem };
  }
}

/** A self-signed ECDSA P-256 certificate for localhost and 127.0.0.1 (openssl), written into `dir`. */
export function localhostCertificate(dir: string): { certPath: string; keyPath: string; ca: Buffer } {
  const certPath = join(dir, 'cert.pem');
  const keyPath = join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', keyPath, '-out', certPath], { stdio: 'ignore' });
  return { certPath, keyPath, ca: readFileSync(certPath) };
}
