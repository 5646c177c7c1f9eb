// Graceful force-unenroll end to end: a force-unenrolled agent's check-ins get an empty policy, then an
// UNENROLL, then 401 — instead of 401 forever.
import { SimAgent } from './support/agent';
import { cli } from './support/cli';
import { removeDir, startFleetServer } from './support/fleet-server';

test('with the flag on, an unenrolled agent is told to stop and to unenroll before it is refused', async () => {
  const server = await startFleetServer({ overrides: [
    'inputs.0.server.feature_flags.graceful_force_unenroll.enabled=true',
    'inputs.0.server.timeouts.checkin_long_poll=2s', 'inputs.0.server.timeouts.checkin_jitter=0s',
  ] });
  try {
    const agent = new SimAgent(server.url);
    expect((await agent.enroll((await server.enrollmentToken()))).status).toBe(200);
    expect((await agent.checkin()).json.actions[0].type).toBe('POLICY_CHANGE');
    // The agent goes inactive (an UNENROLL acknowledged), as a force-unenroll leaves it.
    const created = await cli(server.dataDir, ['actions', 'create', '--type', 'UNENROLL', '--agents', agent.id]);
    await agent.checkin({ agent_policy_id: 'default-policy', policy_revision_idx: 1 });
    expect((await agent.ack([{ action_id: created.id }])).status).toBe(200);

    const first = await agent.checkin();
    expect(first.status).toBe(200);
    expect(first.json.actions).toEqual([expect.objectContaining({ type: 'POLICY_CHANGE', agent_id: agent.id, data: { policy: {} } })]);
    const second = await agent.checkin();
    expect(second.status).toBe(200);
    expect(second.json.actions).toEqual([expect.objectContaining({ type: 'UNENROLL', agent_id: agent.id, data: null })]);
    const third = await agent.checkin();
    // The unenroll invalidated its access key: the refusal it would have had all along.
    expect(third.status).toBe(401);
    expect(third.json.error).toBe('ErrUnauthorized');
  } finally {
    await server.stop();
    removeDir(server.dataDir);
  }
});
