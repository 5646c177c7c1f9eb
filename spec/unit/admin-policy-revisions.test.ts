// `policy put` run several times at once (scripts, several operators): each must get a revision of its
// own. Each read the latest revision and wrote the next; two that read the same one stored one
// revision twice, and the policy monitor dropped the second as no newer than what agents had.
import pino from 'pino';
import { Admin } from '../../src/fleet/admin';
import { PolicyMonitor } from '../../src/fleet/policy-monitor';
import { policyRevisionId } from '../../src/store/elasticsearch/store';
import { esPolicy } from '../support/in-process-fleet';
import { LOCAL_STORE_KINDS, type StoreUnderTest } from '../support/stores';


describe.each(LOCAL_STORE_KINDS)('%s', (_name, make) => {
  let s: StoreUnderTest;
  beforeAll(async () => {
    s = await make();
    await s.store.ready();
  });
  afterAll(() => s.close());

  test('four concurrent puts of one policy get four distinct revisions, data.revision with each; the latest is the last', async () => {
    const admin = new Admin(s.store);
    await admin.putPolicy(esPolicy('race'));
    // Each put differs (its name), as puts that race do: on Elasticsearch the same document in the same
    // millisecond is one revision, the write of a create that was retried.
    const hits = await Promise.all([0, 1, 2, 3].map((i) => admin.putPolicy(esPolicy('race', { name: `put ${i}` }))));
    const revisions = hits.map((h) => h._source.revision_idx).sort();
    expect(revisions).toEqual([2, 3, 4, 5]);
    for (const h of hits) expect(h._source.data.revision).toBe(h._source.revision_idx);
    const latest = await s.store.latestPolicy('race');
    expect(latest?._source.revision_idx).toBe(5);
    expect(latest?._source.data.revision).toBe(5);
    // The document as stored says the revision the put printed.
    const stored = hits.find((h) => h._source.revision_idx === 5)!;
    expect(latest?._source['name']).toBe(stored._source['name']);
  });

  test('the policy monitor takes in the last of the concurrent revisions', async () => {
    const admin = new Admin(s.store);
    await admin.putPolicy(esPolicy('watched'));
    const monitor = new PolicyMonitor(s.store, pino({ level: 'silent' }), 1000);
    const stop = new AbortController();
    await monitor.start(stop.signal);
    try {
      await Promise.all([0, 1, 2].map((i) => admin.putPolicy(esPolicy('watched', { name: `put ${i}` }))));
      for (let i = 0; i < 200 && (await monitor.latest('watched'))?.revisionIdx !== 4; i++) await new Promise((r) => setTimeout(r, 25));
      expect((await monitor.latest('watched'))?.revisionIdx).toBe(4);
    } finally {
      stop.abort();
      await monitor.stopped();
    }
  });
});

test('Elasticsearch: a revision\'s document id is Kibana\'s, uuid v5 of "<policy id>:<revision>" in the DNS namespace', () => {
  // Python's uuid.uuid5(uuid.NAMESPACE_DNS, 'p1:1').
  expect(policyRevisionId('p1', 1)).toBe('6d0cfaeb-ea05-5ca9-b60c-3e1119ffc833');
});
