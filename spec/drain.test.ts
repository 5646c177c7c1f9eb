// A stopping server answers its held check-ins oldest first, spread over the drain window, each saying
// Connection: close: agents on keep-alive sockets reconnect (to another instance) at a steady rate
// instead of all at once, and never re-poll on a socket that is being closed.
import http from 'node:http';
import net from 'node:net';
import { SimAgent } from './support/agent';
import { removeDir, startFleetServer } from './support/fleet-server';

test('held polls are answered oldest first, spread out, with Connection: close; the process exits 0', async () => {
  const server = await startFleetServer({ overrides: [
    'inputs.0.server.timeouts.checkin_long_poll=60s', 'inputs.0.server.timeouts.checkin_jitter=0s', 'inputs.0.server.timeouts.drain=5s',
  ] });
  const keepAlive = new http.Agent({ keepAlive: true });
  try {
    const agents: SimAgent[] = [];
    for (let i = 0; i < 40; i++) {
      const a = new SimAgent(server.url);
      expect((await a.enroll((await server.enrollmentToken()))).status).toBe(200);
      await a.checkin();
      agents.push(a);
    }
    const arrivals: number[] = [];
    const held: Promise<http.IncomingMessage>[] = [];
    for (const [i, a] of agents.entries()) {
      held.push(new Promise<http.IncomingMessage>((resolve, reject) => {
        const req = http.request(`${a.baseUrl}/api/fleet/agents/${a.id}/checkin`, { method: 'POST', agent: keepAlive, headers: a.headers() }, (res) => {
          res.resume();
          res.on('end', () => {
            arrivals.push(i);
            resolve(res);
          });
        });
        req.on('error', reject);
        req.end(JSON.stringify({ status: 'online', agent_policy_id: 'default-policy', policy_revision_idx: 1 }));
      }));
      // Held one after the other, so "oldest" is well defined.
      await new Promise((r) => setTimeout(r, 10));
    }
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    const stopped = server.stop();
    const answered = await Promise.all(held);
    const spreadMs = Date.now() - t0;
    for (const res of answered) {
      expect(res.statusCode).toBe(200);
      expect(res.headers['connection']).toBe('close');
    }
    // At most 10 ms apart within 80 % of the drain: 40 polls take about 0.4 s, not one burst.
    expect(spreadMs).toBeGreaterThanOrEqual(200);
    const rank = (i: number): number => arrivals.indexOf(i);
    const mean = (xs: number[]): number => xs.reduce((s, x) => s + x, 0) / xs.length;
    expect(mean([0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map(rank))).toBeLessThan(mean([30, 31, 32, 33, 34, 35, 36, 37, 38, 39].map(rank)));
    expect(await stopped).toBe(0);
    // Its last line says where the stop went: the spread answers took most of it, nothing was cut.
    const end = server.logs().find((l) => l['message'] === 'fleet-server stopped');
    expect(end).toMatchObject({ 'stop.cut_requests': 0, 'stop.write_ms': expect.any(Number), 'stop.close_ms': expect.any(Number) });
    expect(end!['stop.answer_ms']).toBeGreaterThanOrEqual(200);
  } finally {
    keepAlive.destroy();
    await server.stop();
    removeDir(server.dataDir);
  }
});

/**
 * A raw connection to a server holding forty polls (the drain then lasts ~0.4 s: answered at most 10 ms
 * apart); `before` runs on it before the stop; 150 ms into the drain it sends a request, which must be
 * answered with Connection: close and the connection closed cleanly, not reset.
 */
async function requestDuringDrain(before: (send: () => void, head: () => Promise<string>) => Promise<void>): Promise<void> {
  const server = await startFleetServer({ overrides: [
    'inputs.0.server.timeouts.checkin_long_poll=60s', 'inputs.0.server.timeouts.checkin_jitter=0s', 'inputs.0.server.timeouts.drain=5s',
  ] });
  try {
    const held: Promise<unknown>[] = [];
    for (let i = 0; i < 40; i++) {
      const a = new SimAgent(server.url);
      expect((await a.enroll((await server.enrollmentToken()))).status).toBe(200);
      await a.checkin();
      held.push(a.checkin({ status: 'online', agent_policy_id: 'default-policy', policy_revision_idx: 1 }).catch(() => undefined));
    }
    await new Promise((r) => setTimeout(r, 300));
    const socket = net.connect(server.port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    let received = '';
    socket.on('data', (d: Buffer) => (received += d.toString('latin1')));
    const ended = new Promise<boolean>((r) => {
      socket.once('close', (hadError) => r(hadError));
      socket.once('error', () => undefined);
    });
    const send = (): void => void socket.write('GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n');
    await before(send, async () => {
      for (let i = 0; i < 100 && !/\r\n\r\n/.test(received); i++) await new Promise((r) => setTimeout(r, 20));
      const head = received;
      received = '';
      return head;
    });
    const stopped = server.stop();
    await new Promise((r) => setTimeout(r, 150));
    send();
    expect(await ended).toBe(false);
    expect(received).toMatch(/^HTTP\/1\.1 \d{3} /);
    expect(received.toLowerCase()).toContain('connection: close');
    await Promise.all(held);
    expect(await stopped).toBe(0);
  } finally {
    await server.stop();
    removeDir(server.dataDir);
  }
}

// Node counts a connection whose first request has not begun as busy, so closing idle connections at the
// stop leaves it alone; this keeps it so.
test('a connection made just before the stop, its request sent during the drain, is answered (Connection: close), not reset', async () => {
  await requestDuringDrain(async () => undefined);
});

// http.Server's close() would close every idle keep-alive connection at once, and a client whose next
// request is already on its way meets a reset; a connection answered just before the stop stays open
// for a moment, and its request is answered.
test('a keep-alive connection answered just before the stop, its next request sent during the drain, is answered (Connection: close), not reset', async () => {
  await requestDuringDrain(async (send, head) => {
    send();
    const answer = await head();
    expect(answer).toMatch(/^HTTP\/1\.1 200 /);
    expect(answer.toLowerCase()).toContain('connection: keep-alive');
  });
});
