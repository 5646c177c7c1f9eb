// The OpAMP service's rules for what a message may do, in process with a fake store: an enrollment token
// reports only for OpAMP agents of its own policy (and active ones), the heartbeat interval goes only to
// Collectors that do not accept connection settings, and what one message may have stored is bounded.
import type { Logger } from 'pino';
import type { Bookkeeper, CheckinRecord } from '../../src/fleet/bookkeeping';
import { OpampService, type OpampMessage, type OpampReply, type Push } from '../../src/fleet/opamp';
import type { OpampHealth } from '../../src/fleet/opamp-document';
import type { ParsedPolicy } from '../../src/fleet/parsed-policy';
import type { AgentDoc, Hit } from '../../src/store/documents';
import type { DocUpdate, Store } from '../../src/store/port';
import { uuidBytes, uuidText } from '../../src/util/uuid';

const OWN = '0190a0a0-0000-7000-8000-000000000001';
const VICTIM = '0190a0a0-0000-7000-8000-000000000002';
const ELASTIC_AGENT = '0190a0a0-0000-7000-8000-000000000003';
const NEW = '0190a0a0-0000-7000-8000-000000000004';
const enrollment = { policyId: 'p', namespaces: [] };
const rc = (policyId: string, body: string) => ({ policyId, opamp: { body, hash: Buffer.alloc(32, body.length), hashHex: Buffer.alloc(32, body.length).toString('hex') } }) as unknown as ParsedPolicy;
const policies: Record<string, ParsedPolicy> = { p: rc('p', 'mine: 1'), victim: rc('victim', 'secret: config') };

function msg(id: string, seq: number, extra: Partial<OpampMessage> = {}): OpampMessage {
  return { instanceUid: uuidBytes(id)!, sequenceNum: seq, capabilities: ['ReportsStatus', 'AcceptsRemoteConfig'], requestInstanceUid: false, disconnect: false, ...extra };
}

const opampDoc = (policyId: string, extra: Partial<AgentDoc> = {}): AgentDoc =>
  ({ type: 'OPAMP', policy_id: policyId, active: true, enrolled_at: 'then', ...extra }) as AgentDoc;

interface Harness {
  service: OpampService;
  docs: Map<string, AgentDoc>;
  records: [string, CheckinRecord][];
  created: string[];
  updated: DocUpdate<AgentDoc>[];
  policyReads: string[];
  warn: jest.Mock;
  debug: jest.Mock;
}

function harness(opts: { heartbeat?: number; pacer?: { tryTake(): boolean } } = {}): Harness {
  const h: Harness = {
    service: undefined as unknown as OpampService, docs: new Map(), records: [], created: [], updated: [], policyReads: [],
    warn: jest.fn(), debug: jest.fn(),
  };
  h.docs.set(OWN, opampDoc('p', { sequence_num: 0 } as Partial<AgentDoc>));
  h.docs.set(VICTIM, opampDoc('victim', { sequence_num: 0 } as Partial<AgentDoc>));
  h.docs.set(ELASTIC_AGENT, { type: 'PERMANENT', policy_id: 'p', active: true, enrolled_at: 'then' } as AgentDoc);
  const store = {
    getAgent: async (id: string): Promise<Hit<AgentDoc> | undefined> => {
      const d = h.docs.get(id);
      return d ? { _id: id, _source: d } : undefined;
    },
    createAgent: async (id: string, doc: AgentDoc): Promise<boolean> => {
      if (h.docs.has(id)) return false;
      h.created.push(id);
      h.docs.set(id, doc);
      return true;
    },
    updateAgent: async (u: DocUpdate<AgentDoc>): Promise<void> => {
      h.updated.push(u);
    },
  } as unknown as Store;
  const bookkeeper = { enqueue: (id: string, rec: CheckinRecord) => h.records.push([id, rec]) } as unknown as Bookkeeper;
  const noop = (): void => undefined;
  const log = { debug: h.debug, info: noop, warn: h.warn, error: noop } as unknown as Logger;
  const latest = async (policyId: string): Promise<ParsedPolicy | undefined> => {
    h.policyReads.push(policyId);
    return policies[policyId];
  };
  h.service = new OpampService(store, bookkeeper, latest, log, undefined, opts.heartbeat ?? 30, opts.pacer);
  return h;
}

function expectRefused(reply: OpampReply): void {
  expect(reply.error?.type).toBe('BadRequest');
  expect(Object.keys(reply)).toEqual(['error']);
}

/**
 * The message named a document the token may not act for: that document is left as it is, and the
 * Collector gets a new id of its own under the token's policy (new_instance_uid), its record under it.
 */
