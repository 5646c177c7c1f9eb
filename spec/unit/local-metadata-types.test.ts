// local_metadata as `.fleet-agents` maps it (messages.ts's schema, derived from fleet-agents.json): the
// schema takes what Elasticsearch's document parser takes for each mapped field, and refuses what it
// refuses. Enroll answers a 400 naming the field; a check-in keeps its record and leaves the metadata out.
import pino from 'pino';
import { buildConfig } from '../../src/config/config';
import { Admin } from '../../src/fleet/admin';
import type { PollOutcome } from '../../src/fleet/checkin';
import { FleetError } from '../../src/fleet/errors';
import { Fleet } from '../../src/fleet/fleet';
import * as messages from '../../src/fleet/messages';
import { classify } from '../../src/http/errors';
import { mappingFor, parseDocument } from '../support/es-double/mappings';
import { esPolicy } from '../support/in-process-fleet';
import { ManualClock } from '../support/manual-clock';
import { closeEsStoreOnDouble, esStoreOnDouble } from '../support/stores';

const { localMetadataValidator } = messages;

/** `value` at `path` (dotted, under local_metadata) in an otherwise empty local_metadata. */
function at(path: string, value: unknown): Record<string, unknown> {
  const parts = path.split('.').slice(1);
  let v: unknown = value;
  for (const p of parts.reverse()) v = { [p]: v };
  return v as Record<string, unknown>;
}

const VALUES: unknown[] = ['web-1', '', 5, 1.5, true, false, 'true', 'false', 'yes', null, {}, { a: 1 }, [], ['a', 1, true], [['a'], [false, null]],
  [{ a: 1 }], ['a', { b: 1 }], [['a', {}]]];

test('every field .fleet-agents maps in local_metadata takes exactly what Elasticsearch takes', () => {
  const template = mappingFor('.fleet-agents');
  const leaves = [...template.fields.keys()].filter((p) => p.startsWith('local_metadata.') && !p.endsWith('.keyword'));
  const objects = [...template.objects].filter((p) => p.startsWith('local_metadata.'));
  expect(leaves.length).toBeGreaterThan(15);
  expect(objects.sort()).toEqual(['local_metadata.elastic', 'local_metadata.elastic.agent', 'local_metadata.elastic.agent.build', 'local_metadata.host', 'local_metadata.os']);
  for (const path of [...leaves, ...objects, 'local_metadata.host.not_mapped', 'local_metadata.labels']) {
    for (const value of VALUES) {
      // Where Elasticsearch maps an object it also takes a list of objects; the schema wants the object
      // itself (what agents send), as other code reads these objects (elastic.agent.id is rewritten).
      if (objects.includes(path) && Array.isArray(value) && value.length > 0) continue;
      const doc = { local_metadata: at(path, value) };
      const takes = parseDocument(mappingFor('.fleet-agents'), 'a', doc) === undefined;
      expect([path, value, localMetadataValidator.check(doc.local_metadata)]).toEqual([path, value, takes]);
    }
  }
});

test('a refused value is named by its path, in words', () => {
  for (const [local, said] of [
    [{ host: { hostname: { first: 'a' } } }, '/host/hostname: Expected a string, number or boolean'],
    [{ host: { ip: ['10.0.0.1', ['10.0.0.2', { v6: 'x' }]] } }, '/host/ip/1/1: Expected a string, number or boolean'],
    [{ elastic: { agent: { snapshot: 'no' } } }, '/elastic/agent/snapshot: Expected true or false'],
    [{ elastic: { agent: { build: 'abc' } } }, '/elastic/agent/build: Expected an object'],
    [{ os: 'linux' }, '/os: Expected an object'],
    ['x', '/: Expected object'],
  ] as const) {
    expect(localMetadataValidator.check(local)).toBe(false);
    expect(localMetadataValidator.explain(local)).toBe(said);
  }
  // What Elastic Agent sends.
  expect(localMetadataValidator.check({
    elastic: { agent: { build: { original: 'abc' }, id: 'x', version: '9.6.0', snapshot: false, upgradeable: true, unprivileged: false, fips: false, log_level: 'info', complete: false } },
    host: { hostname: 'web-1', name: 'web-1', architecture: 'x86_64', id: 'h', ip: ['10.0.0.1/24', 'fe80::1/64'], mac: ['00:11:22:33:44:55'] },
    os: { family: 'debian', full: 'Ubuntu 24.04', kernel: '6.8.0', name: 'Ubuntu', platform: 'ubuntu', version: '24.04' },
  })).toBe(true);
});

