// Elasticsearch mode: agents' output keys live in Fleet secrets (the agent document holds a
// `$co.elastic.secret{…}` reference). A policy rollout must not read one secret per agent: a key minted
// or read once by this process is not read again (counted on the double).
import { SimAgent } from './support/agent';
import { EsDouble } from './support/es-double/server';
import { bumpPolicy, esSettings, seedPolicy } from './support/es-mode';
import { removeDir, startFleetServer, tempDir, type FleetServerProcess } from './support/fleet-server';
import { request } from './support/http';

jest.setTimeout(90_000);

async function secretReads(es: EsDouble): Promise<number> {
  const r = await fetch(`${es.url}/_double/stats`, { headers: { authorization: `Bearer ${es.serviceToken}` } });
  return ((await r.json()) as { requests: Record<string, number> }).requests['secret_get'] ?? 0;
}

async function healthy(url: string): Promise<void> {
  for (let i = 0; i < 100 && (await request(`${url}/api/status`)).status !== 200; i++) await new Promise((r) => setTimeout(r, 100));
}

/** Holds every agent's poll on `rev`, rolls out the next revision, and returns the secrets read meanwhile. */
async function rollout(server: FleetServerProcess, es: EsDouble, dir: string, agents: SimAgent[], rev: number, name: string): Promise<number> {
  const before = await secretReads(es);
  const held = agents.map((a) => a.checkin({ agent_policy_id: 'default-policy', policy_revision_idx: rev }, { timeoutMs: 60_000 }));
  const next = await bumpPolicy(dir, esSettings(es), server.url, name);
  for (const r of await Promise.all(held)) {
    expect(r.status).toBe(200);
    const change = r.json.actions.find((a: any) => a.type === 'POLICY_CHANGE');
    expect(change.data.policy.revision).toBe(next);
    // The agent still gets its plain key, not the reference.
    expect(change.data.policy.outputs.default.api_key).toMatch(/^[^$:]+:[^:]+$/);
  }
  return (await secretReads(es)) - before;
}

test('a rollout reads no Fleet secret for keys this process minted or has read; after a restart, one read per agent, once', async () => {
  const dir = tempDir();
  const es = await new EsDouble().start();
  const settings = ['inputs.0.server.timeouts.checkin_jitter=0s', 'inputs.0.server.timeouts.checkin_long_poll=50s', ...esSettings(es)];
  let server = await startFleetServer({ dataDir: dir, overrides: settings });
  try {
    const token = await seedPolicy(dir, esSettings(es), server.url);
    await healthy(server.url);
    const agents = Array.from({ length: 5 }, () => new SimAgent(server.url));
    for (const a of agents) {
      expect((await a.enroll(token)).status).toBe(200);
      expect((await a.checkin()).status).toBe(200); // revision 1, its output key minted
    }
    // Every agent has a key in a Fleet secret; the rollout needs none of them read back.
    expect(await rollout(server, es, dir, agents, 1, 'two')).toBe(0);

    // A new process knows no key: one read per agent for the first rollout, none for the next.
    await server.stop();
    server = await startFleetServer({ dataDir: dir, overrides: settings, port: server.port, internalPort: server.internalPort });
    await healthy(server.url);
    expect(await rollout(server, es, dir, agents, 2, 'three')).toBe(agents.length);
    expect(await rollout(server, es, dir, agents, 3, 'four')).toBe(0);
  } finally {
    await server.stop();
    await es.stop();
    removeDir(dir);
  }
});
