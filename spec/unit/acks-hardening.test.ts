// Acks in-process: what one request may cost the store, what a malformed event does to its neighbours,
// what is stored of what agents send, and that a policy ack survives a failed API-key clean-up.
import { isRfc3339 } from '../../src/fleet/messages';
import { ackAnswer } from '../../src/http/handlers/acks';
import { InProcessFleet } from '../support/in-process-fleet';

let f: InProcessFleet;
afterEach(async () => { await f?.stop(); });

/** Counts calls of a store method, still calling it. */
function count<K extends 'findAction' | 'createActionResults'>(method: K): { calls: unknown[][] } {
  const seen = { calls: [] as unknown[][] };
  const real = (f.store[method] as (...args: unknown[]) => Promise<unknown>).bind(f.store);
  (f.store as unknown as Record<string, unknown>)[method] = (...args: unknown[]) => (seen.calls.push(args), real(...args));
  return seen;
}

describe('acks: lookups and writes per request', () => {
  test('10,000 events naming one unknown action id cost one lookup', async () => {
    f = await InProcessFleet.start();
    const a = await f.enroll();
    const lookups = count('findAction');
    const events = Array.from({ length: 10_000 }, () => ({ action_id: 'no-such-action' }));
    const r = await f.fleet.acks.ack(await f.agent(a.id), events as never);
    expect(r).toHaveLength(10_000);
    expect(r.every((o) => o.kind === 'unknownAction')).toBe(true);
    expect(lookups.calls).toEqual([['no-such-action']]);
  });

  test('a lookup that fails fails every event naming that id, from one lookup, logged once', async () => {
    f = await InProcessFleet.start();
    const a = await f.enroll();
    let lookups = 0;
    f.store.findAction = async () => {
      lookups++;
      throw new Error('store down');
    };
    const r = await f.fleet.acks.ack(await f.agent(a.id), Array.from({ length: 500 }, () => ({ action_id: 'x' })) as never);
    expect(lookups).toBe(1);
    const answer = ackAnswer(r);
    expect(answer.failures).toEqual([expect.objectContaining({ items: 500 })]);
  });

  test('an action acknowledged many times in one request is one result to write', async () => {
    f = await InProcessFleet.start();
    const a = await f.enroll();
    const [hit] = await f.createActions([{ type: 'SETTINGS', agents: [a.id] }]);
    const writes = count('createActionResults');
    const r = await f.fleet.acks.ack(await f.agent(a.id), Array.from({ length: 1000 }, () => ({ action_id: hit!._source.action_id })) as never);
    expect(r.every((o) => o.kind === 'ok')).toBe(true);
    expect(writes.calls).toHaveLength(1);
    expect(writes.calls[0]![0]).toHaveLength(1);
  });
});