function expectNewId(h: Harness, reply: OpampReply, named: string): string {
  expect(reply.error).toBeUndefined();
  const id = uuidText(reply.newInstanceUid!)!;
  expect(id).toMatch(/^[0-9a-f-]{36}$/);
  expect(id).not.toBe(named);
  expect(h.created).toContain(id);
  expect(h.docs.get(id)).toMatchObject({ type: 'OPAMP', policy_id: 'p' });
  expect(h.records.map(([r]) => r)).not.toContain(named);
  expect(h.updated.map((u) => u.id)).not.toContain(named);
  return id;
}

describe('an enrollment token acts only for OpAMP agents of its own policy', () => {
  test("another policy's Collector's id: that Collector is untouched (document, session, configuration); the sender gets an id of its own", async () => {
    const h = harness();
    const victimPush = jest.fn<void, Parameters<Push>>();
    await h.service.handle({ policyId: 'victim', namespaces: [] }, msg(VICTIM, 1), victimPush);
    h.records.length = 0;
    h.policyReads.length = 0;
    const before = { ...h.docs.get(VICTIM) };
    const sender = jest.fn<void, Parameters<Push>>();
    const health: OpampHealth = { healthy: false, startTimeUnixNano: 0, lastError: 'pwned', status: 'x', statusTimeUnixNano: 0, components: {} };
    const reply = await h.service.handle(enrollment, msg(VICTIM, 2, { health, effectiveConfig: { '': { body: Buffer.from('a: 1'), contentType: '' } } }), sender);
    // Old: the victim's status, health and configuration overwritten, its policy's opamp.config sent back,
    // and its pushes taken over by the sender's connection.
    expectNewId(h, reply, VICTIM);
    expect(h.docs.get(VICTIM)).toEqual(before);
    expect(h.policyReads).toEqual(['p']);
    expect(reply.remoteConfig?.body).not.toBe('secret: config');
    h.service.onRevision(rc('victim', 'secret: config v2'));
    expect(sender).not.toHaveBeenCalled();
    expect(victimPush).toHaveBeenCalledTimes(1);
  });

  test("an Elastic Agent's document, even of the same policy: left as it is; the sender gets an id of its own", async () => {
    const h = harness();
    const before = { ...h.docs.get(ELASTIC_AGENT) };
    expectNewId(h, await h.service.handle(enrollment, msg(ELASTIC_AGENT, 1)), ELASTIC_AGENT);
    expect(h.docs.get(ELASTIC_AGENT)).toEqual(before);
  });

  test("a document upstream's first OpAMP release wrote (no type) is a Collector's; one with an Elastic Agent's key is not", async () => {
    const h = harness();
    const legacy = '0190a0a0-0000-7000-8000-000000000005';
    h.docs.set(legacy, { policy_id: 'p', active: true, enrolled_at: 'then', sequence_num: 0 } as unknown as AgentDoc);
    const reply = await h.service.handle(enrollment, msg(legacy, 1));
    expect(reply.error).toBeUndefined();
    expect(reply.newInstanceUid).toBeUndefined();
    expect(h.records.map(([id]) => id)).toEqual([legacy]);
    h.docs.set(ELASTIC_AGENT, { policy_id: 'p', active: true, enrolled_at: 'then', access_api_key_id: 'k' } as AgentDoc);
    expectNewId(h, await h.service.handle(enrollment, msg(ELASTIC_AGENT, 1)), ELASTIC_AGENT);
  });

  test('agent_disconnect for another agent: refused, not marked disconnected, its session kept', async () => {
    const h = harness();
    const victimPush = jest.fn<void, Parameters<Push>>();
    await h.service.handle({ policyId: 'victim', namespaces: [] }, msg(VICTIM, 1), victimPush);
    h.records.length = 0;
    expectRefused(await h.service.handle(enrollment, msg(VICTIM, 2, { disconnect: true })));
    expectRefused(await h.service.handle(enrollment, msg(ELASTIC_AGENT, 2, { disconnect: true })));
    // Old: both queued `disconnected`, and the victim's push session was dropped.
    expect(h.records).toEqual([]);
    h.service.onRevision(rc('victim', 'secret: config v2'));
    expect(victimPush).toHaveBeenCalledTimes(1);
  });

  test("RequestInstanceUid naming another agent: the old document not stamped 'reenrolled'; a new id under the token's policy", async () => {
    const h = harness();
    expectNewId(h, await h.service.handle(enrollment, msg(VICTIM, 1, { requestInstanceUid: true })), VICTIM);
    expectNewId(h, await h.service.handle(enrollment, msg(ELASTIC_AGENT, 1, { requestInstanceUid: true })), ELASTIC_AGENT);
    expect(h.updated).toEqual([]);
  });

  test('a new id is enrolled at enroll_limit\'s rate like any other', async () => {
    const h = harness({ pacer: { tryTake: () => false } });
    const reply = await h.service.handle(enrollment, msg(VICTIM, 1));
    expect(reply.error?.type).toBe('Unavailable');
    expect(h.created).toEqual([]);
  });

  test("its own Collectors still report, and get their token's policy's configuration", async () => {
    const h = harness();
    const reply = await h.service.handle(enrollment, msg(OWN, 1));
    expect(reply.error).toBeUndefined();
    expect(reply.remoteConfig?.body).toBe('mine: 1');
    expect(h.policyReads).toEqual(['p']);
    expect(h.records.map(([id]) => id)).toEqual([OWN]);
  });
});

