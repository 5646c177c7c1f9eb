// Upgrades in-process: the legacy UPGRADE ack's effect on the agent (upstream's handleUpgrade), and
// check-ins carrying upgrade_details, which must not cost a store lookup each.
import pino from 'pino';
import { buildConfig } from '../../src/config/config';
import type { ActionDoc } from '../../src/store/documents';
import { EsStore } from '../../src/store/elasticsearch/store';
import { EsDouble } from '../support/es-double/server';
import { InProcessFleet } from '../support/in-process-fleet';

let f: InProcessFleet;
afterEach(async () => { await f?.stop(); });

const ON_P1 = { agent_policy_id: 'p1', policy_revision_idx: 1 };

/** An agent with an UPGRADE action under way (upgrade_started_at set, as Kibana writes it). */
async function upgrading() {
  f = await InProcessFleet.start();
  const a = await f.enroll();
  const [hit] = await f.createActions([{ type: 'UPGRADE', agents: [a.id], data: { version: '9.6.1' } }]);
  await f.store.updateAgent({ id: a.id, doc: { upgrade_started_at: '2030-01-01T00:00:00Z', upgrade_attempts: ['2030-01-01T00:00:00Z'] } });
  return { a, actionId: hit!._source.action_id };
}

describe('UPGRADE acks (agents before 8.11)', () => {
  test('an error with retry: true marks the upgrade retrying and keeps upgrade_started_at', async () => {
    const { a, actionId } = await upgrading();
    expect(await f.fleet.acks.ack(await f.agent(a.id), [{ action_id: actionId, error: 'download failed', payload: { retry: true, retry_attempt: 1 } }] as never)).toEqual([{ kind: 'ok' }]);
    expect((await f.agent(a.id))._source).toMatchObject({ upgrade_status: 'retrying', upgrade_started_at: '2030-01-01T00:00:00Z' });
  });

  test('an error without payload, or with retry: false, marks the upgrade failed', async () => {
    const { a, actionId } = await upgrading();
    await f.fleet.acks.ack(await f.agent(a.id), [{ action_id: actionId, error: 'failed' }] as never);
    expect((await f.agent(a.id))._source).toMatchObject({ upgrade_status: 'failed', upgrade_started_at: null });
    await f.store.updateAgent({ id: a.id, doc: { upgrade_started_at: '2030-01-01T00:00:00Z', upgrade_status: 'retrying' } });
    await f.fleet.acks.ack(await f.agent(a.id), [{ action_id: actionId, error: 'failed', payload: { retry: false, retry_attempt: -1 } }] as never);
    expect((await f.agent(a.id))._source).toMatchObject({ upgrade_status: 'failed', upgrade_started_at: null });
  });

  test('success clears upgrade_started_at and upgrade_status, records upgraded_at, and (without upgrade_details) upgrade_attempts', async () => {
    const { a, actionId } = await upgrading();
    await f.store.updateAgent({ id: a.id, doc: { upgrade_status: 'retrying' } });
    await f.fleet.acks.ack(await f.agent(a.id), [{ action_id: actionId }] as never);
    expect((await f.agent(a.id))._source).toMatchObject({ upgrade_status: null, upgrade_started_at: null, upgraded_at: expect.any(String), upgrade_attempts: null });
  });

  test('the agent is not updated when its result could not be stored', async () => {
    const { a, actionId } = await upgrading();
    f.store.createActionResults = async () => {
      throw new Error('store down');
    };
    const r = await f.fleet.acks.ack(await f.agent(a.id), [{ action_id: actionId }] as never);
    expect(r).toEqual([{ kind: 'failed', error: expect.objectContaining({ message: 'store down' }) }]);
    const doc = (await f.agent(a.id))._source;
    expect(doc.upgrade_started_at).toBe('2030-01-01T00:00:00Z');
    expect(doc.upgraded_at).toBeUndefined();
  });
});

