// Fleet rules in-process: check-in revisions, action delivery and expiry, acks, output keys and policy
// parsing, over the real SQLite adapter on ':memory:' with a manual clock (no server, no sleeps).
import { createHash } from 'node:crypto';
import pino from 'pino';
import { ParsedPolicy, permissionsHash } from '../../src/fleet/parsed-policy';
import { PolicyMonitor } from '../../src/fleet/policy-monitor';
import type { CheckinResult, PollOutcome } from '../../src/fleet/checkin';
import type { Hit, PolicyData, PolicyDoc, RoleMap } from '../../src/store/documents';
import type { CheckinRequest } from '../../src/fleet/messages';
import { gcFunction } from '../../src/runtime/memory-trim';
import type { PendingActionQuery } from '../../src/store/port';
import { SqliteStore } from '../../src/store/sqlite/store';
import { classify } from '../../src/http/errors';
import { esPolicy, InProcessFleet, T0, until, VERSION } from '../support/in-process-fleet';

const HOUR = 3600_000;
let f: InProcessFleet;
afterEach(async () => { await f?.stop(); });

const policyAction = (a: { actions?: Record<string, any>[] }) => {
  expect(a.actions).toHaveLength(1);
  expect(a.actions![0]!.type).toBe('POLICY_CHANGE');
  return a.actions![0]!;
};

/** Timers on a hand-moved clock; the rest (setImmediate, which the store's commits use) stays real. */
const fakeTimers = () => jest.useFakeTimers({ doNotFake: ['Date', 'hrtime', 'nextTick', 'performance', 'queueMicrotask', 'setImmediate', 'clearImmediate'] });

/** A promise the test settles: a store call that answers when the test says. */
function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** Resolves once the action dispatcher asks for changes after `seq`: everything up to it has been dispatched. */
function dispatchedThrough(f: InProcessFleet, seq: number): Promise<void> {
  const feed = f.store.actionChanges;
  const next = feed.next.bind(feed);
  return new Promise((resolve) => {
    feed.next = (after, timeoutMs, signal) => {
      if (after >= seq) {
        feed.next = next;
        resolve();
      }
      return next(after, timeoutMs, signal);
    };
  });
}

/** A check-in begun directly: its answers (and errors) as they come, and the cancel the edge would get at once. */
function pollOutcome(): PollOutcome & { answers: unknown[]; cancel?: () => void } {
  const o = {
    answers: [] as unknown[],
    cancel: undefined as (() => void) | undefined,
    settle: (err: unknown, r?: CheckinResult) => void o.answers.push(r ?? err),
    started: (cancel: () => void) => void (o.cancel = cancel),
  };
  return o;
}

/** A store whose API-key work is paced (policy_limit), as on Elasticsearch: keys are minted one by one. */
function pacedStore(): SqliteStore {
  const store = new SqliteStore(':memory:');
  Object.defineProperty(store, 'traits', { value: { ...store.traits, remoteApiKeys: true } });
  return store;
}

async function startWith(store: SqliteStore, settings: Record<string, unknown> = {}, policy = esPolicy('p1')): Promise<InProcessFleet> {
  const fleet = new InProcessFleet(settings, undefined, store);
  await fleet.admin.putPolicy(policy);
  await fleet.fleet.start();
  return fleet;
}

