// Server behaviour the Elasticsearch double used to hide (it mapped `.fleet-agents` local_metadata and
// upgrade_details as dynamic objects, so any value was taken). With the typed objects of
// fleet-agents.json, as Elasticsearch has them, these agent requests reached a document Elasticsearch
// refuses (a 500, or a check-in record dropped); the server now answers them as their tests say. Also a
// policy whose output permissions Elasticsearch refuses to mint keys with.
import pino from 'pino';
import { buildConfig } from '../../src/config/config';
import { Admin, AdminError } from '../../src/fleet/admin';
import type { PollOutcome } from '../../src/fleet/checkin';
import { isFleetError } from '../../src/fleet/errors';
import { parseRate } from '../../src/fleet/upgrade-details';
import { Fleet } from '../../src/fleet/fleet';
import { esPolicy } from '../support/in-process-fleet';
import { ManualClock } from '../support/manual-clock';
import { closeEsStoreOnDouble, esStoreOnDouble } from '../support/stores';

let bed: Awaited<ReturnType<typeof esStoreOnDouble>>;
let fleet: Fleet;

beforeAll(async () => {
  bed = await esStoreOnDouble();
  await new Admin(bed.store).putPolicy(esPolicy('p1'));
  const config = buildConfig({ inputs: [{ type: 'fleet-server', server: { timeouts: { checkin_jitter: '0s' } } }] });
  fleet = new Fleet(bed.store, config, pino({ level: 'silent' }), new ManualClock(Date.parse('2030-01-01T00:00:00Z')));
  await fleet.start();
});
afterAll(async () => {
  await fleet.stop();
  await closeEsStoreOnDouble(bed);
});

const enroll = (local: unknown): ReturnType<Fleet['enrollment']['enroll']> =>
  fleet.enrollment.enroll({ policyId: 'p1', namespaces: ['default'] }, '9.6.0', { type: 'PERMANENT', metadata: { local } } as never);

async function checkin(id: string, body: Record<string, unknown>): Promise<unknown> {
  const agent = (await bed.store.getAgent(id))!;
  let settle!: PollOutcome['settle'];
  const result = new Promise((resolve, reject) => {
    settle = (err, r) => (r ? resolve(r) : reject(err));
  });
  await fleet.checkins.begin(agent, '9.6.0', { status: 'online', message: '', ...body } as never, 0, { settle });
  return result;
}

const isBadRequest = (err: unknown): boolean => isFleetError(err, 'BadRequest');

test('enroll with a local_metadata field of the wrong shape is a 400 naming the field, not a 500 from Elasticsearch\'s document_parsing_exception', async () => {
  // local_metadata.host.hostname is text in fleet-agents.json; local_metadata.elastic.agent.build an object.
  for (const [local, where] of [[{ host: { hostname: { first: 'a' } } }, 'metadata.local/host/hostname'], [{ elastic: { agent: { build: 'abc' } } }, 'metadata.local/elastic/agent/build'],
    [{ os: { version: ['1', { x: 1 }] } }, 'metadata.local/os/version/1']] as const) {
    const err = await enroll(local).then(() => undefined, (e: unknown) => e);
    // Old: the access key minted, then Elasticsearch refused the document: a 500.
    expect(isBadRequest(err)).toBe(true);
    expect((err as Error).message).toContain(where);
  }
});

test('a check-in whose local_metadata Elasticsearch refuses still records last_checkin (without that metadata)', async () => {
  const a = await enroll({ host: { name: 'h1' } });
  await checkin(a.id, { status: 'degraded', message: 'disk', local_metadata: { host: { name: { x: 1 } } } });
  await fleet.bookkeeper.flush();
  // Old: the batch dropped the whole record Elasticsearch refused: no last_checkin, the agent offline for good.
  expect((await bed.store.getAgent(a.id))!._source).toMatchObject({
    last_checkin: expect.any(String), last_checkin_status: 'degraded', last_checkin_message: 'disk', local_metadata: { host: { name: 'h1' } },
  });
});

test('upgrade_details after the download (download_rate "1.5MBps" still in metadata) are stored, the rate in bytes per second, not a 500', async () => {
  const a = await enroll({});
  await bed.store.createActions([{ action_id: 'up-1', type: 'UPGRADE', '@timestamp': '2030-01-01T00:00:00Z', expiration: '2030-02-01T00:00:00Z', agents: [a.id], data: { version: '9.6.1' } } as never]);
  // elastic-agent keeps the download's metadata through the later states, its rate as a human-readable string.
  await checkin(a.id, { upgrade_details: { target_version: '9.6.1', action_id: 'up-1', state: 'UPG_EXTRACTING', metadata: { download_percent: 1, download_rate: '1.5MBps' } } });
  expect((await bed.store.getAgent(a.id))!._source.upgrade_details).toMatchObject({ state: 'UPG_EXTRACTING', metadata: { download_percent: 1, download_rate: 1_500_000 } });
});

