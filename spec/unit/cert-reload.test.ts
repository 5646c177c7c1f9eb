// The certificate reloader applies only complete pairs: a renewal caught mid-write must not leave the
// listener without a certificate.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer, type Server } from 'node:tls';
import pino from 'pino';
import { CertificateReloader } from '../../src/http/cert-reload';

const dir = mkdtempSync(join(tmpdir(), 'cert-reload-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function selfSigned(name: string): { cert: string; key: string } {
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
    '-subj', '/CN=localhost', '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.crt`)], { stdio: 'ignore' });
  return { cert: readFileSync(join(dir, `${name}.crt`), 'utf8'), key: readFileSync(join(dir, `${name}.key`), 'utf8') };
}

function handshake(server: Server, ca: string[]): Promise<string> {
  const { port } = server.address() as { port: number };
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', servername: 'localhost', ca }, () => {
      resolve(s.getPeerCertificate().fingerprint256);
      s.end();
    });
    s.on('error', reject);
  });
}

test.each([
  ['an empty certificate (truncated, not yet rewritten)', (p: { cert: string; key: string }) => ({ cert: '', key: p.key })],
  ['an empty key', (p: { cert: string; key: string }) => ({ cert: p.cert, key: '\n' })],
  ['a key of another certificate', (p: { cert: string; key: string }) => ({ cert: p.cert, key: selfSigned('other').key })],
])('%s is refused and the current certificate keeps being served', async (_what, half) => {
  const first = selfSigned('first');
  const renewed = selfSigned('renewed');
  const server = createServer({ cert: first.cert, key: first.key });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    let files = first;
    const reloader = new CertificateReloader([server], { read: () => files }, pino({ level: 'silent' }));
    const before = await handshake(server, [first.cert, renewed.cert]);

    files = half(renewed);
    expect(reloader.check()).toBe(false);
    expect(await handshake(server, [first.cert, renewed.cert])).toBe(before);

    files = renewed;
    expect(reloader.check()).toBe(true);
    expect(await handshake(server, [first.cert, renewed.cert])).not.toBe(before);
  } finally {
    server.close();
  }
});