describe('check-in: policy revisions', () => {
  test('an agent on revision N-1 gets POLICY_CHANGE for N at once; on N it gets nothing', async () => {
    f = await InProcessFleet.start();
    const rev = await f.putPolicy(esPolicy('p1', { agent: { logging: { level: 'debug' } } }));
    expect(rev).toBe(2);
    const a = await f.enroll();
    const behind = policyAction(await f.checkin(a.id, { agent_policy_id: 'p1', policy_revision_idx: 1 }));
    expect(behind).toMatchObject({ id: 'policy:p1:2', agent_id: a.id, data: { policy: { id: 'p1', revision: 2, agent: { logging: { level: 'debug' } } } } });
    expect(await f.checkin(a.id, { agent_policy_id: 'p1', policy_revision_idx: 2 })).toEqual({ ack_token: '' });
  });

  test('a held check-in on the latest revision is answered when revision N+1 is published', async () => {
    f = await InProcessFleet.start();
    const a = await f.enroll();
    const held = await f.beginCheckin(a.id, { agent_policy_id: 'p1', policy_revision_idx: 1 }, 60_000);
    expect(f.fleet.policies.waiting()).toBe(1);
    await f.putPolicy(esPolicy('p1'));
    const r = await held.result;
    expect(r.policy && JSON.parse(r.policy.template.render(r.policy.values))).toMatchObject({ id: 'policy:p1:2', agent_id: a.id });
    expect(f.fleet.policies.waiting()).toBe(0);
  });

  test('a held check-in keeps neither its request body nor the agent document, and answers its outcome once', async () => {
    f = await InProcessFleet.start();
    const a = await f.enroll();
    let body: CheckinRequest | undefined = { status: 'online', message: 'Running', agent_policy_id: 'p1', policy_revision_idx: 1,
      local_metadata: { host: { name: 'h'.repeat(4096) } } } as CheckinRequest;
    let agent = await f.store.getAgent(a.id);
    const [bodyRef, docRef] = [new WeakRef(body), new WeakRef(agent!._source)];
    const answers: unknown[] = [];
    const cancel = await f.fleet.checkins.begin(agent!, VERSION, body, 60_000, { settle: (err, r) => answers.push(r ?? err) });
    body = undefined;
    agent = undefined;
    // A WeakRef keeps its target until the job that made it has ended.
    await new Promise((r) => setImmediate(r));
    gcFunction()!({ type: 'major', execution: 'sync', flavor: 'last-resort' });
    expect(f.fleet.checkins.heldCount).toBe(1);
    expect(bodyRef.deref()).toBeUndefined();
    expect(docRef.deref()).toBeUndefined();
    cancel();
    cancel();
    await until(() => answers.length > 0);
    await new Promise((r) => setImmediate(r));
    expect(answers).toEqual([{ ackToken: '' }]);
    expect(f.fleet.checkins.heldCount).toBe(0);
  });

  test('stopping lets held polls go oldest first over the window; a poll that starts meanwhile is not held', async () => {
    f = await InProcessFleet.start();
    const [a, b, c] = [await f.enroll(), await f.enroll(), await f.enroll()];
    const order: string[] = [];
    // The answers, wrapped: awaiting a promise of a promise would wait for the answer itself.
    const hold = async (id: string): Promise<{ answered: Promise<unknown> }> => {
      const poll = await f.beginCheckin(id, { agent_policy_id: 'p1', policy_revision_idx: 1 }, 60_000);
      return { answered: poll.result.then(() => order.push(id)) };
    };
    const first = await hold(a.id);
    const second = await hold(b.id);
    const releasing = f.fleet.checkins.releaseAll(1000);
    // Started while the others are being let go: answered at once, not held for its minute.
    const late = await f.beginCheckin(c.id, { agent_policy_id: 'p1', policy_revision_idx: 1 }, 60_000);
    expect(await late.result).toEqual({ ackToken: expect.any(String) });
    await Promise.all([first.answered, second.answered, releasing]);
    expect(order).toEqual([a.id, b.id]);
  });

  test('stopping is done as soon as no poll is held: polls whose agents went away do not keep it for the window', async () => {
    f = await InProcessFleet.start();
    const agents = await Promise.all(Array.from({ length: 10 }, () => f.enroll()));
    const answers: unknown[] = [];
    const cancels = await Promise.all(agents.map(async (a) => f.fleet.checkins.begin((await f.store.getAgent(a.id))!, VERSION,
      { status: 'online', agent_policy_id: 'p1', policy_revision_idx: 1 } as CheckinRequest, 60_000, { settle: (err, r) => answers.push(r ?? err) })));
    expect(f.fleet.checkins.heldCount).toBe(10);
    // The release's ticks on a fake clock: ten polls are let go over 100 ms, a tick every 20 ms.
    jest.useFakeTimers();
    try {
      let done = false;
      const releasing = f.fleet.checkins.releaseAll(60_000).then(() => (done = true));
      expect(f.fleet.checkins.heldCount).toBe(9);
      // The other nine agents go away before their turn.
      for (const cancel of cancels.slice(1)) cancel();
      expect(f.fleet.checkins.heldCount).toBe(0);
      await jest.advanceTimersByTimeAsync(20);
      expect(done).toBe(true);
      await releasing;
    } finally {
      jest.useRealTimers();
    }
    expect(answers).toEqual(Array(10).fill({ ackToken: '' }));
  });

  test('a revision reported for another policy, or beyond the latest one, gets the current policy', async () => {
    f = await InProcessFleet.start();
    const a = await f.enroll();
    expect(policyAction(await f.checkin(a.id, { agent_policy_id: 'other', policy_revision_idx: 5 })).id).toBe('policy:p1:1');
    expect(policyAction(await f.checkin(a.id, { agent_policy_id: 'p1', policy_revision_idx: 9 })).id).toBe('policy:p1:1');
  });

  test('without reported policy fields the stored revision decides, and a policy ack moves it', async () => {
    f = await InProcessFleet.start();
    const a = await f.enroll();
    expect(policyAction(await f.checkin(a.id)).id).toBe('policy:p1:1');
    await f.fleet.acks.ack(await f.agent(a.id), [{ action_id: 'policy:p1:1', agent_id: a.id } as never]);
    expect(await f.checkin(a.id)).toEqual({ ack_token: '' });
  });

  test('an output whose key is empty makes the policy go out again so a key is minted', async () => {
    f = await InProcessFleet.start();
    const a = await f.enroll();
    policyAction(await f.checkin(a.id, { agent_policy_id: 'p1', policy_revision_idx: 0 }));
    const before = (await f.agent(a.id))._source.outputs!['default']!;
    await f.store.updateAgent({ id: a.id, doc: { outputs: { default: { api_key: '' } } } });
    const again = policyAction(await f.checkin(a.id, { agent_policy_id: 'p1', policy_revision_idx: 1 }));
    const after = (await f.agent(a.id))._source.outputs!['default']!;
    expect(after.api_key_id).not.toBe(before.api_key_id);
    expect(again.data.policy.outputs.default.api_key).toMatch(new RegExp(`^${after.api_key_id}:`));
    expect(after.to_retire_api_key_ids?.map((r) => r.id)).toEqual([before.api_key_id]);
  });

  test('the reported revision is recorded by the bookkeeping flush, with last_checkin from the clock', async () => {
    f = await InProcessFleet.start();
    const a = await f.enroll();
    f.clock.advance(90_000);
    await f.checkin(a.id, { agent_policy_id: 'p1', policy_revision_idx: 1, status: 'degraded', message: 'slow' });
    await f.fleet.bookkeeper.flush();
    expect((await f.agent(a.id))._source).toMatchObject({
      agent_policy_id: 'p1', policy_revision_idx: 1, last_checkin_status: 'degraded', last_checkin_message: 'slow',
      last_checkin: '2030-01-01T00:01:30Z', updated_at: '2030-01-01T00:01:30Z',
    });
  });

  test("a held poll's refresh writes its check-in's unhealthy_reason again, as upstream's ticker does", async () => {
    f = await InProcessFleet.start();
    const a = await f.enroll();
    const components = [{ id: 'log-default', type: 'log', status: 'DEGRADED', message: 'x', units: [{ id: 'u', type: 'input', status: 'DEGRADED', message: 'x' }] }];
    const poll = await f.beginCheckin(a.id, { agent_policy_id: 'p1', policy_revision_idx: 1, status: 'degraded', message: 'input down', components } as never, 300_000);
    await f.fleet.bookkeeper.flush();
    expect((await f.agent(a.id))._source).toMatchObject({ unhealthy_reason: ['input'], last_checkin: '2030-01-01T00:00:00Z' });
    f.clock.advance(30_000);
    f.fleet.checkins.refreshHeld();
    await f.fleet.bookkeeper.flush();
    // Old: the refresh wrote unhealthy_reason null, and Kibana lost why the agent is unhealthy for good
    // (the next check-in starts from the stored reason and its components have not changed).
    expect((await f.agent(a.id))._source).toMatchObject({
      unhealthy_reason: ['input'], last_checkin: '2030-01-01T00:00:30Z', last_checkin_status: 'degraded', last_checkin_message: 'input down',
    });
    poll.cancel();
  });

  test('poll_timeout sets the long poll: 2 minutes less, between 1 minute and checkin_max_poll', async () => {
    f = await InProcessFleet.start();
    const c = f.fleet.checkins;
    expect(c.pollDuration(undefined)).toBe(5 * 60_000);
    expect(c.pollDuration('14m30s')).toBe(12.5 * 60_000);
    expect(c.pollDuration('2m')).toBe(60_000);
    expect(c.pollDuration('3h')).toBe(HOUR);
    expect(() => c.pollDuration('soon')).toThrow(/poll_timeout/);
  });

  test('a poll_timeout that does not parse is quoted in the 400 (and so the log) at most 64 characters long', async () => {
    f = await InProcessFleet.start();
    const text = `${'9'.repeat(1_000_000)}x`;
    let err: unknown;
    try {
      f.fleet.checkins.pollDuration(text);
    } catch (e) {
      err = e;
    }
    expect(classify(err)).toMatchObject({ status: 400, error: 'BadRequest' });
    expect((err as Error).message).toBe(`Bad request: poll_timeout cannot be parsed as duration: time: invalid duration "${'9'.repeat(64)}…"`);
    expect(String((err as Error).cause).length).toBeLessThan(100);
  });

  test('an agent reporting the policy it was moved from gets the new one from revision 0, and no clean-up of its keys', async () => {
    f = await InProcessFleet.start();
    await f.putPolicy(esPolicy('p2'));
    const a = await f.enroll();
    policyAction(await f.checkin(a.id, { agent_policy_id: 'p1', policy_revision_idx: 0 }));
    await f.store.updateAgent({ id: a.id, doc: { policy_id: 'p2', policy_revision_idx: 0 } });
    const reads: string[] = [];
    const getApiKeyRoles = f.store.getApiKeyRoles.bind(f.store);
    f.store.getApiKeyRoles = (id) => (reads.push(id), getApiKeyRoles(id));
    expect(policyAction(await f.checkin(a.id, { agent_policy_id: 'p1', policy_revision_idx: 1 })).id).toBe('policy:p2:1');
    // Old: the keys were cleaned up as after an ack of the policy the agent is leaving.
    expect(reads).toEqual([]);
  });

  test('a check-in whose key clean-up finds the agent unenrolled meanwhile is refused; a failing clean-up otherwise is only logged', async () => {
    f = await InProcessFleet.start();
    const a = await f.enroll();
    policyAction(await f.checkin(a.id, { agent_policy_id: 'p1', policy_revision_idx: 0 }));
    f.store.getApiKeyRoles = async () => {
      throw new Error('cluster unavailable');
    };
    f.store.invalidateApiKeys = async () => {
      throw new Error('cluster unavailable');
    };
    expect(await f.checkin(a.id, { agent_policy_id: 'p1', policy_revision_idx: 1 })).toEqual({ ack_token: '' });
    const asAuthenticated = await f.agent(a.id);
    await f.store.updateAgent({ id: a.id, doc: { active: false } });
    const o = pollOutcome();
    await f.fleet.checkins.begin(asAuthenticated, VERSION, { status: 'online', message: '', agent_policy_id: 'p1', policy_revision_idx: 2 } as CheckinRequest, 0, o);
    await until(() => o.answers.length > 0);
    // Upstream's ErrUpdatingInactiveAgent, a 401.
    expect(o.answers).toEqual([expect.objectContaining({ code: 'AgentInactive' })]);
    expect(classify(o.answers[0]).status).toBe(401);
  });
});

