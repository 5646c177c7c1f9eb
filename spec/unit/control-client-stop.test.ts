// stop() while the agent is away: each stream loop sits in its reconnect wait (up to 30 s), and a
// SIGTERM then must not wait it out (the process's exit timer is 20 s, the agent's kill 25 s).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { ControlClient } from '../../src/control/client';
import { proto } from '../../src/control/generated/control';
import { localhostCertificate } from '../support/certs';
import { removeDir, tempDir } from '../support/fleet-server';

async function until(what: string, pred: () => boolean, timeoutMs = 10_000): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; !pred(); await new Promise((r) => setTimeout(r, 10))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
  }
}

const dir = tempDir();
afterAll(() => removeDir(dir));

test('stop() ends both stream loops in their reconnect waits at once', async () => {
  const { certPath, keyPath, ca } = localhostCertificate(dir);
  const info = proto.StartUpInfo.create({
    // Nobody listens there: both streams fail at once and their loops go to their reconnect waits.
    addr: `unix:${join(dir, 'no-agent.sock')}`, serverName: 'localhost', token: 't',
    caCert: ca, peerCert: readFileSync(certPath), peerKey: readFileSync(keyPath), services: [proto.ConnInfoServices.CheckinV2],
  });
  // A wait that only a stop ends: had stop() not woken the loops, it would never resolve.
  let waiting = 0;
  let woken = 0;
  const sleep = (_ms: number, signal: AbortSignal): Promise<void> => {
    waiting++;
    return new Promise((resolve) => signal.addEventListener('abort', () => {
      woken++;
      resolve();
    }, { once: true }));
  };
  const client = new ControlClient(info, { onChange: () => undefined }, pino({ level: 'silent' }), { sleep });
  client.start();
  await until('both streams to be waiting to reconnect', () => waiting === 2);
  await client.stop();
  expect(woken).toBe(2);
  // No loop went round again after the stop.
  expect(waiting).toBe(2);
});