describe('an inactive agent is not revived', () => {
  test('an unenrolled document stays as it is: a disconnect is refused, a report gets an id of its own', async () => {
    const h = harness();
    h.docs.set(OWN, opampDoc('p', { active: false, unenrolled_at: 'then' }));
    const before = { ...h.docs.get(OWN) };
    expectRefused(await h.service.handle(enrollment, msg(OWN, 1, { disconnect: true }), jest.fn()));
    for (const m of [msg(OWN, 1), msg(OWN, 1, { requestInstanceUid: true })]) expectNewId(h, await h.service.handle(enrollment, m, jest.fn()), OWN);
    // Old: checked in (status online again, the unenrolment's fields cleared) and given configuration.
    expect(h.docs.get(OWN)).toEqual(before);
  });

  test('the audit fields are cleared when audit_unenrolled_reason is set, not for unenrolled_at alone (upstream)', async () => {
    const h = harness();
    h.docs.set(OWN, opampDoc('p', { unenrolled_at: 'then' }));
    await h.service.handle(enrollment, msg(OWN, 1));
    // Old: clearAudit for unenrolled_at too.
    expect(h.records.at(-1)![1].clearAudit).toBeUndefined();
    h.docs.set(NEW, opampDoc('p', { audit_unenrolled_reason: 'uninstall' }));
    await h.service.handle(enrollment, msg(NEW, 1));
    expect(h.records.at(-1)![1].clearAudit).toBe(true);
  });
});

describe('the heartbeat interval', () => {
  const heartbeat = ['ReportsStatus', 'ReportsHeartbeat'];
  const accepting = [...heartbeat, 'AcceptsOpAMPConnectionSettings'];

  test('is never offered to a Collector that accepts OpAMP connection settings', async () => {
    const h = harness();
    const replies = [
      await h.service.handle(enrollment, msg(NEW, 0, { capabilities: accepting })),
      await h.service.handle(enrollment, msg(NEW, 1, { capabilities: accepting })),
      await h.service.handle(enrollment, msg(NEW, 5, { capabilities: accepting }), jest.fn()),
    ];
    // Old: offered at enrolment and after every full state report: the supervisor reconnects with the
    // offer's headers alone (no Authorization) and without TLS verification, in a loop.
    for (const r of replies) {
      expect(r.heartbeatIntervalSeconds).toBeUndefined();
      expect(r.capabilities).not.toContain('OffersConnectionSettings');
    }
  });

  test('is offered to one that reports heartbeats without accepting them: once, not again after a full state report; once per WebSocket', async () => {
    const h = harness();
    const first = await h.service.handle(enrollment, msg(NEW, 0, { capabilities: heartbeat }));
    // Old: never (only acceptors got it).
    expect(first.heartbeatIntervalSeconds).toBe(30);
    expect(first.capabilities).toContain('OffersConnectionSettings');
    expect((await h.service.handle(enrollment, msg(NEW, 1, { capabilities: heartbeat }))).heartbeatIntervalSeconds).toBeUndefined();
    const gap = await h.service.handle(enrollment, msg(NEW, 9, { capabilities: heartbeat }));
    expect(gap.reportFullState).toBe(true);
    expect(gap.heartbeatIntervalSeconds).toBeUndefined();
    // A WebSocket connection of the same instance: once on it.
    const ws = jest.fn<void, Parameters<Push>>();
    expect((await h.service.handle(enrollment, msg(NEW, 10, { capabilities: heartbeat }), ws)).heartbeatIntervalSeconds).toBe(30);
    expect((await h.service.handle(enrollment, msg(NEW, 11, { capabilities: heartbeat }), ws)).heartbeatIntervalSeconds).toBeUndefined();
    expect((await h.service.handle(enrollment, msg(NEW, 20, { capabilities: heartbeat }), ws)).heartbeatIntervalSeconds).toBeUndefined();
  });

  test('is not offered without ReportsHeartbeat, nor when the interval is 0', async () => {
    expect((await harness().service.handle(enrollment, msg(NEW, 0, { capabilities: ['ReportsStatus'] }))).heartbeatIntervalSeconds).toBeUndefined();
    expect((await harness({ heartbeat: 0 }).service.handle(enrollment, msg(NEW, 0, { capabilities: heartbeat }))).heartbeatIntervalSeconds).toBeUndefined();
  });
});