describe('check-in: actions', () => {
  test('a pending action is delivered once: the echoed ack token, or the recorded sequence number, holds it back', async () => {
    f = await InProcessFleet.start();
    const a = await f.enroll();
    const [hit] = await f.createActions([{ type: 'SETTINGS', agents: [a.id], data: { log_level: 'debug', extra: 1 } }]);
    const first = await f.checkin(a.id, { agent_policy_id: 'p1', policy_revision_idx: 1 });
    expect(first.ack_token).toBe(hit!._id);
    expect(first.actions).toEqual([{
      id: hit!._source.action_id, agent_id: a.id, type: 'SETTINGS', created_at: '2030-01-01T00:00:00.000Z', input_type: '',
      data: { log_level: 'debug' }, expiration: hit!._source.expiration,
    }]);
    expect(await f.checkin(a.id, { ack_token: first.ack_token, agent_policy_id: 'p1', policy_revision_idx: 1 })).toEqual({ ack_token: first.ack_token });
    await f.fleet.bookkeeper.flush();
    expect((await f.agent(a.id))._source.action_seq_no).toEqual([hit!._seq_no]);
    // An unknown token falls back to the recorded sequence number.
    expect(await f.checkin(a.id, { ack_token: 'gone', agent_policy_id: 'p1', policy_revision_idx: 1 })).toEqual({ ack_token: 'gone' });
  });

  test('an action expired by the clock is not delivered', async () => {
    f = await InProcessFleet.start();
    const early = await f.enroll();
    const late = await f.enroll();
    await f.createActions([{ type: 'SETTINGS', agents: [early.id, late.id], expiration: new Date(T0 + HOUR).toISOString() }]);
    expect((await f.checkin(early.id, { agent_policy_id: 'p1', policy_revision_idx: 1 })).actions).toHaveLength(1);
    f.clock.advance(HOUR);
    expect((await f.checkin(late.id, { agent_policy_id: 'p1', policy_revision_idx: 1 })).actions).toBeUndefined();
  });

  test('start_time is passed through, and rollout_duration_seconds spreads it by position in the agent list', async () => {
    f = await InProcessFleet.start();
    const agents = [await f.enroll(), await f.enroll(), await f.enroll(), await f.enroll()];
    const start = new Date(T0 + 2 * HOUR).toISOString();
    await f.createActions([{ type: 'UPGRADE', agents: agents.map((x) => x.id), start_time: start, rollout_duration_seconds: 400, data: { version: '9.6.1' } }]);
    const starts: string[] = [];
    for (const x of agents) starts.push((await f.checkin(x.id, { agent_policy_id: 'p1', policy_revision_idx: 1 })).actions![0]!.start_time);
    expect(starts).toEqual(['2030-01-01T02:00:00Z', '2030-01-01T02:01:40Z', '2030-01-01T02:03:20Z', '2030-01-01T02:05:00Z']);
    // Without a rollout the stored start_time goes out as written, even while it is in the future.
    const one = await f.enroll();
    await f.createActions([{ type: 'UPGRADE', agents: [one.id], start_time: start, data: { version: '9.6.1' } }]);
    expect((await f.checkin(one.id, { agent_policy_id: 'p1', policy_revision_idx: 1 })).actions![0]!.start_time).toBe(start);
  });

  test('types agents must not get from the index are skipped; UNENROLL carries null data; other agents get nothing', async () => {
    f = await InProcessFleet.start();
    const a = await f.enroll();
    const b = await f.enroll();
    const hits = await f.createActions([
      { type: 'POLICY_CHANGE', agents: [a.id] },
      { type: 'UPDATE_TAGS', agents: [a.id] },
      { type: 'UNENROLL', agents: [a.id], data: { force: true } },
    ]);
    const r = await f.checkin(a.id, { agent_policy_id: 'p1', policy_revision_idx: 1 });
    expect(r.actions!.map((x) => [x.type, x.data])).toEqual([['UNENROLL', null]]);
    expect(r.ack_token).toBe(hits[2]!._id);
    expect(await f.checkin(b.id, { agent_policy_id: 'p1', policy_revision_idx: 1 })).toEqual({ ack_token: '' });
  });

  test('an action created while the check-in is held is delivered live', async () => {
    f = await InProcessFleet.start();
    const a = await f.enroll();
    const held = await f.beginCheckin(a.id, { agent_policy_id: 'p1', policy_revision_idx: 1 }, 60_000);
    const [hit] = await f.createActions([{ type: 'CANCEL', agents: [a.id], data: { target_id: 'x', more: 2 } }]);
    const r = await held.result;
    expect(r.ackToken).toBe(hit!._id);
    expect(JSON.parse(r.actionsJson!)).toEqual([expect.objectContaining({ type: 'CANCEL', data: { target_id: 'x' } })]);
  });

  /**
   * An agent with one pending action polls; its read of pending actions (the query as `shape` makes it)
   * waits until a new action for it has been pushed live. The poll's answer.
   */
  async function pendingReadRacingLive(agentId: string, shape: (q: PendingActionQuery) => PendingActionQuery) {
    const [older] = await f.createActions([{ type: 'SETTINGS', agents: [agentId], data: { log_level: 'debug' } }]);
    const gate = deferred<void>();
    const reading = deferred<void>();
    const read = f.store.pendingActions.bind(f.store);
    f.store.pendingActions = async (q) => (reading.resolve(), await gate.promise, read(shape(q)));
    const poll = f.beginCheckin(agentId, { agent_policy_id: 'p1', policy_revision_idx: 1 }, 60_000);
    await reading.promise;
    const pushed = dispatchedThrough(f, older!._seq_no! + 1);
    const [live] = await f.createActions([{ type: 'CANCEL', agents: [agentId], data: { target_id: 'x' } }]);
    await pushed;
    gate.resolve();
    return { older, live, r: await (await poll).result };
  }

  test('a pending action still being read when a live one arrives is answered with it, in sequence order', async () => {
    f = await InProcessFleet.start();
    const a = await f.enroll();
    // The read of pending actions is slow; a new action is pushed live meanwhile.
    const { older, live, r } = await pendingReadRacingLive(a.id, (q) => q);
    expect(JSON.parse(r.actionsJson!).map((x: { id: string }) => x.id)).toEqual([older!._source.action_id, live!._source.action_id]);
    expect(r.ackToken).toBe(live!._id);
    expect(await f.checkin(a.id, { ack_token: r.ackToken, agent_policy_id: 'p1', policy_revision_idx: 1 })).toEqual({ ack_token: live!._id });
  });

  test('an action both read as pending and pushed live (the dispatcher moves its checkpoint before it pushes) goes out once', async () => {
    f = await InProcessFleet.start();
    const a = await f.enroll();
    // The checkpoint as it stands once the live action's batch is in: the read finds that action too.
    const { older, live, r } = await pendingReadRacingLive(a.id, (q) => ({ ...q, checkpoint: Number.MAX_SAFE_INTEGER }));
    expect(JSON.parse(r.actionsJson!).map((x: { id: string }) => x.id)).toEqual([older!._source.action_id, live!._source.action_id]);
    expect(r.ackToken).toBe(live!._id);
  });

  test('a live action whose secrets cannot be read holds back later live actions from that poll: the next check-in gets all, in order', async () => {
    f = await InProcessFleet.start();
    const a = await f.enroll();
    const secret = await f.store.createSecret('tok');
    const getSecret = f.store.getSecret.bind(f.store);
    f.store.getSecret = async (id) => {
      if (id === secret) throw new Error('secrets unavailable');
      return getSecret(id);
    };
    const held = await f.beginCheckin(a.id, { agent_policy_id: 'p1', policy_revision_idx: 1 }, 60_000);
    let answered = false;
    void held.result.then(() => (answered = true));
    const migrate = { type: 'MIGRATE', agents: [a.id], data: { target_uri: 'https://f:8220', enrollment_token: `$co.elastic.secret{${secret}}` },
      secret_references: [{ id: secret }] };
    // The unreadable action and a plain one in one write, then another in a later batch.
    let pushed = dispatchedThrough(f, f.fleet.dispatcher.checkpoint + 2);
    const hits = await f.createActions([migrate, { type: 'SETTINGS', agents: [a.id], data: { log_level: 'debug' } }]);
    await pushed;
    pushed = dispatchedThrough(f, hits[1]!._seq_no! + 1);
    hits.push(...await f.createActions([{ type: 'CANCEL', agents: [a.id], data: { target_id: 'x' } }]));
    await pushed;
    expect(answered).toBe(false);
    held.cancel();
    expect(await held.result).toEqual({ ackToken: '' });

    f.store.getSecret = getSecret;
    const next = await f.checkin(a.id, { agent_policy_id: 'p1', policy_revision_idx: 1 });
    expect(next.actions!.map((x) => x.type)).toEqual(['MIGRATE', 'SETTINGS', 'CANCEL']);
    expect(next.actions![0]!.data.enrollment_token).toBe('tok');
    expect(next.ack_token).toBe(hits[2]!._id);
    // The agent's next poll is pushed to again.
    const again = await f.beginCheckin(a.id, { ack_token: next.ack_token, agent_policy_id: 'p1', policy_revision_idx: 1 }, 60_000);
    const [later] = await f.createActions([{ type: 'SETTINGS', agents: [a.id], data: { log_level: 'info' } }]);
    expect((await again.result).ackToken).toBe(later!._id);
  });
  test('a poll whose pending read stays full of actions agents are never sent, page after page, gets no live push; its token moves past those read', async () => {
    f = await InProcessFleet.start();
    const a = await f.enroll();
    // Past the agent's position, so its check-in reads pending actions.
    let pushed = dispatchedThrough(f, f.fleet.dispatcher.checkpoint + 1);
    await f.createActions([{ type: 'SETTINGS', agents: ['someone-else'], data: { log_level: 'info' } }]);
    await pushed;
    // Every page full (100) of actions no agent is sent: more may be pending beyond the pages read.
    const read = f.store.pendingActions.bind(f.store);
    const pages: number[] = [];
    f.store.pendingActions = async (q) => (pages.push(q.afterSeqNo), Array.from({ length: q.limit }, (_, i) => ({
      _id: `odd-${q.afterSeqNo + 1 + i}`, _seq_no: q.afterSeqNo + 1 + i, agentIndex: 0, agentCount: 1,
      _source: { action_id: `odd-${q.afterSeqNo + 1 + i}`, type: 'NOT_FOR_AGENTS', agents: [a.id] },
    }) as never));
    const held = await f.beginCheckin(a.id, { agent_policy_id: 'p1', policy_revision_idx: 1 }, 60_000);
    let answered = false;
    void held.result.then(() => (answered = true));
    pushed = dispatchedThrough(f, f.fleet.dispatcher.checkpoint + 1);
    const [live] = await f.createActions([{ type: 'SETTINGS', agents: [a.id], data: { log_level: 'debug' } }]);
    await pushed;
    // Pushed live, its ack token would have moved the agent past whatever the pages left unread.
    expect(answered).toBe(false);
    held.cancel();
    // Ten pages, each from the last action of the one before; the answer's token is the last action read.
    expect(pages).toEqual(Array.from({ length: 10 }, (_, i) => pages[0]! + 100 * i));
    expect(await held.result).toEqual({ ackToken: `odd-${pages[0]! + 1000}` });
    f.store.pendingActions = read;
    const next = await f.checkin(a.id, { agent_policy_id: 'p1', policy_revision_idx: 1 });
    expect(next.ack_token).toBe(live!._id);
  });

  test('pending actions are answered before a newer policy, as upstream (so a policy that cannot be built cannot hold back an UNENROLL)', async () => {
    f = await InProcessFleet.start();
    const a = await f.enroll();
    await f.putPolicy(esPolicy('p1'));
    const [unenroll] = await f.createActions([{ type: 'UNENROLL', agents: [a.id] }]);
    // Old: the newer revision answered the poll at once and the pending UNENROLL was never read.
    const r = await f.checkin(a.id, { agent_policy_id: 'p1', policy_revision_idx: 1 });
    expect(r.actions!.map((x) => x.type)).toEqual(['UNENROLL']);
    expect(r.ack_token).toBe(unenroll!._id);
    // With none pending, the same agent's next poll gets the policy.
    const next = await f.checkin(a.id, { agent_policy_id: 'p1', policy_revision_idx: 1, ack_token: unenroll!._id } as never);
    expect(next.actions!.map((x) => x.type)).toEqual(['POLICY_CHANGE']);
  });

  test('a full page of actions agents are never sent (UPDATE_TAGS) does not hide the action behind it: the check-in reads on and delivers it', async () => {
    f = await InProcessFleet.start();
    const a = await f.enroll();
    const tags = await f.createActions(Array.from({ length: 100 }, () => ({ type: 'UPDATE_TAGS', agents: [a.id] })));
    const [settings] = await f.createActions([{ type: 'SETTINGS', agents: [a.id], data: { log_level: 'debug' } }]);
    // Old: the page of 100 left nothing to send and held back live pushes; the agent never got the SETTINGS.
    const r = await f.checkin(a.id, { agent_policy_id: 'p1', policy_revision_idx: 1 });
    expect(r.actions!.map((x) => x.id)).toEqual([settings!._source.action_id]);
    expect(r.ack_token).toBe(settings!._id);
    expect(tags).toHaveLength(100);
  });

  test('with only actions agents are never sent pending, a new action is pushed live, and a poll that times out moves its token past them', async () => {
    f = await InProcessFleet.start();
    const a = await f.enroll();
    const tags = await f.createActions(Array.from({ length: 100 }, () => ({ type: 'UPDATE_TAGS', agents: [a.id] })));
    const held = await f.beginCheckin(a.id, { agent_policy_id: 'p1', policy_revision_idx: 1 }, 60_000);
    const [settings] = await f.createActions([{ type: 'SETTINGS', agents: [a.id], data: { log_level: 'debug' } }]);
    const r = await held.result;
    expect(JSON.parse(r.actionsJson!).map((x: { id: string }) => x.id)).toEqual([settings!._source.action_id]);
    expect(r.ackToken).toBe(settings!._id);

    const b = await f.enroll();
    const more = await f.createActions(Array.from({ length: 150 }, () => ({ type: 'FORCE_UNENROLL', agents: [b.id] })));
    const first = await f.checkin(b.id, { agent_policy_id: 'p1', policy_revision_idx: 1 });
    expect(first).toEqual({ ack_token: more[149]!._id });
    // The echoed token starts the next read past them: nothing is read again.
    const reads: PendingActionQuery[] = [];
    const read = f.store.pendingActions.bind(f.store);
    f.store.pendingActions = (q) => (reads.push(q), read(q));
    expect(await f.checkin(b.id, { ack_token: first.ack_token, agent_policy_id: 'p1', policy_revision_idx: 1 })).toEqual({ ack_token: first.ack_token });
    expect(reads.every((q) => q.afterSeqNo >= more[149]!._seq_no!)).toBe(true);
    expect(tags).toHaveLength(100);
  });

  test('secret_references fill inline placeholders in data, pending or live; the references are not sent', async () => {
    f = await InProcessFleet.start();
    const a = await f.enroll();
    const s1 = await f.store.createSecret('hunter2');
    const s2 = await f.store.createSecret('tok');
    const data = {
      target_uri: 'https://fleet:8220', enrollment_token: `$co.elastic.secret{${s2}}`,
      settings: { proxy: `u:$co.elastic.secret{${s1}}@$co.elastic.secret{${s1}}`, missing: '$co.elastic.secret{nope}',
        secrets: { x: { id: s1 } } },
    };
    const refs = [{ id: s1 }, { id: s2 }, { id: 'nope' }];
    await f.createActions([{ type: 'MIGRATE', agents: [a.id], data, secret_references: refs }]);
    const pending = (await f.checkin(a.id, { agent_policy_id: 'p1', policy_revision_idx: 1 })).actions!;
    const expected = {
      target_uri: 'https://fleet:8220', enrollment_token: 'tok',
      // Inline only: a path-form `secrets` object is left as it is, as upstream does for actions.
      settings: { proxy: 'u:hunter2@hunter2', missing: '$co.elastic.secret{nope}', secrets: { x: { id: s1 } } },
    };
    expect(pending.map((x) => x.data)).toEqual([expected]);
    expect(pending[0]).not.toHaveProperty('secret_references');


    const b = await f.enroll();
    const held = await f.beginCheckin(b.id, { agent_policy_id: 'p1', policy_revision_idx: 1 }, 60_000);
    const [hit] = await f.createActions([{ type: 'MIGRATE', agents: [b.id], data, secret_references: refs }]);
    const live = JSON.parse((await held.result).actionsJson!);
    expect(live.map((x: any) => x.data)).toEqual([expected]);
    expect(live[0]).not.toHaveProperty('secret_references');
    // The stored action keeps its placeholders.
    expect((hit!._source.data as any).enrollment_token).toBe(`$co.elastic.secret{${s2}}`);
  });

  test('with ignore_checkin_policy_id the reported revision is ignored: the stored one decides', async () => {
    f = await InProcessFleet.start(esPolicy('p1'), { feature_flags: { ignore_checkin_policy_id: true } });
    const a = await f.enroll();
    expect(policyAction(await f.checkin(a.id, { agent_policy_id: 'p1', policy_revision_idx: 1 })).id).toBe('policy:p1:1');
    await f.fleet.bookkeeper.flush();
    expect((await f.agent(a.id))._source.policy_revision_idx).toBeUndefined();
  });

  test('expired actions are collected once cleanup_after_expired_interval has passed on the clock', async () => {
    f = await InProcessFleet.start(esPolicy('p1'), { gc: { cleanup_after_expired_interval: '24h' } });
    const [hit] = await f.createActions([{ type: 'SETTINGS', agents: ['x'], expiration: new Date(T0 + HOUR).toISOString() }]);
    f.clock.advance(24 * HOUR);
    await f.fleet.collectExpiredActions();
    expect(await f.store.findAction(hit!._source.action_id)).toBeDefined();
    f.clock.advance(HOUR);
    await f.fleet.collectExpiredActions();
    expect(await f.store.findAction(hit!._source.action_id)).toBeUndefined();
  });
});

