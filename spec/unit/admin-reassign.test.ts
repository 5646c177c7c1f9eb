// `agents reassign` moves an agent to another policy as Kibana's reassignAgent does: the agent document
// first (policy_id, policy_base_id, policy_revision_idx cleared), then the POLICY_REASSIGN action. An
// action alone (what `actions create --type POLICY_REASSIGN` wrote) moved nothing: the agent kept its policy.
import { StoreUnavailableError } from '../../src/store/port';
import { esPolicy, InProcessFleet } from '../support/in-process-fleet';

let f: InProcessFleet;
afterEach(async () => {
  jest.restoreAllMocks();
  await f?.stop();
});

const types = (a: { actions?: Record<string, any>[] }): string[] => (a.actions ?? []).map((x) => x.type);

test('after agents reassign the agent\'s next check-in gets the new policy, whatever revision of the old one it reports', async () => {
  f = await InProcessFleet.start();
  await f.putPolicy(esPolicy('p2'));
  await f.putPolicy(esPolicy('p2', { name: 'second revision' }));
  const a = await f.enroll();
  expect(types(await f.checkin(a.id, { agent_policy_id: 'p1', policy_revision_idx: 0 }))).toEqual(['POLICY_CHANGE']);
  // Up to date on p1: nothing to send.
  expect(await f.checkin(a.id, { agent_policy_id: 'p1', policy_revision_idx: 1 })).toEqual({ ack_token: '' });

  const action = await f.admin.reassignAgent(a.id, 'p2');
  expect(action._source).toMatchObject({ type: 'POLICY_REASSIGN', agents: [a.id], data: { policy_id: 'p2' } });
  const doc = (await f.agent(a.id))._source;
  expect(doc).toMatchObject({ policy_id: 'p2', policy_base_id: 'p2', policy_revision_idx: null });

  const next = await f.checkin(a.id, { agent_policy_id: 'p1', policy_revision_idx: 1 });
  const change = next.actions!.find((x) => x.type === 'POLICY_CHANGE')!;
  expect(change.id).toBe('policy:p2:2');
  expect(change.data.policy.id).toBe('p2');
  // An agent reporting no policy fields is sent the new policy too (its stored revision is cleared).
  const b = await f.enroll();
  await f.checkin(b.id);
  await f.admin.reassignAgent(b.id, 'p2');
  expect((await f.checkin(b.id)).actions!.find((x) => x.type === 'POLICY_CHANGE')!.id).toBe('policy:p2:2');
});

test('reassign refuses an unknown policy or agent, an unenrolled agent and the policy the agent is on; the bare action is refused', async () => {
  f = await InProcessFleet.start();
  const a = await f.enroll();
  await expect(f.admin.reassignAgent(a.id, 'nope')).rejects.toThrow('policy nope not found');
  await expect(f.admin.reassignAgent('ghost', 'p1')).rejects.toThrow('agent ghost not found');
  await expect(f.admin.reassignAgent(a.id, 'p1')).rejects.toThrow(`agent ${a.id} is on policy p1 already`);
  await f.store.updateAgent({ id: a.id, doc: { active: false } });
  await f.putPolicy(esPolicy('p2'));
  await expect(f.admin.reassignAgent(a.id, 'p2')).rejects.toThrow(`agent ${a.id} is unenrolled`);
  await expect(f.admin.createAction({ type: 'POLICY_REASSIGN', agents: [a.id], data: { policy_id: 'p2' } }))
    .rejects.toThrow('use fleet-server agents reassign AGENT_ID --policy POLICY_ID');
  expect(await f.store.listActions(10)).toEqual([]);
});

test('the action write failing after the agent moved says the agent moved (the move is not undone, as in Kibana)', async () => {
  f = await InProcessFleet.start();
  await f.putPolicy(esPolicy('p2'));
  const a = await f.enroll();
  jest.spyOn(f.store, 'createActions').mockRejectedValueOnce(new StoreUnavailableError('create actions: Elasticsearch error 503: unavailable_shards_exception'));
  await expect(f.admin.reassignAgent(a.id, 'p2')).rejects.toThrow(
    `agent ${a.id} moved to policy p2; recording the POLICY_REASSIGN action failed: create actions: Elasticsearch error 503: unavailable_shards_exception`);
  expect((await f.agent(a.id))._source).toMatchObject({ policy_id: 'p2', policy_base_id: 'p2', policy_revision_idx: null });
  expect(await f.store.listActions(10)).toEqual([]);
});
