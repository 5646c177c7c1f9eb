// The check-in's HTTP edge (http/handlers/checkin.ts) over a real loopback socket and the in-process
// fleet: a client that goes away is heard from the start of the check-in, not once set-up is done; the
// request ends once set-up has too.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import type { CheckinRequest } from '../../src/fleet/messages';
import { handleCheckin } from '../../src/http/handlers/checkin';
import type { RequestContext } from '../../src/http/route';
import { InProcessFleet, VERSION } from '../support/in-process-fleet';

let f: InProcessFleet;
afterEach(async () => { await f?.stop(); });

function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

test('a client that goes away while set-up waits on the store ends its poll then; the late store answer is ignored', async () => {
  f = await InProcessFleet.start();
  const a = await f.enroll();
  const agent = await f.agent(a.id);
  // Set-up's first store call (the ack token's sequence number) hangs until the test lets it go.
  const stuck = deferred<number | undefined>();
  const asked = deferred();
  f.store.actionSeqNo = () => (asked.resolve(), stuck.promise);
  const closed = deferred();
  const handled = deferred<unknown>();
  const server = http.createServer((req, res) => {
    res.once('close', () => closed.resolve());
    const ctx = {
      req, res, params: { id: a.id }, fleet: f.fleet, config: f.fleet.config, log: pino({ level: 'silent' }), agentVersion: VERSION,
      agent, body: { status: 'online', message: '', ack_token: 'tok-1' },
    } as unknown as RequestContext<'agent', CheckinRequest>;
    handleCheckin(ctx).then(() => handled.resolve('answered'), (err: unknown) => handled.resolve(err));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const client = http.request({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, method: 'POST', path: `/api/fleet/agents/${a.id}/checkin` });
    client.on('error', () => undefined);
    client.end('{}');
    await asked.promise;
    client.destroy();
    await closed.promise;
    // The close ends the poll with set-up still waiting: nothing is held. The request itself (its route
    // slot, a drain's wait) ends only with set-up, so set-up work cannot pile up past the route's max.
    const outcome = await Promise.race([handled.promise, new Promise((r) => setImmediate(() => r('still waiting')))]);
    expect(outcome).toBe('still waiting');
    expect(f.fleet.checkins.heldCount).toBe(0);
    stuck.resolve(undefined);
    // Set-up finishes on its own, holds nothing, and the request ends.
    await expect(handled.promise).resolves.toBe('answered');
    expect(f.fleet.checkins.heldCount).toBe(0);
    expect(f.fleet.policies.waiting()).toBe(0);
  } finally {
    stuck.resolve(undefined);
    await new Promise((r) => server.close(r));
  }
});