describe('check-in: the poll deadline', () => {
  test('the deadline runs from the start of the check-in: set-up stuck on the store is answered as a timed-out poll; its late results answer nothing', async () => {
    f = await InProcessFleet.start();
    const a = await f.enroll();
    const stuck = deferred<number | undefined>();
    f.store.actionSeqNo = () => stuck.promise;
    const agent = await f.agent(a.id);
    const o = pollOutcome();
    fakeTimers();
    try {
      const begun = f.fleet.checkins.begin(agent, VERSION, { status: 'degraded', message: 'slow', ack_token: 'tok-1',
        agent_policy_id: 'p1', policy_revision_idx: 1 } as CheckinRequest, 60_000, o);
      await jest.advanceTimersByTimeAsync(59_000);
      expect(o.answers).toEqual([]);
      await jest.advanceTimersByTimeAsync(1_000);
      expect(o.answers).toEqual([{ ackToken: 'tok-1' }]);
      expect(f.fleet.checkins.heldCount).toBe(0);
      // The store answers late: what the agent reported is recorded, and the poll is not held again.
      stuck.resolve(undefined);
      await begun;
      expect(f.fleet.checkins.heldCount).toBe(0);
      expect(f.fleet.policies.waiting()).toBe(0);
      expect(o.answers).toHaveLength(1);
    } finally {
      jest.useRealTimers();
    }
    await f.fleet.bookkeeper.flush();
    expect((await f.agent(a.id))._source).toMatchObject({ last_checkin_status: 'degraded', last_checkin_message: 'slow' });
  });

  test('a POLICY_CHANGE waiting for policy_limit is let go at the deadline or the client\'s close: answered without the policy, no key minted', async () => {
    f = await startWith(pacedStore(), { limits: { policy_limit: { interval: '1h', burst: 1 } } });
    const [a, b, c] = [await f.enroll(), await f.enroll(), await f.enroll()];
    // The one token goes to the first agent.
    policyAction(await f.checkin(a.id, { agent_policy_id: 'p1', policy_revision_idx: 0 }));
    const answers: Record<string, unknown> = {};
    fakeTimers();
    try {
      const late = await f.beginCheckin(b.id, { agent_policy_id: 'p1', policy_revision_idx: 0 }, 60_000);
      const gone = await f.beginCheckin(c.id, { agent_policy_id: 'p1', policy_revision_idx: 0 }, 60_000);
      void late.result.then((r) => (answers['late'] = r));
      void gone.result.then((r) => (answers['gone'] = r));
      gone.cancel();
      await until(() => 'gone' in answers);
      expect(answers).toEqual({ gone: { ackToken: '' } });
      await jest.advanceTimersByTimeAsync(59_000);
      expect(answers['late']).toBeUndefined();
      await jest.advanceTimersByTimeAsync(1_000);
      await until(() => 'late' in answers);
      expect(answers['late']).toEqual({ ackToken: '' });
    } finally {
      jest.useRealTimers();
    }
    expect(f.fleet.checkins.heldCount).toBe(0);
    for (const x of [b, c]) expect((await f.agent(x.id))._source.outputs).toBeUndefined();
  });
});

