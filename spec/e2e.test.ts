// The core scenario against the bundled program, on the embedded store and in Elasticsearch mode on
// the double: enroll → POLICY_CHANGE → ack → a new revision reaches a held check-in → restart loses
// nothing → a CLI action reaches the agent → UNENROLL → the next check-in is refused.
import { SimAgent } from './support/agent';
import { embedded, elasticsearch } from './support/backends';
import { cli as runCli } from './support/cli';
import { removeDir, startFleetServer, tempDir, type FleetServerProcess } from './support/fleet-server';
import { request } from './support/http';
import { expectSchema } from './support/openapi';
import { expectDocument } from './support/schema';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

jest.setTimeout(120_000);

const SCHEMA_DEFINITIONS: Record<string, string> = {
  '.fleet-agents': 'agent', '.fleet-policies': 'policy', '.fleet-actions': 'action',
  '.fleet-actions-results': 'action-result', '.fleet-enrollment-api-keys': 'enrollment_api_key',
};

describe.each([embedded, elasticsearch()])('agent lifecycle on $name', (backend) => {
  const dataDir = tempDir();
  let overrides: string[];
  let server: FleetServerProcess;
  const agent = { sim: undefined as unknown as SimAgent, token: '' };
  const cli = (args: string[]): Promise<any> => runCli(dataDir, args, backend.settings());

  beforeAll(async () => {
    await backend.start();
    overrides = ['inputs.0.server.timeouts.checkin_long_poll=6s', 'inputs.0.server.timeouts.checkin_jitter=0s', ...backend.settings()];
  });

  afterAll(async () => {
    await server?.stop();
    await backend.stop();
    removeDir(dataDir);
  });

  test('start, a token to enroll with, and HEALTHY', async () => {
    server = await startFleetServer({ dataDir, overrides });
    agent.token = await backend.token(server);
    await waitHealthy(server.url);
    const status = await request(`${server.url}/api/status`);
    expect(status.status).toBe(200);
    expect(status.json).toEqual({ name: 'fleet-server', status: 'HEALTHY' });
    expect(status.headers['elastic-api-version']).toBe('2023-06-01');
    expect(status.headers['x-request-id']).toBeTruthy();
    expectSchema('statusResponse', status.json);
  });

  test('enroll returns an access key and the agent document is created', async () => {
    agent.sim = new SimAgent(server.url);
    const res = await agent.sim.enroll(agent.token, { enrollment_id: 'host-1' });
    expect(res.status).toBe(200);
    expectSchema('enrollResponse', res.json);
    const item = res.json.item;
    expect(item).toMatchObject({ active: true, policy_id: 'default-policy', type: 'PERMANENT', status: 'online', tags: ['a', 'b'] });
    expect(item.local_metadata.elastic.agent.id).toBe(item.id);
    expect(Buffer.from(item.access_api_key, 'base64').toString()).toMatch(new RegExp(`^${item.access_api_key_id}:`));
    const shown = await cli(['agents', 'show', item.id]);
    expect(shown).toMatchObject({ active: true, policy_id: 'default-policy', agent: { id: item.id, version: '9.6.0' }, enrollment_id: 'host-1', action_seq_no: [-1] });
  });

  test('the first check-in returns POLICY_CHANGE with a per-output API key', async () => {
    const res = await agent.sim.checkin();
    expect(res.status).toBe(200);
    expectSchema('checkinResponse', res.json);
    expect(res.json.actions).toHaveLength(1);
    const action = res.json.actions[0];
    expect(action).toMatchObject({ id: 'policy:default-policy:1', agent_id: agent.sim.id, type: 'POLICY_CHANGE', input_type: '' });
    expect(action.data.policy.outputs.default.api_key).toMatch(/^[\w-]{20}:[\w-]{22}$/);
    expect(action.data.policy.output_permissions.default).toBeDefined();
    const doc = await cli(['agents', 'show', agent.sim.id]);
    expect(doc.outputs.default).toMatchObject({ type: 'elasticsearch', permissions_hash: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect(doc.outputs.default.api_key).toMatch(/^\$co\.elastic\.secret\{.+\}$/);
    expect(action.data.policy.outputs.default.api_key.startsWith(`${doc.outputs.default.api_key_id}:`)).toBe(true);
  });

  test('acking the policy records the revision', async () => {
    const res = await agent.sim.ack([{ action_id: 'policy:default-policy:1' }]);
    expect(res.status).toBe(200);
    expectSchema('ackResponse', res.json);
    expect(res.json).toEqual({ action: 'acks', items: [{ status: 200, message: 'OK' }] });
    expect((await cli(['agents', 'show', agent.sim.id])).policy_revision_idx).toBe(1);
  });

  test('a new policy revision reaches a held check-in within one second', async () => {
    const held = agent.sim.checkin({ agent_policy_id: 'default-policy', policy_revision_idx: 1 });
    await new Promise((r) => setTimeout(r, 500));
    const file = join(dataDir, 'policy.yml');
    writeFileSync(file, [
      'id: default-policy',
      'outputs:',
      '  default: {type: elasticsearch, hosts: ["http://localhost:9200"]}',
      'inputs:',
      '  - {id: logs-1, type: logfile, use_output: default, streams: [{paths: [/var/log/*.log]}]}',
      `fleet: {hosts: ["${server.url}"]}`,
    ].join('\n'));
    const put = await cli(['policy', 'put', file]);
    const written = Date.now();
    expect(put).toEqual({ id: 'default-policy', revision: 2 });
    const res = await held;
    const latency = Date.now() - written;
    expect(res.status).toBe(200);
    expect(res.json.actions[0].id).toBe('policy:default-policy:2');
    expect(res.json.actions[0].data.policy.inputs[0].id).toBe('logs-1');
    expect(latency).toBeLessThan(1000);
    // The agent reports the new revision instead of acking (implicit ack).
    const t0 = Date.now();
    const next = agent.sim.checkin({ agent_policy_id: 'default-policy', policy_revision_idx: 2, poll_timeout: '3m' });
    await new Promise((r) => setTimeout(r, 400));
    await server.stop();
    const released = await next;
    expect(released.status).toBe(200);
    expect(released.json).toEqual({ ack_token: '', action: 'checkin' });
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(server.exitCode).toBe(0);
  });

  test('after a restart nothing is lost', async () => {
    server = await startFleetServer({ dataDir, overrides, port: server.port, internalPort: server.internalPort });
    await waitHealthy(server.url);
    expect(server.createdDefaultPolicy).toBe(false);
    const doc = await cli(['agents', 'show', agent.sim.id]);
    expect(doc).toMatchObject({ agent_policy_id: 'default-policy', policy_revision_idx: 2, last_checkin_status: 'online' });
    expect(doc.last_checkin).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    const policies = await cli(['policy', 'list']);
    expect(policies).toEqual([expect.objectContaining({ id: 'default-policy', revision: 2 })]);
  });

  test('an action created with the admin CLI reaches the held agent and its result is stored', async () => {
    const held = agent.sim.checkin({ agent_policy_id: 'default-policy', policy_revision_idx: 2 });
    await new Promise((r) => setTimeout(r, 300));
    const created = await cli(['actions', 'create', '--type', 'REQUEST_DIAGNOSTICS', '--agents', agent.sim.id, '--data', '{"additional_metrics":["CPU"],"extra":1}']);
    const res = await held;
    expect(res.status).toBe(200);
    expectSchema('checkinResponse', res.json);
    expect(res.json.actions).toEqual([expect.objectContaining({ id: created.id, type: 'REQUEST_DIAGNOSTICS', data: { additional_metrics: ['CPU'] } })]);
    expect(res.json.ack_token).toBe(created.doc_id);
    const ack = await agent.sim.ack([{ action_id: created.id, data: { upload_id: 'u-1' } }]);
    expect(ack.status).toBe(200);
    const shown = await cli(['actions', 'show', created.id]);
    expect(shown.results).toEqual([expect.objectContaining({ _id: `${created.id}:${agent.sim.id}`, agent_id: agent.sim.id, action_id: created.id, data: { upload_id: 'u-1' } })]);
    // The echoed ack token means the action is not delivered again.
    const again = await agent.sim.checkin({ agent_policy_id: 'default-policy', policy_revision_idx: 2 });
    expect(again.status).toBe(200);
    expect(again.json.actions).toBeUndefined();
  });

  test('UNENROLL: the agent acks and its next check-in is refused with 401', async () => {
    const created = await cli(['actions', 'create', '--type', 'UNENROLL', '--agents', agent.sim.id]);
    const res = await agent.sim.checkin({ agent_policy_id: 'default-policy', policy_revision_idx: 2 });
    expect(res.json.actions).toEqual([expect.objectContaining({ id: created.id, type: 'UNENROLL', data: null })]);
    const ack = await agent.sim.ack([{ action_id: created.id }]);
    expect(ack.status).toBe(200);
    const refused = await agent.sim.checkin();
    expect(refused.status).toBe(401);
    expectSchema('error', refused.json);
    expect(refused.json.statusCode).toBe(401);
    const doc = await cli(['agents', 'show', agent.sim.id]);
    expect(doc.active).toBe(false);
    expect(doc.unenrolled_at).toBeTruthy();
  });

  test('documents in the .fleet-* indices match docs/fleet-documents.schema.json', () => {
    const docs = backend.documents(dataDir);
    for (const [alias, definition] of Object.entries(SCHEMA_DEFINITIONS)) {
      expect(docs[alias]?.length).toBeGreaterThan(0);
      for (const d of docs[alias]!) expectDocument(definition, alias === '.fleet-agents' ? { _id: d._id, ...d._source } : d._source);
    }
    const agentDoc = docs['.fleet-agents']![0]!._source;
    // What Kibana's Fleet reads to show an agent: status inputs, policy revision, version, health.
    expect(agentDoc).toMatchObject({ active: false, policy_id: 'default-policy', policy_revision_idx: 2, agent: { version: '9.6.0' }, last_checkin_status: 'online' });
  });
});

async function waitHealthy(url: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if ((await request(`${url}/api/status`)).status === 200) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('fleet-server did not turn HEALTHY');
}
