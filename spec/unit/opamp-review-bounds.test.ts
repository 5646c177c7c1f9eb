// What one OpAMP message may cost before its bounds apply: the objects protobufjs makes decoding it,
// the yaml library's time on an effective configuration, and the tags a description's `tags` attribute
// splits into.
import type { Logger } from 'pino';
import type { Bookkeeper, CheckinRecord } from '../../src/fleet/bookkeeping';
import { OpampService, type OpampMessage } from '../../src/fleet/opamp';
import { effectiveConfigDocument, enrollmentDocument } from '../../src/fleet/opamp-document';
import { decodeAgentToServer } from '../../src/opamp/codec';
import type { AgentDoc, Hit } from '../../src/store/documents';
import type { Store } from '../../src/store/port';
import { uuidBytes } from '../../src/util/uuid';
import { agentToServer, CAP } from '../support/collector';
import { PbWriter } from '../support/protowire';

const UID = Buffer.alloc(16, 1);

/** An AgentToServer whose health has `n` component entries that name a component and nothing else. */
function keyOnlyComponents(n: number): Buffer {
  const health = new PbWriter().bool(1, true);
  for (let i = 0; i < n; i++) health.message(6, new PbWriter().string(1, i.toString(36)));
  return new PbWriter().bytes(1, UID).uint(2, 1).message(5, health).finish();
}

describe('decoding: the objects a message makes are bounded before protobufjs makes them', () => {
  test('a message of 150,000 tiny health entries is refused (a decode error: 400, or error_response on WebSocket)', () => {
    const bytes = keyOnlyComponents(150_000);
    // ~1 MB on the wire: 4 MiB of them made 500,000 objects (190 MB) and held the event loop 1.7 s.
    expect(bytes.length).toBeLessThan(1.2 * 1024 * 1024);
    // Old: decoded whole (then cut to 10,000 components).
    expect(() => decodeAgentToServer(bytes)).toThrow(/more than 100000 objects/);
  });

  test('fields the server ignores count too: 150,000 available_components entries', () => {
    const comps = new PbWriter();
    for (let i = 0; i < 150_000; i++) comps.message(1, new PbWriter().string(1, i.toString(36)));
    const bytes = new PbWriter().bytes(1, UID).uint(2, 1).message(14, comps).finish();
    expect(() => decodeAgentToServer(bytes)).toThrow(/more than 100000 objects/);
  });

  test('nor can they hide behind what protobufjs skips or nests: a long unknown varint, 60 levels of components', () => {
    const entries = (w: PbWriter): PbWriter => {
      for (let i = 0; i < 150_000; i++) w.message(6, new PbWriter().string(1, i.toString(36)));
      return w;
    };
    // Field 99 as a 20-byte varint (protobufjs skips an unknown varint of any length), then the entries.
    const unknown = Buffer.from([0x98, 0x06, ...Array(19).fill(0x80), 0x01]);
    const health = Buffer.concat([unknown, entries(new PbWriter()).finish()]);
    expect(() => decodeAgentToServer(Buffer.concat([new PbWriter().bytes(1, UID).finish(), new PbWriter().bytes(5, health).finish()]))).toThrow(/more than 100000 objects/);
    // Components nested 60 deep (a map entry is not a level of its own for protobufjs), the entries at the bottom.
    let h = entries(new PbWriter());
    for (let i = 0; i < 60; i++) h = new PbWriter().message(6, new PbWriter().string(1, 'c').message(2, h));
    expect(() => decodeAgentToServer(new PbWriter().bytes(1, UID).message(5, h).finish())).toThrow(/more than 100000 objects/);
  });

  test('a large real report still decodes: 15,000 components and 15,000 attributes keep their 10,000 each', () => {
    const leaf = { healthy: true, status: 'StatusOK' };
    const components = Object.fromEntries(Array.from({ length: 15_000 }, (_, i) => [`c${i}`, leaf]));
    const identifying = Object.fromEntries(Array.from({ length: 15_000 }, (_, i) => [`k${i}`, 'v']));
    const m = decodeAgentToServer(agentToServer(UID, 1, CAP.ReportsStatus, { identifying, health: { healthy: true, components } }));
    expect(Object.keys(m.health!.components)).toHaveLength(10_000);
    expect(Object.keys(m.description!.identifying)).toHaveLength(10_000);
  });

  test('malformed bytes are still protobufjs\'s to refuse (the count stops where they start)', () => {
    // A length past the end; a varint over 10 bytes; wire type 7.
    expect(() => decodeAgentToServer(Buffer.from([0x2a, 0x10, 0x01]))).toThrow();
    expect(() => decodeAgentToServer(Buffer.from([0x10, ...Array(11).fill(0xff), 0x01]))).toThrow();
    expect(() => decodeAgentToServer(Buffer.from([0x0f, 0x00]))).toThrow();
    // Nesting past protobufjs's limit (100): refused, not a stack overflow.
    let v = new PbWriter().string(1, 'x');
    for (let i = 0; i < 150; i++) v = new PbWriter().message(5, new PbWriter().message(1, v));
    const bytes = new PbWriter().bytes(1, UID).message(3, new PbWriter().message(1, new PbWriter().string(1, 'k').message(2, v))).finish();
    expect(() => decodeAgentToServer(bytes)).toThrow(/depth/);
  });
});