describe('acks', () => {
  test('an ack of policy:X:N records revision N; lower revisions and other policies do not', async () => {
    f = await InProcessFleet.start();
    await f.putPolicy(esPolicy('p1'));
    await f.putPolicy(esPolicy('p1'));
    const a = await f.enroll();
    const r = await f.fleet.acks.ack(await f.agent(a.id), [{ action_id: 'policy:p1:2' }, { action_id: 'policy:other:9' }] as never);
    expect(r).toEqual([{ kind: 'ok' }, { kind: 'ok' }]);
    expect((await f.agent(a.id))._source.policy_revision_idx).toBe(2);
    await f.fleet.acks.ack(await f.agent(a.id), [{ action_id: 'policy:p1:1' }, { action_id: 'policy:p1:3:1', error: 'failed' }] as never);
    expect((await f.agent(a.id))._source.policy_revision_idx).toBe(2);
    await f.fleet.acks.ack(await f.agent(a.id), [{ action_id: 'policy:p1:3:1' }] as never);
    expect((await f.agent(a.id))._source.policy_revision_idx).toBe(3);
  });

  test('an agent moved to another policy after its ack was authenticated keeps its revision: the store checks the policy as it writes', async () => {
    f = await InProcessFleet.start();
    await f.putPolicy(esPolicy('p1'));
    await f.putPolicy(esPolicy('p2'));
    const a = await f.enroll();
    const asAuthenticated = await f.agent(a.id);
    expect(asAuthenticated._source.policy_id).toBe('p1');
    await f.store.updateAgent({ id: a.id, doc: { policy_id: 'p2', policy_revision_idx: 0 } });
    // Not by reading the agent again (a window of its own between that read and the write).
    const reads: string[] = [];
    const getAgent = f.store.getAgent.bind(f.store);
    f.store.getAgent = (id) => (reads.push(id), getAgent(id));
    expect(await f.fleet.acks.ack(asAuthenticated, [{ action_id: 'policy:p1:1' }] as never)).toEqual([{ kind: 'ok' }]);
    expect(reads).toEqual([]);
    expect((await f.agent(a.id))._source).toMatchObject({ policy_id: 'p2', policy_revision_idx: 0 });
    await f.fleet.acks.ack(await f.agent(a.id), [{ action_id: 'policy:p2:1' }] as never);
    expect((await f.agent(a.id))._source).toMatchObject({ policy_id: 'p2', policy_revision_idx: 1 });
  });

  test('a policy ack removes default_api_key_history where the agent has one, and asks nothing more of the store otherwise', async () => {
    f = await InProcessFleet.start();
    await f.putPolicy(esPolicy('p1'));
    const [old, current] = [await f.enroll(), await f.enroll()];
    await f.store.updateAgent({ id: old.id, doc: { default_api_key_history: [{ id: 'k0', retired_at: '2020-01-01T00:00:00Z' }] } });
    const updates: unknown[] = [];
    const update = f.store.updateAgent.bind(f.store);
    f.store.updateAgent = (u) => (updates.push(u), update(u));
    // No action results to store: in a cluster worker even an empty call is a round trip to the store owner.
    const resultWrites: unknown[] = [];
    const createResults = f.store.createActionResults.bind(f.store);
    f.store.createActionResults = (r) => (resultWrites.push(r), createResults(r));
    for (const a of [old, current]) await f.fleet.acks.ack(await f.agent(a.id), [{ action_id: 'policy:p1:1' }] as never);
    expect(resultWrites).toEqual([]);
    expect(updates).toEqual([
      { id: old.id, doc: { policy_revision_idx: 1, updated_at: expect.any(String) }, whilePolicyId: 'p1', unset: ['default_api_key_history'] },
      { id: current.id, doc: { policy_revision_idx: 1, updated_at: expect.any(String) }, whilePolicyId: 'p1' },
    ]);
    expect((await f.agent(old.id))._source.default_api_key_history).toBeUndefined();
  });

  test('an action ack stores one result per agent; unknown actions and foreign agent ids are item errors', async () => {
    f = await InProcessFleet.start();
    const a = await f.enroll();
    const [hit] = await f.createActions([{ type: 'REQUEST_DIAGNOSTICS', agents: [a.id], namespaces: ['ns1'] }]);
    const id = hit!._source.action_id;
    const r = await f.fleet.acks.ack(await f.agent(a.id), [
      { action_id: id, data: { upload_id: 'u-1' }, timestamp: '2030-01-01T00:00:01.5Z' },
      { action_id: 'no-such-action' },
      { action_id: id, agent_id: 'someone-else' },
    ] as never);
    expect(r).toEqual([{ kind: 'ok' }, { kind: 'unknownAction' }, { kind: 'wrongAgent' }]);
    const results = await f.store.listActionResults(id);
    expect(results).toEqual([{ _id: `${id}:${a.id}`, _source: expect.objectContaining({
      action_id: id, agent_id: a.id, namespaces: ['ns1'], data: { upload_id: 'u-1' }, '@timestamp': '2030-01-01T00:00:01.5Z',
    }) }]);
  });

  test('an UNENROLL ack makes the agent inactive and invalidates its access and output keys', async () => {
    f = await InProcessFleet.start();
    const a = await f.enroll();
    const key = policyAction(await f.checkin(a.id)).data.policy.outputs.default.api_key as string;
    const [outId, outSecret] = key.split(':');
    expect(await f.store.checkApiKey(outId!, outSecret!)).toBe('valid');
    const [hit] = await f.createActions([{ type: 'UNENROLL', agents: [a.id] }]);
    expect(await f.fleet.acks.ack(await f.agent(a.id), [{ action_id: hit!._source.action_id }] as never)).toEqual([{ kind: 'ok' }]);
    expect((await f.agent(a.id))._source).toMatchObject({ active: false, unenrolled_at: expect.any(String) });
    expect(await f.store.checkApiKey(a.accessKeyId, a.accessKey)).toBe('invalid');
    expect(await f.store.checkApiKey(outId!, outSecret!)).toBe('invalid');
  });

  test('an UNENROLL ack that reports an error leaves the agent active', async () => {
    f = await InProcessFleet.start();
    const a = await f.enroll();
    const [hit] = await f.createActions([{ type: 'UNENROLL', agents: [a.id] }]);
    await f.fleet.acks.ack(await f.agent(a.id), [{ action_id: hit!._source.action_id, error: 'refused' }] as never);
    expect((await f.agent(a.id))._source.active).toBe(true);
    expect(await f.store.checkApiKey(a.accessKeyId, a.accessKey)).toBe('valid');
  });

  test('an UNENROLL ack whose key invalidation fails still makes the agent inactive; a failed write fails that item only, keys intact', async () => {
    f = await InProcessFleet.start();
    const [a, b] = [await f.enroll(), await f.enroll()];
    policyAction(await f.checkin(a.id));
    const [hit] = await f.createActions([{ type: 'UNENROLL', agents: [a.id, b.id] }]);
    const invalidate = f.store.invalidateApiKeys.bind(f.store);
    f.store.invalidateApiKeys = async () => {
      throw new Error('cluster unavailable');
    };
    expect(await f.fleet.acks.ack(await f.agent(a.id), [{ action_id: hit!._source.action_id }] as never)).toEqual([{ kind: 'ok' }]);
    expect((await f.agent(a.id))._source).toMatchObject({ active: false, unenrolled_at: expect.any(String) });

    f.store.invalidateApiKeys = invalidate;
    const update = f.store.updateAgent.bind(f.store);
    f.store.updateAgent = async (u) => {
      if ((u.doc as { active?: boolean }).active === false) throw new Error('write refused');
      return update(u);
    };
    const r = await f.fleet.acks.ack(await f.agent(b.id), [{ action_id: hit!._source.action_id }, { action_id: 'policy:p1:1' }] as never);
    expect(r).toEqual([{ kind: 'failed', error: expect.objectContaining({ message: 'write refused' }) }, { kind: 'ok' }]);
    // Not half done: the agent can still authenticate and send its ack again.
    expect((await f.agent(b.id))._source.active).toBe(true);
    expect(await f.store.checkApiKey(b.accessKeyId, b.accessKey)).toBe('valid');
  });
});

