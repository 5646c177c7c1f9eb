// A Collector's description after enrolment (a new version, host name, attributes) reaches its stored
// document, on each local store, once per change and at enroll_limit's rate; its status and health
// reach the document through the check-in batch.
import pino from 'pino';
import { Bookkeeper } from '../../src/fleet/bookkeeping';
import type { EnrollmentRecord } from '../../src/fleet/enroll';
import { OpampService, type OpampMessage } from '../../src/fleet/opamp';
import type { OpampDescription, OpampHealth } from '../../src/fleet/opamp-document';
import type { AgentDoc } from '../../src/store/documents';
import type { DocUpdate, Store } from '../../src/store/port';
import { uuidBytes, uuidText } from '../../src/util/uuid';
import { LOCAL_STORE_KINDS, storeFixture } from '../support/stores';

const enrollment = { policyId: 'p', namespaces: [] } as unknown as EnrollmentRecord;
const log = pino({ level: 'silent' });

const v1: OpampDescription = {
  identifying: { 'service.name': 'otelcol-contrib', 'service.version': '0.120.0', 'service.instance.id': 'x' },
  nonIdentifying: { 'host.name': 'old-host', 'os.type': 'linux', 'host.arch': 'amd64', tags: 'blue' },
};
const v2: OpampDescription = {
  identifying: { 'service.name': 'otelcol-contrib', 'service.version': '0.130.0', 'service.instance.id': 'x' },
  // host.arch dropped, host.name changed, a tag added.
  nonIdentifying: { 'host.name': 'new-host', 'os.type': 'linux', tags: 'blue,green' },
};

function msg(uid: Uint8Array, seq: number, extra: Partial<OpampMessage> = {}): OpampMessage {
  return { instanceUid: uid, sequenceNum: seq, capabilities: ['ReportsStatus', 'ReportsHealth'], requestInstanceUid: false, disconnect: false, ...extra };
}

interface Bed {
  service: OpampService;
  bookkeeper: Bookkeeper;
  updates: DocUpdate<AgentDoc>[];
  slots: { left: number };
  failUpdates: { on: boolean };
}

function bed(store: Store): Bed {
  const updates: DocUpdate<AgentDoc>[] = [];
  const failUpdates = { on: false };
  // The store as the service sees it, its single-document updates counted (and failed on demand).
  const counted = new Proxy(store, {
    get: (t, key) => {
      if (key === 'updateAgent') {
        return async (u: DocUpdate<AgentDoc>) => {
          updates.push(u);
          if (failUpdates.on) throw new Error('store down');
          return t.updateAgent(u);
        };
      }
      const v = (t as unknown as Record<string | symbol, unknown>)[key];
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
    },
  });
  const slots = { left: 1000 };
  const bookkeeper = new Bookkeeper(store, 10_000, log);
  const service = new OpampService(counted, bookkeeper, async () => undefined, log, undefined, 0, { tryTake: () => slots.left-- > 0 });
  return { service, bookkeeper, updates, slots, failUpdates };
}