test('download_rate strings read as upstream reads them (a trailing "ps" cut, then go-units\' FromHumanSize)', () => {
  for (const [text, rate] of [['1.5MBps', 1_500_000], ['1.5 MBps', 1_500_000], ['2kbps', 2000], ['3KiBps', 3000], ['1.2GB', 1_200_000_000], ['1Pps', 1e15],
    ['512bps', 512], ['10.7bps', 10], ['7', 7], ['1e3Bps', 1000], ['', null], ['+Inf bps', null]] as const) {
    expect([text, parseRate(text)]).toEqual([text, rate]);
  }
  for (const text of ['fast', '-1MBps', '1.5XBps', '1.5MBx', ' 1MBps', '1MBps ', '1.5MiBs', '1e400Bps', 'MBps']) expect([text, parseRate(text)]).toEqual([text, undefined]);
  expect(parseRate(1234.5)).toBe(1234.5);
});

test('upgrade_details metadata strings (failed_state, error_msg, retry_error_msg) of another type are a 400, not a 500', async () => {
  const a = await enroll({});
  await bed.store.createActions([{ action_id: 'up-2', type: 'UPGRADE', '@timestamp': '2030-01-01T00:00:00Z', expiration: '2030-02-01T00:00:00Z', agents: [a.id], data: { version: '9.6.1' } } as never]);
  for (const metadata of [{ error_msg: 'x', failed_state: { s: 1 } }, { retry_error_msg: { e: 1 } }]) {
    const state = 'failed_state' in metadata ? 'UPG_FAILED' : 'UPG_DOWNLOADING';
    const err = await checkin(a.id, { upgrade_details: { target_version: '9.6.1', action_id: 'up-2', state, metadata } }).then(() => undefined, (e: unknown) => e);
    // Old: Elasticsearch refused the update (a string field given an object): a 500 on every check-in.
    expect(isBadRequest(err)).toBe(true);
    expect((err as Error).message).toContain(`/upgrade_details/metadata/${Object.keys(metadata).at(-1)}`);
  }
  // In a state upstream does not decode them in too: Elasticsearch refuses them whatever the state.
  const err = await checkin(a.id, { upgrade_details: { target_version: '9.6.1', action_id: 'up-2', state: 'UPG_EXTRACTING', metadata: { error_msg: ['a', { b: 1 }] } } })
    .then(() => undefined, (e: unknown) => e);
  expect(isBadRequest(err)).toBe(true);
});

test('policy put refuses output permissions naming a privilege Elasticsearch does not know (every check-in would fail minting the key)', async () => {
  const admin = new Admin(bed.store);
  const roles = (r: Record<string, unknown>) => esPolicy('perm', { output_permissions: { default: r } as never });
  for (const [bad, said] of [
    [{ w: { indices: [{ names: ['logs-*'], privileges: ['create_docs'] }] } }, 'unknown index privilege "create_docs"'],
    [{ w: { cluster: ['monitr'] } }, 'unknown cluster privilege "monitr"'],
    [{ w: { indices: [{ names: ['logs-*'] }] } }, 'needs names and privileges'],
    [{ w: 'read' }, 'must be a role descriptor'],
  ] as const) {
    // Old: accepted; Elasticsearch then refused every agent's output key (each check-in a 500).
    const err = await admin.putPolicy(roles(bad)).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(AdminError);
    expect((err as Error).message).toContain(said);
  }
  expect(await bed.store.latestPolicy('perm')).toBeUndefined();
  // Names in any case, action patterns, and a single name for a list, as Elasticsearch reads them: the key is minted.
  const ok = { w: { cluster: ['Monitor', 'cluster:monitor/main'], indices: [{ names: 'logs-*', privileges: ['CREATE_DOC', 'auto_configure', 'indices:data/write/bulk*'] }] } };
  await admin.putPolicy(roles(ok));
  await expect(bed.store.createApiKey({ name: 'perm-check', roleDescriptors: ok as never, metadata: {} })).resolves.toMatchObject({ id: expect.any(String) });
  // A privilege a later Elasticsearch knows is taken with force; a wrong shape is not.
  const later = { w: { indices: [{ names: ['logs-*'], privileges: ['read_everything_new'] }] } };
  await expect(admin.putPolicy(roles(later))).rejects.toThrow('unknown index privilege');
  await expect(admin.putPolicy(roles(later), { force: true })).resolves.toMatchObject({ _source: { policy_id: 'perm' } });
  await expect(admin.putPolicy(roles({ w: 'read' }), { force: true })).rejects.toThrow('must be a role descriptor');
});