describe('output keys', () => {
  const roles = (names: string[]): RoleMap => ({ writer: { indices: [{ names, privileges: ['create_doc'] }] } });

  test('a key is minted once per Elasticsearch output and reused by later revisions; other outputs get none', async () => {
    f = await InProcessFleet.start(esPolicy('p1', {
      outputs: { default: { type: 'elasticsearch', hosts: ['h:9200'] }, ls: { type: 'logstash', hosts: ['l:5044'] } },
    }));
    const a = await f.enroll();
    const first = policyAction(await f.checkin(a.id)).data.policy.outputs;
    expect(first.ls).toEqual({ type: 'logstash', hosts: ['l:5044'] });
    const doc = (await f.agent(a.id))._source;
    expect(Object.keys(doc.outputs!)).toEqual(['default']);
    const out = doc.outputs!['default']!;
    expect(first.default.api_key).toMatch(new RegExp(`^${out.api_key_id}:.+`));
    expect(out.api_key).toMatch(/^\$co\.elastic\.secret\{.+\}$/);
    expect(out).toMatchObject({ type: 'elasticsearch', to_retire_api_key_ids: [] });

    await f.putPolicy(esPolicy('p1', { outputs: { default: { type: 'elasticsearch', hosts: ['h2:9200'] } } }));
    const second = policyAction(await f.checkin(a.id, { agent_policy_id: 'p1', policy_revision_idx: 1 })).data.policy.outputs;
    expect(second.default.api_key).toBe(first.default.api_key);
    expect((await f.agent(a.id))._source.outputs!['default']!.api_key_id).toBe(out.api_key_id);
  });

  test('on the embedded store a first check-in mints its keys, their secrets and the agent update in one write', async () => {
    f = await InProcessFleet.start(esPolicy('p1', {
      outputs: { default: { type: 'elasticsearch', hosts: ['h:9200'] }, other: { type: 'elasticsearch', hosts: ['o:9200'] } },
    }));
    const a = await f.enroll();
    const calls: string[] = [];
    for (const m of ['createApiKey', 'createSecret', 'updateAgent', 'createOutputKeys'] as const) {
      const real = (f.store[m] as (...args: unknown[]) => Promise<unknown>).bind(f.store);
      jest.spyOn(f.store, m).mockImplementation(((...args: unknown[]) => {
        calls.push(m);
        return real(...args);
      }) as never);
    }
    const outputs = policyAction(await f.checkin(a.id)).data.policy.outputs;
    expect(calls).toEqual(['createOutputKeys']);
    const doc = (await f.agent(a.id))._source.outputs!;
    for (const name of ['default', 'other']) {
      const out = doc[name]!;
      expect(Object.keys(out)).toEqual(['api_key', 'api_key_id', 'permissions_hash', 'to_retire_api_key_ids', 'type']);
      expect(out).toMatchObject({ type: 'elasticsearch', to_retire_api_key_ids: [] });
      const [id, key] = (outputs[name].api_key as string).split(':');
      expect(id).toBe(out.api_key_id);
      expect(await f.store.checkApiKey(id!, key!)).toBe('valid');
      expect(await f.store.getSecret(/^\$co\.elastic\.secret\{(.+)\}$/.exec(out.api_key)![1]!)).toBe(outputs[name].api_key);
    }
  });

  test('a new output\'s key and the retirement of a removed output\'s key are one write; the removed output is unset', async () => {
    f = await InProcessFleet.start();
    const a = await f.enroll();
    policyAction(await f.checkin(a.id));
    const old = (await f.agent(a.id))._source.outputs!['default']!;
    await f.putPolicy(esPolicy('p1', { outputs: { renamed: { type: 'elasticsearch', hosts: ['h:9200'] } } }));
    const next = policyAction(await f.checkin(a.id, { agent_policy_id: 'p1', policy_revision_idx: 1 }));
    const outputs = (await f.agent(a.id))._source.outputs!;
    expect(Object.keys(outputs)).toEqual(['renamed']);
    expect(next.data.policy.outputs.renamed.api_key).toMatch(new RegExp(`^${outputs['renamed']!.api_key_id}:`));
    expect(outputs['renamed']!.to_retire_api_key_ids).toEqual([{ id: old.api_key_id, retired_at: expect.any(String), output: 'default' }]);
  });

  test('changed permissions update the same key, keeping old roles as -rdstale until the policy is acked', async () => {
    f = await InProcessFleet.start(esPolicy('p1', { output_permissions: { default: roles(['logs-a-*']) } }));
    const a = await f.enroll();
    const key = policyAction(await f.checkin(a.id)).data.policy.outputs.default.api_key as string;
    const keyId = key.split(':')[0]!;
    expect(await f.store.getApiKeyRoles(keyId)).toEqual(roles(['logs-a-*']));

    await f.putPolicy(esPolicy('p1', { output_permissions: { default: roles(['logs-b-*']) } }));
    const next = policyAction(await f.checkin(a.id, { agent_policy_id: 'p1', policy_revision_idx: 1 }));
    expect(next.data.policy.outputs.default.api_key).toBe(key);
    expect(await f.store.getApiKeyRoles(keyId)).toEqual({ ...roles(['logs-b-*']), 'writer-0-rdstale': roles(['logs-a-*'])['writer'] });
    expect((await f.agent(a.id))._source.outputs!['default']!.permissions_hash).toBe(permissionsHash(roles(['logs-b-*'])));

    await f.fleet.acks.ack(await f.agent(a.id), [{ action_id: 'policy:p1:2' }] as never);
    expect(await f.store.getApiKeyRoles(keyId)).toEqual(roles(['logs-b-*']));
  });

  test('a policy ack invalidates the keys the agent retired, not its current one', async () => {
    f = await InProcessFleet.start();
    const a = await f.enroll();
    const old = (policyAction(await f.checkin(a.id)).data.policy.outputs.default.api_key as string).split(':');
    await f.store.updateAgent({ id: a.id, doc: { outputs: { default: { api_key: '' } } } });
    const cur = (policyAction(await f.checkin(a.id, { agent_policy_id: 'p1', policy_revision_idx: 1 })).data.policy.outputs.default.api_key as string).split(':');
    expect(await f.store.checkApiKey(old[0]!, old[1]!)).toBe('valid');
    await f.putPolicy(esPolicy('p1'));
    await f.fleet.acks.ack(await f.agent(a.id), [{ action_id: 'policy:p1:2' }] as never);
    expect(await f.store.checkApiKey(old[0]!, old[1]!)).toBe('invalid');
    expect(await f.store.checkApiKey(cur[0]!, cur[1]!)).toBe('valid');
  });

  test('keys minted one by one are invalidated, their secrets deleted, when the pass fails before recording them', async () => {
    f = await startWith(pacedStore(), { limits: { policy_limit: { interval: '0s' } } }, esPolicy('p1', {
      outputs: { default: { type: 'elasticsearch', hosts: ['h:9200'] }, other: { type: 'elasticsearch', hosts: ['o:9200'] } },
    }));
    const a = await f.enroll();
    const minted: { id: string; key: string }[] = [];
    const secrets: string[] = [];
    const createApiKey = f.store.createApiKey.bind(f.store);
    f.store.createApiKey = async (r) => {
      const k = await createApiKey(r);
      minted.push(k);
      return k;
    };
    const createSecret = f.store.createSecret.bind(f.store);
    f.store.createSecret = async (v) => {
      if (secrets.length === 1) throw new Error('secrets unavailable');
      const id = await createSecret(v);
      secrets.push(id);
      return id;
    };
    await expect(f.checkin(a.id)).rejects.toThrow('secrets unavailable');
    expect(minted).toHaveLength(2);
    for (const k of minted) expect(await f.store.checkApiKey(k.id, k.key)).toBe('invalid');
    expect(await f.store.getSecret(secrets[0]!)).toBeUndefined();
    expect((await f.agent(a.id))._source.outputs).toBeUndefined();
  });
});

