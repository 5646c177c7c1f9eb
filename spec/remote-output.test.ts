// A remote_elasticsearch output in Elasticsearch mode: the agent's key for it is minted in the remote
// cluster with the output's own service token (never sent to agents), and invalidated there at unenroll.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SimAgent } from './support/agent';
import { cli } from './support/cli';
import { EsDouble } from './support/es-double/server';
import { esSettings, seedPolicy } from './support/es-mode';
import { removeDir, startFleetServer, tempDir, type FleetServerProcess } from './support/fleet-server';
import { request } from './support/http';

jest.setTimeout(60_000);

interface Clusters {
  dir: string;
  fleetEs: EsDouble;
  remoteEs: EsDouble;
  server: FleetServerProcess;
  agent: SimAgent;
}

/** A Fleet cluster and a remote one, a server on the first, and an enrolled agent on a policy whose `remote` output is given. */
async function withRemoteOutput(remote: (remoteEs: EsDouble) => string, fn: (c: Clusters) => Promise<void>): Promise<void> {
  const dir = tempDir();
  const fleetEs = await new EsDouble().start();
  const remoteEs = await new EsDouble().start();
  const server = await startFleetServer({ dataDir: dir, overrides: ['inputs.0.server.timeouts.checkin_jitter=0s', ...esSettings(fleetEs)] });
  try {
    const token = await seedPolicy(dir, esSettings(fleetEs), server.url);
    const file = join(dir, 'remote.yml');
    writeFileSync(file, ['id: default-policy', 'outputs:', '  default: {type: elasticsearch, hosts: ["http://localhost:9200"]}',
      `  remote: ${remote(remoteEs)}`, 'inputs: [{id: logs, type: logfile, use_output: remote}]'].join('\n'));
    await cli(dir, ['policy', 'put', file], esSettings(fleetEs));
    for (let i = 0; i < 50 && (await request(`${server.url}/api/status`)).status !== 200; i++) await new Promise((r) => setTimeout(r, 100));
    const agent = new SimAgent(server.url);
    expect((await agent.enroll(token)).status).toBe(200);
    await fn({ dir, fleetEs, remoteEs, server, agent });
  } finally {
    await server.stop();
    await Promise.all([fleetEs.stop(), remoteEs.stop()]);
    removeDir(dir);
  }
}

test('keys for a remote output are minted and invalidated in the remote cluster', () => withRemoteOutput(
  (es) => `{type: remote_elasticsearch, hosts: ["${es.url}"], service_token: "${es.serviceToken}"}`,
  async ({ dir, fleetEs, remoteEs, agent }) => {
    const res = await agent.checkin();
    const policy = res.json.actions[0].data.policy;
    expect(policy.id).toBe('default-policy');
    expect(policy.revision).toBe(2);
    expect(policy.outputs.remote.type).toBe('elasticsearch');
    expect(policy.outputs.remote).not.toHaveProperty('service_token');
    const [remoteId] = (policy.outputs.remote.api_key as string).split(':');
    const [localId] = (policy.outputs.default.api_key as string).split(':');
    expect(remoteEs.security.keys.get(remoteId!)?.metadata).toMatchObject({ agent_id: agent.id, output_name: 'remote', type: 'output' });
    expect(fleetEs.security.keys.has(remoteId!)).toBe(false);
    expect(fleetEs.security.keys.has(localId!)).toBe(true);
    const doc = await cli(dir, ['agents', 'show', agent.id], esSettings(fleetEs));
    // Recorded as upstream records it (agentDocOutputType), so a Go fleet-server's ack clean-up finds it too.
    expect(doc.outputs.remote).toMatchObject({ type: 'elasticsearch', api_key_id: remoteId, connection_hash: expect.stringMatching(/^[0-9a-f]{64}$/) });

    const unenroll = await cli(dir, ['actions', 'create', '--type', 'UNENROLL', '--agents', agent.id], esSettings(fleetEs));
    const next = await agent.checkin({ agent_policy_id: 'default-policy', policy_revision_idx: 2 });
    expect(next.json.actions[0].id).toBe(unenroll.id);
    expect((await agent.ack([{ action_id: unenroll.id }])).status).toBe(200);
    expect(remoteEs.security.keys.get(remoteId!)?.invalidated).toBe(true);
    expect(fleetEs.security.keys.get(localId!)?.invalidated).toBe(true);
  },
));

test('a remote cluster that refuses: the policy still goes out without that key, and the output is recorded DEGRADED', () => withRemoteOutput(
  (es) => `{type: remote_elasticsearch, hosts: ["${es.url}"], service_token: "not-the-token"}`,
  async ({ fleetEs, agent }) => {
    const res = await agent.checkin();
    expect(res.status).toBe(200);
    const outputs = res.json.actions[0].data.policy.outputs;
    expect(outputs.remote.api_key).toBe('');
    expect(outputs.default.api_key).toMatch(/:/);
    const health = [...fleetEs.cluster.resolve('logs-fleet_server.output_health-default')!.docs.values()].map((d) => d.source);
    expect(health).toEqual([expect.objectContaining({ output: 'remote', state: 'DEGRADED', message: expect.stringMatching(/401|service token/),
      data_stream: { dataset: 'fleet_server.output_health', type: 'logs', namespace: 'default' } })]);
  },
));