describe('acks: dates and data as upstream decodes them', () => {
  test('a malformed timestamp, or INPUT_ACTION started_at / completed_at, is that item\'s 400; the other events are stored', async () => {
    f = await InProcessFleet.start();
    const a = await f.enroll();
    const [settings, input] = await f.createActions([{ type: 'SETTINGS', agents: [a.id] }, { type: 'INPUT_ACTION', agents: [a.id], input_type: 'osquery' }]);
    const r = await f.fleet.acks.ack(await f.agent(a.id), [
      { action_id: settings!._source.action_id, timestamp: 'not a date' },
      { action_id: input!._source.action_id, started_at: '2030-01-01T00:00:00Z', completed_at: 'yesterday' },
      { action_id: input!._source.action_id, timestamp: '2030-01-01T00:00:02.123456789+02:00', started_at: '2030-01-01T00:00:00Z', completed_at: '2030-01-01T00:00:01Z', action_input_type: 'osquery' },
    ] as never);
    expect(r).toEqual([{ kind: 'invalid', reason: expect.stringMatching(/timestamp/) }, { kind: 'invalid', reason: expect.stringMatching(/completed_at/) }, { kind: 'ok' }]);
    expect(ackAnswer(r).body).toEqual({ action: 'acks', errors: true, items: [
      { status: 400, message: 'Bad Request' }, { status: 400, message: 'Bad Request' }, { status: 200, message: 'OK' },
    ] });
    // The answer names only the status; the log says why, each reason once with its count.
    expect(ackAnswer([...r, { kind: 'wrongAgent' }, { kind: 'unknownAction' }, { kind: 'unknownAction' }]).refused).toEqual([
      { reason: 'timestamp is not an RFC 3339 time', items: 1 }, { reason: 'started_at or completed_at is not an RFC 3339 time', items: 1 },
      { reason: 'agent id mismatch', items: 1 }, { reason: 'action not found', items: 2 },
    ]);
    expect(await f.store.listActionResults(settings!._source.action_id)).toEqual([]);
    expect((await f.store.listActionResults(input!._source.action_id)).map((h) => h._source)).toEqual([expect.objectContaining({
      '@timestamp': '2030-01-01T00:00:02.123456789+02:00', started_at: '2030-01-01T00:00:00Z', completed_at: '2030-01-01T00:00:01Z',
    })]);
  });

  test('RFC 3339 as Go reads it: T and Z upper case, fields in range, the day within its month', () => {
    for (const ok of ['2030-01-01T00:00:00Z', '2024-02-29T23:59:59.5-07:00', '2030-12-31T12:00:00.999999999+14:00']) expect([ok, isRfc3339(ok)]).toEqual([ok, true]);
    for (const bad of ['not a date', '2030-01-01', '2030-01-01 00:00:00Z', '2030-01-01t00:00:00z', '2030-02-30T00:00:00Z', '2023-02-29T00:00:00Z',
      '2030-13-01T00:00:00Z', '2030-01-01T24:00:00Z', '2030-01-01T00:00:60Z', '2030-01-01T00:00:00+2:00', '2030-01-01T00:00:00.Z', '1704067200']) {
      expect([bad, isRfc3339(bad)]).toEqual([bad, false]);
    }
  });

  test('REQUEST_DIAGNOSTICS stores {upload_id} of the data, nothing else the agent sent', async () => {
    f = await InProcessFleet.start();
    const a = await f.enroll();
    const [diag] = await f.createActions([{ type: 'REQUEST_DIAGNOSTICS', agents: [a.id] }]);
    const r = await f.fleet.acks.ack(await f.agent(a.id), [{ action_id: diag!._source.action_id, data: { upload_id: 'u-1', padding: 'x'.repeat(100_000) } }] as never);
    expect(r).toEqual([{ kind: 'ok' }]);
    const [result] = await f.store.listActionResults(diag!._source.action_id);
    expect(result!._source.data).toEqual({ upload_id: 'u-1' });
  });
});

describe('acks: policy acks and API-key clean-up', () => {
  /** An agent with a retired output key (its key was re-minted), on revision 1 of p1, with revision 2 published. */
  async function agentWithRetiredKey() {
    f = await InProcessFleet.start();
    const a = await f.enroll();
    const first = await f.checkin(a.id);
    expect(first.actions?.[0]?.type).toBe('POLICY_CHANGE');
    await f.store.updateAgent({ id: a.id, doc: { outputs: { default: { api_key: '' } } } });
    await f.checkin(a.id, { agent_policy_id: 'p1', policy_revision_idx: 1 });
    expect((await f.agent(a.id))._source.outputs!['default']!.to_retire_api_key_ids).toHaveLength(1);
    await f.putPolicy({ id: 'p1', outputs: { default: { type: 'elasticsearch', hosts: ['http://localhost:9200'] } }, inputs: [] });
    return a;
  }

  test('a clean-up that cannot invalidate, read or update keys is logged; the ack is answered OK and its revision recorded', async () => {
    const a = await agentWithRetiredKey();
    f.store.invalidateApiKeys = async () => {
      throw new Error('cluster unavailable');
    };
    f.store.getApiKeyRoles = async () => {
      throw new Error('cluster unavailable');
    };
    f.store.deleteSecrets = async () => {
      throw new Error('cluster unavailable');
    };
    // Old: the item failed (503) and the agent stayed on revision 1, so it got the policy again.
    expect(await f.fleet.acks.ack(await f.agent(a.id), [{ action_id: 'policy:p1:2' }] as never)).toEqual([{ kind: 'ok' }]);
    expect((await f.agent(a.id))._source.policy_revision_idx).toBe(2);
  });

  test('an output key that cannot be read, for an agent unenrolled meanwhile, fails the policy item (500, as upstream) and records nothing', async () => {
    const a = await agentWithRetiredKey();
    const asAuthenticated = await f.agent(a.id);
    await f.store.updateAgent({ id: a.id, doc: { active: false } });
    f.store.getApiKeyRoles = async () => {
      throw new Error('api key invalidated');
    };
    const r = await f.fleet.acks.ack(asAuthenticated, [{ action_id: 'policy:p1:2' }] as never);
    expect(r).toEqual([{ kind: 'failed', error: expect.objectContaining({ code: 'Internal', message: 'updating inactive agent' }) }]);
    expect(ackAnswer(r).status).toBe(500);
    expect((await f.agent(a.id))._source.policy_revision_idx).not.toBe(2);
  });
});