describe('enrollment', () => {
  test('a replacing enroll whose old key cannot be invalidated still succeeds, on the new key', async () => {
    f = await InProcessFleet.start(esPolicy('p1'), { pbkdf2: { iterations: 1000 } });
    const enroll = () => f.fleet.enrollment.enroll({ policyId: 'p1', namespaces: [] }, VERSION,
      { type: 'PERMANENT', id: 'agent-r', replace_token: 'swap', metadata: { local: {} } } as never);
    const first = await enroll();
    f.store.invalidateApiKeys = async () => {
      throw new Error('cluster unavailable');
    };
    const second = await enroll();
    expect(second.access_api_key_id).not.toBe(first.access_api_key_id);
    expect((await f.agent('agent-r'))._source.access_api_key_id).toBe(second.access_api_key_id);
    const [id, key] = Buffer.from(second.access_api_key, 'base64').toString().split(':');
    expect(await f.store.checkApiKey(id!, key!)).toBe('valid');
  });
});

describe('policy monitor', () => {
  test('an unknown policy id is asked of the store once per window, by reads and by waiting polls alike', async () => {
    const store = new SqliteStore(':memory:');
    let now = T0;
    const m = new PolicyMonitor(store, pino({ level: 'silent' }), 1000, () => now);
    const asked: string[] = [];
    const latestPolicy = store.latestPolicy.bind(store);
    store.latestPolicy = (id) => (asked.push(id), latestPolicy(id));
    try {
      expect(await m.latest('nope')).toBeUndefined();
      expect(await m.latest('nope')).toBeUndefined();
      const sub = { agentId: 'a', policyId: 'nope', revisionIdx: 0, deliver: () => undefined };
      m.subscribe(sub);
      m.unsubscribe(sub);
      expect(asked).toEqual(['nope']);
      now += 5_000;
      expect(await m.latest('nope')).toBeUndefined();
      expect(asked).toEqual(['nope', 'nope']);
    } finally {
      await store.close();
    }
  });

  test('a policy created after its id was missed reaches the polls waiting for it', async () => {
    f = await InProcessFleet.start();
    const a = await f.enroll('p2');
    expect(await f.fleet.policies.latest('p2')).toBeUndefined();
    const held = await f.beginCheckin(a.id, { agent_policy_id: 'p2', policy_revision_idx: 0 }, 60_000);
    await f.putPolicy(esPolicy('p2'));
    const r = await held.result;
    expect(r.policy && JSON.parse(r.policy.template.render(r.policy.values))).toMatchObject({ id: 'policy:p2:1', agent_id: a.id });
  });
});