describe('the effective configuration', () => {
  test('a mapping of 25,000 keys parses in linear time (the yaml library compared every key with every other)', () => {
    const yaml = Array.from({ length: 25_000 }, (_, i) => `k${i}: 1`).join('\n');
    const started = Date.now();
    const doc = effectiveConfigDocument(yaml)!;
    // Old: ~12 s (3 s for 12,500 keys; 1 MiB of them, about 5 minutes).
    expect(Date.now() - started).toBeLessThan(3000);
    expect(Object.keys(doc)).toHaveLength(25_000);
  });

  test('a repeated key: its last value (old: not stored at all, the key check threw)', () => {
    expect(effectiveConfigDocument('a: 1\nb: 2\na: 3\n')).toEqual({ a: 3, b: 2 });
  });

  test('over 256 KiB it is not stored (parsing ~0.5 MiB a second held the event loop ~2 s at the old 1 MiB)', async () => {
    const records: CheckinRecord[] = [];
    const noop = (): void => undefined;
    const store = {
      getAgent: async (id: string): Promise<Hit<AgentDoc>> => ({ _id: id, _source: { type: 'OPAMP', policy_id: 'p', active: true, sequence_num: 0 } as unknown as AgentDoc }),
    } as unknown as Store;
    const bookkeeper = { enqueue: (_id: string, r: CheckinRecord) => records.push(r) } as unknown as Bookkeeper;
    const service = new OpampService(store, bookkeeper, async () => undefined, { debug: noop, info: noop, warn: noop, error: noop } as unknown as Logger);
    const uid = uuidBytes('0190a0a0-0000-7000-8000-000000000001')!;
    const m = (seq: number, body: string): OpampMessage => ({
      instanceUid: uid, sequenceNum: seq, capabilities: ['ReportsStatus'], requestInstanceUid: false, disconnect: false,
      effectiveConfig: { '': { body: Buffer.from(body), contentType: 'text/yaml' } },
    });
    const list = (bytes: number): string => `a: [${'1,'.repeat(bytes / 2)}1]`;
    await service.handle({ policyId: 'p', namespaces: [] } as never, m(1, list(300 * 1024)));
    expect(records.at(-1)!.effectiveConfig).toBeUndefined();
    await service.handle({ policyId: 'p', namespaces: [] } as never, m(2, list(200 * 1024)));
    expect((records.at(-1)!.effectiveConfig as { a: number[] }).a).toHaveLength(100 * 1024 + 1);
  });
});

test("a description's tags attribute gives at most 100 tags, each cut to 1 KiB", () => {
  const many = Array.from({ length: 200_000 }, (_, i) => `t${i}`).join(',');
  const doc = enrollmentDocument('id', { policyId: 'p', namespaces: [] }, { identifying: { 'service.name': 'otelcol' }, nonIdentifying: { tags: many } }, 'now');
  // Old: 200,001 tags in the document.
  expect(doc.tags).toHaveLength(100);
  expect(doc.tags!.slice(0, 3)).toEqual(['otelcol', 't0', 't1']);
  const long = enrollmentDocument('id', { policyId: 'p', namespaces: [] }, { identifying: {}, nonIdentifying: { tags: `a, ${'x'.repeat(5000)} ,a` } }, 'now');
  expect(long.tags).toEqual(['a', 'x'.repeat(1024)]);
});
