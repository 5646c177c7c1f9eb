// The OpAMP service's memory of Collectors, in process with a fake store: pushes are registered only for
// connections still open (a late answer cannot take a reconnected Collector's place), and what is
// remembered per instance between messages is bounded by what it weighs, not only by count.
import type { Logger } from 'pino';
import type { Bookkeeper, CheckinRecord } from '../../src/fleet/bookkeeping';
import { OpampService, type OpampMessage, type Push } from '../../src/fleet/opamp';
import type { ParsedPolicy } from '../../src/fleet/parsed-policy';
import type { AgentDoc, Hit } from '../../src/store/documents';
import type { Store } from '../../src/store/port';
import { uuidBytes } from '../../src/util/uuid';

const ID = '0190a0a0-0000-7000-8000-000000000001';
const enrollment = { policyId: 'p', namespaces: [] };
const policy = { policyId: 'p', opamp: { body: 'a: 1', hash: Buffer.alloc(32, 9), hashHex: '09'.repeat(32) } } as unknown as ParsedPolicy;
const noop = (): void => undefined;
const log = { debug: noop, info: noop, warn: noop, error: noop } as unknown as Logger;

function msg(id: string, seq: number, extra: Partial<OpampMessage> = {}): OpampMessage {
  return { instanceUid: uuidBytes(id)!, sequenceNum: seq, capabilities: ['ReportsStatus', 'AcceptsRemoteConfig'], requestInstanceUid: false, disconnect: false, ...extra };
}

interface Harness {
  service: OpampService;
  records: CheckinRecord[];
  /** last_checkin refreshes: [agent id, status, message, sequence_num]. */
  touches: [string, string, string, number | undefined][];
  /** Agent lookups waiting, when `hold` is on. */
  waiting: (() => void)[];
  hold: boolean;
}

function harness(): Harness {
  const h: Harness = { service: undefined as unknown as OpampService, records: [], touches: [], waiting: [], hold: false };
  const found = (id: string): Hit<AgentDoc> => ({ _id: id, _source: { type: 'OPAMP', policy_id: 'p', active: true } as unknown as AgentDoc });
  const store = {
    getAgent: (id: string) => h.hold ? new Promise<Hit<AgentDoc>>((r) => h.waiting.push(() => r(found(id)))) : Promise.resolve(found(id)),
  } as unknown as Store;
  const bookkeeper = {
    enqueue: (_id: string, rec: CheckinRecord) => h.records.push(rec),
    touch: (id: string, status: string, message: string, also: { sequenceNum?: number }) => h.touches.push([id, status, message, also.sequenceNum]),
  } as unknown as Bookkeeper;
  h.service = new OpampService(store, bookkeeper, async () => policy, log);
  return h;
}

const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

test('a connection that closed while its message was handled is not registered; the reconnected one keeps the pushes', async () => {
  const h = harness();
  const old = jest.fn<void, Parameters<Push>>();
  const fresh = jest.fn<void, Parameters<Push>>();
  h.hold = true;
  const late = h.service.handle(enrollment, msg(ID, 1), old);
  await flush();
  // The Collector's connection dropped and it reconnected before the store answered.
  h.service.detach(old);
  h.hold = false;
  await h.service.handle(enrollment, msg(ID, 1), fresh);
  h.waiting.shift()!();
  await late;
  h.service.onRevision(policy);
  // Old: the late answer registered the closed connection over the new one.
  expect(old).not.toHaveBeenCalled();
  expect(fresh).toHaveBeenCalledTimes(1);
  // The closed connection's detach does not take the id its successor now holds.
  h.service.detach(old);
  h.service.onRevision(policy);
  expect(fresh).toHaveBeenCalledTimes(2);
  h.service.detach(fresh);
  h.service.onRevision(policy);
  expect(fresh).toHaveBeenCalledTimes(2);
});

test('a connection cycling instance ids is pushed to under its latest few only', async () => {
  const h = harness();
  const push = jest.fn<void, Parameters<Push>>();
  const ids = Array.from({ length: 20 }, (_, i) => `0190a0a0-0000-7000-8000-${String(i).padStart(12, '0')}`);
  for (const id of ids) await h.service.handle(enrollment, msg(id, 1), push);
  h.service.onRevision(policy);
  expect(push.mock.calls.length).toBeLessThanOrEqual(8);
  expect(push.mock.calls.map(([uid]) => Buffer.from(uid).toString('hex'))).toContain(Buffer.from(uuidBytes(ids[19]!)!).toString('hex'));
});

test('what is remembered per instance is bounded by weight: a flood of health reports with long errors forgets the oldest', async () => {
  const h = harness();
  // Cut to 1 KiB (see opamp-service.test.ts), yet 30,000 of them weigh more than the cache may hold.
  const long = 'x'.repeat(2048);
  const health = { healthy: false, startTimeUnixNano: 0, lastError: long, status: 'StatusPermanentError', statusTimeUnixNano: 0, components: {} };
  const ids = Array.from({ length: 30_000 }, (_, i) => `0190a0a0-0000-7000-8000-${String(i).padStart(12, '0')}`);
  for (const id of ids) await h.service.handle(enrollment, msg(id, 1, { health }));
  // The last one is remembered: its next message is in sequence, and its status carries over without health.
  const recent = await h.service.handle(enrollment, msg(ids.at(-1)!, 2));
  expect(recent.reportFullState).toBe(false);
  expect(h.records.at(-1)).toMatchObject({ status: 'error', message: 'x'.repeat(1024) });
  // The first was forgotten (old: kept, with its report, up to 100,000 of them): it is asked for a full report.
  const first = await h.service.handle(enrollment, msg(ids[0]!, 2));
  expect(first.reportFullState).toBe(true);
});

test('Collectors held on WebSockets are refreshed like held polls, with their last health; closed and HTTP ones are not', async () => {
  const h = harness();
  const ws = jest.fn<void, Parameters<Push>>();
  const ID2 = '0190a0a0-0000-7000-8000-000000000002';
  const ID3 = '0190a0a0-0000-7000-8000-000000000003';
  const health = { healthy: false, startTimeUnixNano: 0, lastError: 'exporter failing', status: 'StatusRecoverableError', statusTimeUnixNano: 0, components: {} };
  await h.service.handle(enrollment, msg(ID, 1, { health }), ws);
  // Over HTTP: its polls are its check-ins.
  await h.service.handle(enrollment, msg(ID2, 1));
  const closed = jest.fn<void, Parameters<Push>>();
  await h.service.handle(enrollment, msg(ID3, 1), closed);
  h.service.detach(closed);
  h.service.refreshSessions();
  // Old: nothing refreshed them, so a connected Collector without heartbeats went offline in Kibana.
  // With its sequence number, which the refresh writes (old: 0, so its next message looked like a gap).
  expect(h.touches).toEqual([[ID, 'error', 'exporter failing', 1]]);
  h.service.detach(ws);
  h.service.refreshSessions();
  expect(h.touches).toHaveLength(1);
});