describe('what one message may have stored', () => {
  const big = (n: number, c = 'x'): string => c.repeat(n);

  test('status message, health strings and component names: cut at 1 KiB', async () => {
    const h = harness();
    const leaf: OpampHealth = { healthy: true, startTimeUnixNano: 0, lastError: big(5000), status: big(5000, 's'), statusTimeUnixNano: 0, components: {} };
    const health: OpampHealth = { ...leaf, healthy: false, components: { [big(5000, 'n')]: leaf } };
    await h.service.handle(enrollment, msg(OWN, 1, { health }));
    const rec = h.records.at(-1)![1];
    // Old: every byte, in the document and in the per-instance memory.
    expect(rec.message).toBe(big(1024));
    const doc = rec.health as { last_error: string; status: string; component_health_map: Record<string, { last_error: string; status: string }> };
    expect(doc.last_error).toBe(big(1024));
    expect(doc.status).toBe(big(1024, 's'));
    expect(Object.keys(doc.component_health_map)).toEqual([big(1024, 'n')]);
    expect(doc.component_health_map[big(1024, 'n')]).toMatchObject({ last_error: big(1024), status: big(1024, 's') });
  });

  test('remote_config_status: error message cut at 1 KiB; a hash over 64 bytes not stored nor believed', async () => {
    const h = harness();
    const hash = policies['p']!.opamp!.hash;
    await h.service.handle(enrollment, msg(OWN, 1, { remoteConfigStatus: { hash, status: 'FAILED', errorMessage: big(5000) } }));
    expect(h.records.at(-1)![1].remoteConfigStatus).toEqual({ status: 'FAILED', last_remote_config_hash: hash.toString('hex'), error_message: big(1024) });
    const reply = await h.service.handle(enrollment, msg(OWN, 2, { remoteConfigStatus: { hash: Buffer.alloc(65, 1), status: 'APPLIED', errorMessage: '' } }));
    // Old: stored as 130 hex characters (any length: a message's worth).
    expect(h.records.at(-1)![1].remoteConfigStatus).toBeUndefined();
    // The hash it reported before is kept: the configuration is not sent again.
    expect(reply.remoteConfig).toBeUndefined();
    expect(reply.error).toBeUndefined();
  });

  test('an effective configuration over 1 MiB is not stored, and logged at warn level once', async () => {
    const h = harness();
    const huge = { '': { body: Buffer.from(`a: "${big(1024 * 1024)}"\n`), contentType: 'text/yaml' } };
    await h.service.handle(enrollment, msg(OWN, 1, { effectiveConfig: huge }));
    await h.service.handle(enrollment, msg(OWN, 2, { effectiveConfig: huge }));
    // Old: parsed and stored.
    expect(h.records.map(([, r]) => r.effectiveConfig)).toEqual([undefined, undefined]);
    expect(h.warn).toHaveBeenCalledTimes(1);
    await h.service.handle(enrollment, msg(OWN, 3, { effectiveConfig: { '': { body: Buffer.from('a: 1'), contentType: 'text/yaml' } } }));
    expect(h.records.at(-1)![1].effectiveConfig).toEqual({ a: 1 });
  });

  test('a new instance is enrolled only when the enrollment pacer has a slot', async () => {
    let slots = 1;
    const h = harness({ pacer: { tryTake: () => slots-- > 0 } });
    expect((await h.service.handle(enrollment, msg(NEW, 0))).error).toBeUndefined();
    const other = '0190a0a0-0000-7000-8000-000000000005';
    // Old: a document written for every new id a token holder sends.
    expect((await h.service.handle(enrollment, msg(other, 0))).error?.type).toBe('Unavailable');
    expect(h.created).toEqual([NEW]);
    // Known instances are not paced.
    expect((await h.service.handle(enrollment, msg(OWN, 1))).error).toBeUndefined();
  });
});
