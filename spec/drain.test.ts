// A stopping server answers held check-ins saying Connection: close, so agents on keep-alive sockets
// reconnect (to another instance) instead of re-polling on a socket that is being closed.
import http from 'node:http';
import { SimAgent } from './support/agent';
import { removeDir, startFleetServer } from './support/fleet-server';

test('answers during the drain carry Connection: close, held polls included', async () => {
  const server = await startFleetServer({ overrides: ['inputs.0.server.timeouts.checkin_long_poll=60s', 'inputs.0.server.timeouts.checkin_jitter=0s'] });
  const keepAlive = new http.Agent({ keepAlive: true });
  try {
    const agents = [new SimAgent(server.url), new SimAgent(server.url), new SimAgent(server.url)];
    for (const a of agents) {
      expect((await a.enroll(server.printedToken!)).status).toBe(200);
      await a.checkin();
    }
    // Held polls on keep-alive connections, as agents hold them.
    const held = agents.map((a) => new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = http.request(`${a.baseUrl}/api/fleet/agents/${a.id}/checkin`, { method: 'POST', agent: keepAlive, headers: a.headers() }, (res) => {
        res.resume();
        res.on('end', () => resolve(res));
      });
      req.on('error', reject);
      req.end(JSON.stringify({ status: 'online', agent_policy_id: 'default-policy', policy_revision_idx: 1 }));
    }));
    await new Promise((r) => setTimeout(r, 300));
    const stopped = server.stop();
    for (const res of await Promise.all(held)) {
      expect(res.statusCode).toBe(200);
      expect(res.headers['connection']).toBe('close');
    }
    expect(await stopped).toBe(0);
  } finally {
    keepAlive.destroy();
    await server.stop();
    removeDir(server.dataDir);
  }
});
