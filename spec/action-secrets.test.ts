// Actions Kibana writes with secret_references, in Elasticsearch mode: the placeholders in `data` are
// filled from Fleet secrets (GET /_fleet/secret/<id>) when the action reaches the agent, fetched at
// check-in or pushed to a held one; the references never reach the agent.
import { SimAgent } from './support/agent';
import { EsDouble } from './support/es-double/server';
import { esSettings, seedPolicy } from './support/es-mode';
import { removeDir, startFleetServer, tempDir } from './support/fleet-server';
import { request } from './support/http';

jest.setTimeout(60_000);

test('secret_references are resolved in the action data an agent receives, pending and live', async () => {
  const dir = tempDir();
  const es = await new EsDouble().start();
  const server = await startFleetServer({ dataDir: dir, overrides: ['inputs.0.server.timeouts.checkin_jitter=0s', ...esSettings(es)] });
  try {
    const token = await seedPolicy(dir, esSettings(es), server.url);
    for (let i = 0; i < 50 && (await request(`${server.url}/api/status`)).status !== 200; i++) await new Promise((r) => setTimeout(r, 100));
    const agent = new SimAgent(server.url);
    expect((await agent.enroll(token)).status).toBe(200);
    const onPolicy = { agent_policy_id: 'default-policy', policy_revision_idx: 1 };

    const es2 = async (method: string, path: string, body: unknown): Promise<any> => {
      const r = await fetch(`${es.url}${path}`, {
        method, body: JSON.stringify(body), headers: { authorization: `Bearer ${es.serviceToken}`, 'content-type': 'application/json' },
      });
      expect(r.status).toBeLessThan(300);
      return r.json();
    };
    const { id: secretId } = await es2('POST', '/_fleet/secret', { value: 'enroll-me' });
    const kibanaAction = (actionId: string): Promise<unknown> => es2('POST', '/.fleet-actions/_doc?refresh=true', {
      action_id: actionId, '@timestamp': new Date().toISOString(), expiration: new Date(Date.now() + 3600_000).toISOString(),
      type: 'MIGRATE', agents: [agent.id],
      data: { target_uri: 'https://other:8220', enrollment_token: `$co.elastic.secret{${secretId}}` },
      secret_references: [{ id: secretId }],
    });

    await kibanaAction('pending-1');
    const pending = await agent.checkin(onPolicy);
    expect(pending.json.actions).toEqual([expect.objectContaining({
      id: 'pending-1', type: 'MIGRATE', data: { target_uri: 'https://other:8220', enrollment_token: 'enroll-me' },
    })]);
    expect(pending.json.actions[0]).not.toHaveProperty('secret_references');

    const held = agent.checkin(onPolicy, { timeoutMs: 30_000 });
    await new Promise((r) => setTimeout(r, 300));
    await kibanaAction('live-1');
    const live = await held;
    expect(live.json.actions).toEqual([expect.objectContaining({
      id: 'live-1', data: { target_uri: 'https://other:8220', enrollment_token: 'enroll-me' },
    })]);
  } finally {
    await server.stop();
    await es.stop();
    removeDir(dir);
  }
});