describe('upgrade_details at check-in', () => {
  const details = (actionId: string) => ({ target_version: '9.6.1', action_id: actionId, state: 'UPG_DOWNLOADING', metadata: { download_percent: 12, download_rate: '1.5MBps' } });

  test('acks and upgrade details share one action cache (upstream\'s): an action acknowledged is not looked up again for its details', async () => {
    const { a, actionId } = await upgrading();
    const lookups: string[] = [];
    const findAction = f.store.findAction.bind(f.store);
    f.store.findAction = (id) => (lookups.push(id), findAction(id));
    await f.fleet.acks.ack(await f.agent(a.id), [{ action_id: actionId, error: 'download failed', payload: { retry: true } }] as never);
    await f.checkin(a.id, { ...ON_P1, upgrade_details: details(actionId) } as never);
    // Old: one lookup by the ack's cache, another by the check-in's own.
    expect(lookups).toEqual([actionId]);
    expect((await f.agent(a.id))._source.upgrade_details).toMatchObject({ state: 'UPG_DOWNLOADING' });
  });

  test('three check-ins with the same details: one action lookup, one write', async () => {
    const { a, actionId } = await upgrading();
    const lookups: string[] = [];
    const findAction = f.store.findAction.bind(f.store);
    f.store.findAction = (id) => (lookups.push(id), findAction(id));
    const writes: unknown[] = [];
    const updateAgent = f.store.updateAgent.bind(f.store);
    f.store.updateAgent = (u) => (writes.push(u), updateAgent(u));
    for (let i = 0; i < 3; i++) await f.checkin(a.id, { ...ON_P1, upgrade_details: details(actionId) } as never);
    expect(lookups).toEqual([actionId]);
    expect(writes).toHaveLength(1);
    expect((await f.agent(a.id))._source.upgrade_details).toEqual({ ...details(actionId), metadata: { download_percent: 12, download_rate: 1_500_000 } });
    // A new state is written; the action is known already.
    await f.checkin(a.id, { ...ON_P1, upgrade_details: { ...details(actionId), state: 'UPG_EXTRACTING', metadata: {} } } as never);
    expect(lookups).toEqual([actionId]);
    expect((await f.agent(a.id))._source.upgrade_details).toMatchObject({ state: 'UPG_EXTRACTING' });
  });

  test('details for an action that does not exist are not stored, even invalid ones, and are not looked up on every check-in', async () => {
    f = await InProcessFleet.start();
    const a = await f.enroll();
    const lookups: string[] = [];
    const findAction = f.store.findAction.bind(f.store);
    f.store.findAction = (id) => (lookups.push(id), findAction(id));
    for (let i = 0; i < 3; i++) {
      await f.checkin(a.id, { ...ON_P1, upgrade_details: { target_version: '9.6.1', action_id: 'gone', state: 'UPG_FAILED', metadata: {} } } as never);
    }
    expect(lookups).toEqual(['gone']);
    expect((await f.agent(a.id))._source.upgrade_details).toBeUndefined();
  });

  test('a check-in without details after some is a finished upgrade: details, upgrade_started_at and upgrade_status cleared', async () => {
    const { a, actionId } = await upgrading();
    await f.checkin(a.id, { ...ON_P1, upgrade_details: details(actionId) } as never);
    await f.store.updateAgent({ id: a.id, doc: { upgrade_status: 'retrying' } });
    await f.checkin(a.id, ON_P1);
    expect((await f.agent(a.id))._source).toMatchObject({ upgrade_details: null, upgrade_started_at: null, upgrade_status: null, upgraded_at: expect.any(String) });
  });
});

test('on Elasticsearch an action is looked up without its agents list, as upstream\'s FindAction', async () => {
  const es = await new EsDouble({ refreshIntervalMs: 0 }).start();
  const config = buildConfig({ output: { elasticsearch: { hosts: [es.url], service_token: es.serviceToken } } });
  const store = new EsStore(config.elasticsearch!, { bulk: config.server.bulk, monitor: config.monitor }, pino({ level: 'silent' }));
  try {
    await store.ready();
    const agents = Array.from({ length: 5000 }, (_, i) => `agent-${i}`);
    await store.createActions([{ action_id: 'big-upgrade', type: 'UPGRADE', '@timestamp': '2030-01-01T00:00:00Z', expiration: '2030-02-01T00:00:00Z', agents, data: { version: '9.6.1' } } as ActionDoc]);
    const hit = await store.findAction('big-upgrade');
    expect(hit?._source).toMatchObject({ action_id: 'big-upgrade', type: 'UPGRADE' });
    expect(hit?._source).not.toHaveProperty('agents');
    // The admin CLI's `actions show` asks for it.
    expect((await store.findAction('big-upgrade', { withAgents: true }))?._source.agents).toHaveLength(5000);
  } finally {
    await store.close();
    await es.stop();
  }
});