describe.each(LOCAL_STORE_KINDS)('%s', (_name, make) => {
  const store = storeFixture(make);
  let n = 0;
  /** A Collector enrolled with description v1; its id. */
  async function enrolled(b: Bed): Promise<{ id: string; uid: Uint8Array }> {
    const id = `0190a0a0-0000-7000-8000-${String(++n).padStart(12, '0')}`;
    const uid = uuidBytes(id)!;
    const r = await b.service.handle(enrollment, msg(uid, 0, { description: v1 }));
    expect(r.error).toBeUndefined();
    return { id, uid };
  }

  test('a changed description is recorded: version, host, attributes replaced whole, tags added to', async () => {
    const b = bed(store);
    const { id, uid } = await enrolled(b);
    expect((await store.getAgent(id))!._source).toMatchObject({ agent: { version: '0.120.0' }, tags: ['otelcol-contrib', 'blue'] });
    const reply = await b.service.handle(enrollment, msg(uid, 1, { description: v2 }));
    expect(reply.error).toBeUndefined();
    expect(reply.reportFullState).toBe(false);
    const doc = (await store.getAgent(id))!._source;
    // Old: still 0.120.0 on old-host (the description was read at enrolment only).
    expect(doc.agent).toEqual({ id, version: '0.130.0', type: 'otelcol-contrib' });
    expect(doc.local_metadata).toEqual({
      elastic: { agent: { id, version: '0.130.0', name: 'otelcol-contrib' } }, host: { hostname: 'new-host', name: 'new-host' }, os: { platform: 'linux' },
    });
    expect(doc['identifying_attributes']).toEqual(v2.identifying);
    expect(doc['non_identifying_attributes']).toEqual({ 'host.name': 'new-host', 'os.type': 'linux' });
    expect(doc.tags).toEqual(['otelcol-contrib', 'blue', 'green']);
    expect(doc.type).toBe('OPAMP');
    expect(doc.policy_id).toBe('p');
  });

  test('the same description again (a full state report, a poll) writes nothing', async () => {
    const b = bed(store);
    const { uid } = await enrolled(b);
    await b.service.handle(enrollment, msg(uid, 1, { description: v1 }));
    await b.service.handle(enrollment, msg(uid, 2));
    expect(b.updates).toEqual([]);
    await b.service.handle(enrollment, msg(uid, 3, { description: v2 }));
    await b.service.handle(enrollment, msg(uid, 4, { description: v2 }));
    expect(b.updates).toHaveLength(1);
  });

  test('past enroll_limit, or when the store fails, the description is asked for again (ReportFullState) and the status still recorded', async () => {
    const b = bed(store);
    const { id, uid } = await enrolled(b);
    b.slots.left = 0;
    const paced = await b.service.handle(enrollment, msg(uid, 1, { description: v2 }));
    expect(paced.error).toBeUndefined();
    expect(paced.reportFullState).toBe(true);
    expect(b.updates).toEqual([]);
    b.slots.left = 1;
    b.failUpdates.on = true;
    const failed = await b.service.handle(enrollment, msg(uid, 2, { description: v2 }));
    expect(failed.error).toBeUndefined();
    expect(failed.reportFullState).toBe(true);
    b.failUpdates.on = false;
    b.slots.left = 1;
    const again = await b.service.handle(enrollment, msg(uid, 3, { description: v2 }));
    expect(again.reportFullState).toBe(false);
    expect((await store.getAgent(id))!._source.agent?.version).toBe('0.130.0');
    await b.bookkeeper.flush();
    expect((await store.getAgent(id))!._source).toMatchObject({ last_checkin_status: 'online', sequence_num: 3 });
  });

  test("a Collector's health reaches its document: status, message, the health tree, capabilities", async () => {
    const b = bed(store);
    const { id, uid } = await enrolled(b);
    const ok: OpampHealth = { healthy: true, startTimeUnixNano: 0, lastError: '', status: 'StatusOK', statusTimeUnixNano: 0, components: {} };
    const health: OpampHealth = {
      healthy: true, startTimeUnixNano: 0, lastError: '', status: 'StatusRecoverableError', statusTimeUnixNano: 5,
      components: { 'pipeline:logs': { ...ok, healthy: false, lastError: 'export failed', status: 'StatusRecoverableError' }, 'pipeline:metrics': ok },
    };
    await b.service.handle(enrollment, msg(uid, 1, { health }));
    await b.bookkeeper.flush();
    const doc = (await store.getAgent(id))!._source as AgentDoc & Record<string, unknown>;
    expect(doc).toMatchObject({
      last_checkin_status: 'degraded', last_checkin_message: 'StatusRecoverableError', unhealthy_reason: null, sequence_num: 1,
      capabilities: ['ReportsStatus', 'ReportsHealth'],
      health: {
        healthy: true, status: 'StatusRecoverableError', status_time_unix_nano: 5,
        component_health_map: { 'pipeline:logs': { last_error: 'export failed', status: 'StatusRecoverableError' }, 'pipeline:metrics': { healthy: true, status: 'StatusOK' } },
      },
    });
    // A later poll without health keeps the status its last health gave.
    await b.service.handle(enrollment, msg(uid, 2));
    await b.bookkeeper.flush();
    expect((await store.getAgent(id))!._source).toMatchObject({ last_checkin_status: 'degraded', sequence_num: 2 });
    expect(uuidText(uid)).toBe(id);
  });
});
