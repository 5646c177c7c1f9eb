// Server behaviour the Elasticsearch double used to hide (it mapped `.fleet-agents` local_metadata and
// upgrade_details as dynamic objects, so any value was taken). With the typed objects of
// fleet-agents.json, as Elasticsearch has them, these agent requests reach a document Elasticsearch
// refuses. Each test states what the server should do and is marked `failing` until the server does it:
// when one starts to pass, jest reports it, and it becomes an ordinary test.
import pino from 'pino';
import { buildConfig } from '../../src/config/config';
import { Admin } from '../../src/fleet/admin';
import type { PollOutcome } from '../../src/fleet/checkin';
import { isFleetError } from '../../src/fleet/errors';
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

test.failing('SERVER BUG: enroll with a local_metadata field of the wrong shape is a 400, not a 500 from Elasticsearch\'s document_parsing_exception', async () => {
  // local_metadata.host.hostname is text in fleet-agents.json; local_metadata.elastic.agent.build an object.
  for (const local of [{ host: { hostname: { first: 'a' } } }, { elastic: { agent: { build: 'abc' } } }, { os: { version: ['1', { x: 1 }] } }]) {
    const err = await enroll(local).then(() => undefined, (e: unknown) => e);
    expect(isBadRequest(err)).toBe(true);
  }
});

test.failing('SERVER BUG: a check-in whose local_metadata Elasticsearch refuses still records last_checkin', async () => {
  const a = await enroll({});
  await checkin(a.id, { local_metadata: { host: { name: { x: 1 } } } });
  await fleet.bookkeeper.flush();
  expect((await bed.store.getAgent(a.id))!._source.last_checkin).toEqual(expect.any(String));
});

test.failing('SERVER BUG: upgrade_details after the download (download_rate "1.5MBps" still in metadata) is stored, not a 500', async () => {
  const a = await enroll({});
  await bed.store.createActions([{ action_id: 'up-1', type: 'UPGRADE', '@timestamp': '2030-01-01T00:00:00Z', expiration: '2030-02-01T00:00:00Z', agents: [a.id], data: { version: '9.6.1' } } as never]);
  // elastic-agent keeps the download's metadata through the later states, its rate as a human-readable string.
  await checkin(a.id, { upgrade_details: { target_version: '9.6.1', action_id: 'up-1', state: 'UPG_EXTRACTING', metadata: { download_percent: 1, download_rate: '1.5MBps' } } });
  expect((await bed.store.getAgent(a.id))!._source.upgrade_details).toMatchObject({ state: 'UPG_EXTRACTING' });
});

test.failing('SERVER BUG: upgrade_details metadata strings (failed_state, error_msg, retry_error_msg) of another type are a 400, not a 500', async () => {
  const a = await enroll({});
  await bed.store.createActions([{ action_id: 'up-2', type: 'UPGRADE', '@timestamp': '2030-01-01T00:00:00Z', expiration: '2030-02-01T00:00:00Z', agents: [a.id], data: { version: '9.6.1' } } as never]);
  for (const metadata of [{ error_msg: 'x', failed_state: { s: 1 } }, { retry_error_msg: { e: 1 } }]) {
    const state = 'failed_state' in metadata ? 'UPG_FAILED' : 'UPG_DOWNLOADING';
    const err = await checkin(a.id, { upgrade_details: { target_version: '9.6.1', action_id: 'up-2', state, metadata } }).then(() => undefined, (e: unknown) => e);
    expect(isBadRequest(err)).toBe(true);
  }
});
