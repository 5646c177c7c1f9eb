// ssl.ca_trusted_fingerprint for the Elasticsearch output: a CA pinned by its SHA-256, trusted as a root
// when the server presents it in its chain (upstream: libbeat tlscommon).
import { X509Certificate } from 'node:crypto';
import { checkServerIdentity, type DetailedPeerCertificate, type TLSSocket } from 'node:tls';
import type { ElasticsearchOutputConfig } from '../../config/config';

/** ssl.ca_trusted_fingerprint as lower-case hex without colons, unless verification is `none` (which checks nothing). */
export function pinOf(c: ElasticsearchOutputConfig): string | undefined {
  const fingerprint = c.ssl.caTrustedFingerprint;
  return fingerprint && c.ssl.verificationMode !== 'none' ? hex(fingerprint) : undefined;
}

const hex = (fingerprint: string): string => fingerprint.replace(/:/g, '').toLowerCase();

/**
 * Why a server must be refused under ssl.ca_trusted_fingerprint, as upstream does it (libbeat tlscommon
 * `trustRootCA`, called by `makeVerifyConnection`): a CA certificate in the presented chain whose SHA-256
 * matches the pin is trusted as a root, besides certificate_authorities and the system roots, and the chain
 * is then verified per verification_mode (host name for full and strict, not for certificate). So the
 * server must send the CA in its chain, as Elasticsearch does with its http_ca.
 */
export function pinnedChainError(socket: TLSSocket, host: string, pin: string, checkHost: boolean): Error | undefined {
  // Trusted by OpenSSL (host name included where checked). A resumed session is checked again: its chain is
  // the one it was made with, and a session of a refused handshake may have been cached before the refusal
  // closed the socket (the client's agent keeps no sessions when a pin is set: connection.ts).
  if (socket.authorized) return undefined;
  const peer = socket.getPeerCertificate(true);
  const chain: X509Certificate[] = [];
  // Leaf to root; a self-signed root is its own issuerCertificate.
  for (let c: DetailedPeerCertificate | undefined = peer; c?.raw && chain.length < 10; c = c.issuerCertificate === c ? undefined : c.issuerCertificate) {
    chain.push(new X509Certificate(c.raw));
  }
  const root = chain.findIndex((x) => x.ca && hex(x.fingerprint256) === pin);
  if (root < 0) {
    return new Error(`server certificate not trusted (${socket.authorizationError}) and no CA certificate in its chain matches ssl.ca_trusted_fingerprint`);
  }
  const now = new Date();
  for (let i = 0; i <= root; i++) {
    const [x, issuer] = [chain[i], chain[i + 1]];
    const name = x.subject.replace(/\n/g, ', ');
    if (now < x.validFromDate || now > x.validToDate) return new Error(`certificate ${name} is expired or not yet valid`);
    if (i < root && !(issuer.ca && x.checkIssued(issuer) && x.verify(issuer.publicKey))) return new Error(`certificate ${name} is not signed by the next in its chain`);
  }
  return checkHost ? checkServerIdentity(host, peer) : undefined;
}
