// TLS certificate hot reload (ssl.certificate_reload, upstream 9.5): a renewed certificate is served to
// new connections without dropping held polls; a pair that does not match is refused and the current
// certificate kept.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { SimAgent } from './support/agent';
import { removeDir, startFleetServer, tempDir, type FleetServerProcess } from './support/fleet-server';
import { request } from './support/http';

jest.setTimeout(60_000);

/** A self-signed P-256 certificate for localhost, as an operator's renewal would produce. */
function selfSigned(name: string): { cert: string; key: string } {
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.crt`)], { stdio: 'ignore' });
  return { cert: readFileSync(join(dir, `${name}.crt`), 'utf8'), key: readFileSync(join(dir, `${name}.key`), 'utf8') };
}

function servedFingerprint(port: number, ca: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', servername: 'localhost', ca }, () => {
      const fp = s.getPeerCertificate().fingerprint256;
      s.end();
      resolve(fp);
    });
    s.on('error', reject);
  });
}

async function until(what: string, fn: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`gave up waiting for ${what}`);
}

let server: FleetServerProcess | undefined;
const dir = tempDir();
afterAll(async () => {
  await server?.stop();
  removeDir(dir);
});

test('a renewed certificate reaches new connections while a held poll carries on; a mismatched pair is refused', async () => {
  const first = selfSigned('first');
  const renewed = selfSigned('renewed');
  const stray = selfSigned('stray');
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  writeFileSync(certFile, first.cert);
  writeFileSync(keyFile, first.key);
  server = await startFleetServer({ dataDir: dir, overrides: [
    'inputs.0.server.ssl.enabled=true', `inputs.0.server.ssl.certificate=${certFile}`, `inputs.0.server.ssl.key=${keyFile}`,
    'inputs.0.server.ssl.certificate_reload.enabled=true', 'inputs.0.server.ssl.certificate_reload.reload_interval=200ms',
    'inputs.0.server.timeouts.checkin_long_poll=4s', 'inputs.0.server.timeouts.checkin_jitter=0s',
  ] });
  const ca = [first.cert, renewed.cert, stray.cert];
  const before = await servedFingerprint(server.port, ca);

  const base = `https://localhost:${server.port}`;
  const agent = new SimAgent(base);
  agent.tlsCa = ca;
  expect((await agent.enroll((await server.enrollmentToken()))).status).toBe(200);
  const first200 = await agent.checkin();
  const rev = first200.json.actions?.[0]?.data?.policy?.revision ?? 1;
  // Held: nothing new for this agent until the long poll ends.
  const held = agent.checkin({ agent_policy_id: first200.json.actions?.[0]?.data?.policy?.id, policy_revision_idx: rev });

  writeFileSync(keyFile, renewed.key);
  writeFileSync(certFile, renewed.cert);
  let after = before;
  await until('the renewed certificate', async () => (after = await servedFingerprint(server!.port, ca)) !== before);
  expect(after).not.toBe(before);
  expect((await held).status).toBe(200);
  expect(server.logs().some((l) => l['message'] === 'TLS certificate reloaded')).toBe(true);

  // A certificate without its key (written first, as a renewal might): refused, the renewed one stays.
  writeFileSync(certFile, stray.cert);
  await until('the refusal', async () => server!.logs().some((l) => String(l['message']).includes('new files refused')));
  expect(await servedFingerprint(server.port, ca)).toBe(after);
  expect((await request(`${base}/api/status`, { ca })).status).toBe(200);
});