describe('on Elasticsearch (the double)', () => {
  let bed: Awaited<ReturnType<typeof esStoreOnDouble>>;
  let fleet: Fleet;
  const warnings: Record<string, unknown>[] = [];

  beforeAll(async () => {
    bed = await esStoreOnDouble();
    await new Admin(bed.store).putPolicy(esPolicy('p1'));
    const config = buildConfig({ inputs: [{ type: 'fleet-server', server: { timeouts: { checkin_jitter: '0s' } } }] });
    const log = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(JSON.parse(line) as Record<string, unknown>) });
    fleet = new Fleet(bed.store, config, log, new ManualClock(Date.parse('2030-01-01T00:00:00Z')));
    await fleet.start();
  });
  afterAll(async () => {
    await fleet.stop();
    await closeEsStoreOnDouble(bed);
  });

  const enroll = (local: unknown) => fleet.enrollment.enroll({ policyId: 'p1', namespaces: ['default'] }, '9.6.0', { type: 'PERMANENT', metadata: { local } } as never);

  async function checkin(id: string, body: Record<string, unknown>): Promise<void> {
    const agent = (await bed.store.getAgent(id))!;
    let settle!: PollOutcome['settle'];
    const result = new Promise((resolve, reject) => {
      settle = (err, r) => (r ? resolve(r) : reject(err));
    });
    await fleet.checkins.begin(agent, '9.6.0', { status: 'online', message: '', ...body } as never, 0, { settle });
    await result;
  }

  test('enroll: a 400 naming the field, before a key is minted', async () => {
    let minted = 0;
    const createApiKey = bed.store.createApiKey.bind(bed.store);
    bed.store.createApiKey = (req) => (minted++, createApiKey(req));
    try {
      const err = await enroll({ host: { mac: [{ a: 1 }] } }).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(FleetError);
      expect(classify(err)).toMatchObject({ status: 400, error: 'BadRequest', message: 'Bad request: unable to decode enroll request: metadata.local/host/mac/0: Expected a string, number or boolean' });
      expect(minted).toBe(0);
      // Values Elasticsearch coerces into keyword and text fields, and quoted booleans, enroll.
      const a = await enroll({ host: { name: 5, ip: [['10.0.0.1'], '10.0.0.2'] }, elastic: { agent: { snapshot: 'false', id: 'x' } } });
      expect((await bed.store.getAgent(a.id))!._source.local_metadata).toEqual({ host: { name: 5, ip: [['10.0.0.1'], '10.0.0.2'] }, elastic: { agent: { snapshot: 'false', id: a.id } } });
    } finally {
      bed.store.createApiKey = createApiKey;
    }
  });

  test('check-in: refused metadata is left out and said once; the check-in is recorded, and metadata that fits is stored', async () => {
    const a = await enroll({ host: { name: 'h1' } });
    warnings.length = 0;
    for (const message of ['first', 'second']) await checkin(a.id, { message, local_metadata: { host: { name: 'h2', mac: { a: 1 } } } });
    await fleet.bookkeeper.flush();
    // Old: the batch dropped the record Elasticsearch refused (no last_checkin, the agent offline); on the
    // embedded store the metadata was written, one Elasticsearch could not take.
    expect((await bed.store.getAgent(a.id))!._source).toMatchObject({ last_checkin: expect.any(String), last_checkin_message: 'second', local_metadata: { host: { name: 'h1' } } });
    expect(warnings).toEqual([expect.objectContaining({ 'fleet.agent.id': a.id, reason: '/local_metadata/host/mac: Expected a string, number or boolean' })]);

    await checkin(a.id, { local_metadata: { host: { name: 'h2', mac: ['00:11:22:33:44:55'] } } });
    await fleet.bookkeeper.flush();
    expect((await bed.store.getAgent(a.id))!._source.local_metadata).toEqual({ host: { name: 'h2', mac: ['00:11:22:33:44:55'] } });
  });

  test('check-in: the metadata is checked only when it differs from the stored one, not by the HTTP edge', async () => {
    const a = await enroll({ host: { name: 'h1' } });
    const check = jest.spyOn(localMetadataValidator, 'check');
    try {
      expect(messages.validators.checkin.check({ status: 'online', local_metadata: { host: { name: 'h1' } } })).toBe(true);
      await checkin(a.id, { local_metadata: { host: { name: 'h1' } } });
      expect(check).not.toHaveBeenCalled();
      await checkin(a.id, { local_metadata: { host: { name: 'h3' } } });
      expect(check).toHaveBeenCalledTimes(1);
    } finally {
      check.mockRestore();
    }
  });
});