describe('policy parsing', () => {
  const parse = (data: Partial<PolicyData>, secrets: Record<string, string> = {}): ParsedPolicy => {
    const hit: Hit<PolicyDoc> = { _id: 'x', _source: { '@timestamp': '2030-01-01T00:00:00Z', policy_id: 'p', revision_idx: 3, coordinator_idx: 1, default_fleet_server: false, data: { id: 'p', revision: 3, outputs: {}, ...data } as PolicyData } };
    return new ParsedPolicy(hit, (id) => secrets[id]);
  };
  const render = (p: ParsedPolicy, keys: Record<string, string> = {}) => JSON.parse(p.template.render(p.values('agent-1', keys)));
  const perms = { default: { r: { cluster: ['monitor'] } } };

  test('a policy without outputs, an Elasticsearch output without permissions, or an unknown output type cannot be sent', () => {
    expect(parse({}).error).toBe('processPolicy: output section not found');
    expect(parse({ outputs: { default: { type: 'elasticsearch' } } }).error).toBe('output permission sections not found');
    expect(parse({ outputs: { x: { type: 'carrier-pigeon' } } }).error).toBe('unknown output type: carrier-pigeon');
    expect(parse({ outputs: { default: { type: 'elasticsearch' } }, output_permissions: perms }).error).toBeUndefined();
  });

  test('the action carries the agent id and each output key; unknown data keys are dropped', () => {
    const p = parse({ outputs: { default: { type: 'elasticsearch', hosts: ['h'] }, k: { type: 'kafka' } }, output_permissions: perms, inputs: [{ id: 'i' }], junk: 1 } as never);
    expect(p.actionId).toBe('policy:p:3');
    expect(p.esOutputs.map((o) => o.name)).toEqual(['default']);
    expect(render(p, { default: 'kid:ksecret' })).toEqual({
      id: 'policy:p:3', agent_id: 'agent-1', type: 'POLICY_CHANGE', created_at: '2030-01-01T00:00:00Z', input_type: '',
      data: { policy: {
        id: 'p', revision: 3, inputs: [{ id: 'i' }], output_permissions: perms,
        outputs: { default: { type: 'elasticsearch', hosts: ['h'], api_key: 'kid:ksecret' }, k: { type: 'kafka' } },
      } },
    });
  });

  test('remote_elasticsearch goes out as elasticsearch without its service token; its connection is kept for minting keys', () => {
    const p = parse({ outputs: { r: { type: 'remote_elasticsearch', hosts: ['https://remote:9200'], service_token: 'st' } }, output_permissions: { r: perms.default } });
    expect(p.esOutputs[0]!.remote).toEqual({ hosts: ['https://remote:9200'], service_token: 'st' });
    expect(render(p, { r: 'a:b' }).data.policy.outputs.r).toEqual({ type: 'elasticsearch', hosts: ['https://remote:9200'], api_key: 'a:b' });
  });

  test('permissions_hash is the SHA-256 of Go JSON: keys sorted at every level, <>& escaped, trailing newline', () => {
    const a: RoleMap = { z: { indices: [{ names: ['<x>&'], privileges: ['read'] }] }, a: { cluster: ['monitor'] } };
    const b: RoleMap = { a: { cluster: ['monitor'] }, z: { indices: [{ privileges: ['read'], names: ['<x>&'] }] } };
    const go = '{"a":{"cluster":["monitor"]},"z":{"indices":[{"names":["\\u003cx\\u003e\\u0026"],"privileges":["read"]}]}}\n';
    expect(permissionsHash(a)).toBe(createHash('sha256').update(go).digest('hex'));
    expect(permissionsHash(b)).toBe(permissionsHash(a));
  });

  test('inline secrets are resolved and their paths listed; a key written in the policy is kept; OTel exporters get base64 keys', () => {
    const p = parse({
      outputs: {
        default: { type: 'elasticsearch', password: 'pw=$co.elastic.secret{s1}' },
        fixed: { type: 'elasticsearch', api_key: 'given:key' },
      },
      output_permissions: { default: perms.default, fixed: perms.default },
      inputs: [{ streams: [{ token: '$co.elastic.secret{s2}' }] }],
      exporters: { 'elasticsearch/default': { endpoint: 'h' } },
      secret_references: [{ id: 's1' }, { id: 's2' }],
    } as never, { s1: 'one', s2: 'two' });
    expect(p.esOutputs.map((o) => o.name)).toEqual(['default']);
    const policy = render(p, { default: 'id:key' }).data.policy;
    expect(policy.outputs.default).toEqual({ type: 'elasticsearch', password: 'pw=one', api_key: 'id:key' });
    expect(policy.outputs.fixed.api_key).toBe('given:key');
    expect(policy.inputs[0].streams[0].token).toBe('two');
    expect(policy.secret_paths).toEqual(['inputs.0.streams.0.token', 'outputs.default.password']);
    expect(policy.exporters['elasticsearch/default'].api_key).toBe(Buffer.from('id:key').toString('base64'));
    expect(policy.secret_references).toBeUndefined();
  });
});
