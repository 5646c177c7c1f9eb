// Output API keys on the Elasticsearch store, in process on the double (a Fleet cluster and two remote
// ones): a remote output that moves to another cluster gets a key there, the old one retired and
// invalidated where it was minted; a key whose secret is gone is replaced; a key written in the policy
// is replaced as upstream does; key names stay within Elasticsearch's rules; remote clients are bounded.
import { createHash } from 'node:crypto';
import pino from 'pino';
import { buildConfig } from '../../src/config/config';
import { OutputKeys, outputKeyName } from '../../src/fleet/output-keys';
import { connectionHash, ParsedPolicy } from '../../src/fleet/parsed-policy';
import type { AgentDoc, AgentOutput, Hit, PolicyData, PolicyDoc, RoleMap } from '../../src/store/documents';
import { EsApiKeys } from '../../src/store/elasticsearch/api-keys';
import { EsStore } from '../../src/store/elasticsearch/store';
import { EsDouble } from '../support/es-double/server';
import { esPolicy, InProcessFleet } from '../support/in-process-fleet';

const log = pino({ level: 'silent' });
const ROLES: RoleMap = { writer: { indices: [{ names: ['logs-*'], privileges: ['create_doc'] }] } };
let fleetEs: EsDouble;
let clusterA: EsDouble;
let clusterB: EsDouble;
let store: EsStore;
let latest: ParsedPolicy | undefined;
let keys: OutputKeys;
let seq = 0;

const agentDoc = (id: string, outputs?: Record<string, Partial<AgentOutput>>): AgentDoc =>
  ({ active: true, policy_id: 'p', type: 'PERMANENT', enrolled_at: '2026-01-01T00:00:00Z', agent: { id, version: '9.6.0' }, ...(outputs ? { outputs } : {}) } as AgentDoc);

function policy(revision: number, outputs: Record<string, Record<string, unknown>>): ParsedPolicy {
  const data = { id: 'p', revision, outputs, output_permissions: Object.fromEntries(Object.keys(outputs).map((n) => [n, ROLES])) } as unknown as PolicyData;
  const hit: Hit<PolicyDoc> = { _id: `p:${revision}`, _source: { '@timestamp': '2026-01-01T00:00:00Z', policy_id: 'p', revision_idx: revision, coordinator_idx: 1, default_fleet_server: false, data } };
  latest = new ParsedPolicy(hit, () => undefined);
  return latest;
}

const remote = (es: EsDouble) => ({ type: 'remote_elasticsearch', hosts: [es.url], service_token: es.serviceToken });

async function newAgent(outputs?: Record<string, Partial<AgentOutput>>, id = `agent-${++seq}`): Promise<string> {
  await store.createAgent(id, agentDoc(id, outputs));
  return id;
}

async function outputsOf(id: string): Promise<Record<string, AgentOutput & { connection_hash?: string }>> {
  return (await store.getAgent(id))!._source.outputs as Record<string, AgentOutput & { connection_hash?: string }>;
}

const rendered = (p: ParsedPolicy, agentId: string, k: Record<string, string>) => JSON.parse(p.template.render(p.values(agentId, k)));

beforeAll(async () => {
  [fleetEs, clusterA, clusterB] = await Promise.all([0, 1, 2].map(() => new EsDouble({ refreshIntervalMs: 0 }).start()));
  const config = buildConfig({ output: { elasticsearch: { hosts: [fleetEs.url], service_token: fleetEs.serviceToken } } });
  store = new EsStore(config.elasticsearch!, { bulk: { ...config.server.bulk, flushIntervalMs: 5 }, monitor: config.monitor }, log);
  await store.ready();
  keys = new OutputKeys(store, undefined, log, async () => latest);
});
afterAll(async () => {
  await store?.close();
  await Promise.all([fleetEs, clusterA, clusterB].map((es) => es?.stop()));
});

describe('a remote output that moves to another cluster', () => {
  test('gets a key minted there, sent in POLICY_CHANGE; the old key is retired and invalidated in the cluster that minted it', async () => {
    const id = await newAgent();
    const p1 = policy(1, { default: { type: 'elasticsearch', hosts: [fleetEs.url] }, R: remote(clusterA) });
    const first = await keys.keysFor(id, undefined, p1);
    const [oldId] = first['R']!.split(':');
    expect(clusterA.security.keys.has(oldId!)).toBe(true);
    const before = await outputsOf(id);
    // Recorded as upstream records remote outputs (agentDocOutputType), with where its key lives.
    expect(before['R']).toMatchObject({ type: 'elasticsearch', api_key_id: oldId, connection_hash: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect(JSON.stringify(before)).not.toContain(clusterA.serviceToken);

    const p2 = policy(2, { default: { type: 'elasticsearch', hosts: [fleetEs.url] }, R: remote(clusterB) });
    const second = await keys.keysFor(id, before, p2);
    const [newId] = second['R']!.split(':');
    expect(newId).not.toBe(oldId);
    expect(clusterB.security.keys.get(newId!)?.metadata).toMatchObject({ agent_id: id, output_name: 'R', type: 'output' });
    expect(second['default']).toBe(first['default']);
    expect(rendered(p2, id, second).data.policy.outputs.R).toMatchObject({ type: 'elasticsearch', api_key: second['R'] });
    const after = await outputsOf(id);
    expect(after['R']).toMatchObject({ type: 'elasticsearch', api_key_id: newId, connection_hash: expect.not.stringMatching(before['R']!.connection_hash!) });
    expect(after['R']!.to_retire_api_key_ids).toEqual([expect.objectContaining({ id: oldId, output: 'R', connection_hash: before['R']!.connection_hash })]);
    // Current now: no other key at the next check-in.
    expect(await keys.keysFor(id, after, p2)).toEqual(second);

    await keys.cleanUpAfterAck(id, (await store.getAgent(id))!._source);
    expect(clusterA.security.keys.get(oldId!)?.invalidated).toBe(true);
    expect(clusterB.security.keys.get(newId!)?.invalidated).toBe(false);
  });

  test('a process that never saw the old connection (restarted, or another worker) finds it in the policy history, as upstream searches it', async () => {
    const id = await newAgent();
    const p1 = policy(1, { R: remote(clusterA) });
    await store.addPolicyRevision(p1.hit._source);
    const [oldId] = (await keys.keysFor(id, undefined, p1))['R']!.split(':');
    const p2 = policy(2, { R: remote(clusterB) });
    await store.addPolicyRevision(p2.hit._source);
    // A fresh process: it knows only the current policy.
    const restarted = new OutputKeys(store, undefined, log, async () => latest);
    await restarted.keysFor(id, await outputsOf(id), p2);
    await restarted.cleanUpAfterAck(id, (await store.getAgent(id))!._source);
    // Old: left valid in cluster A (the connection was known only to the process that saw revision 1).
    expect(clusterA.security.keys.get(oldId!)?.invalidated).toBe(true);
  });

  test('at unenroll, a key minted before its output moved is invalidated where it was minted', async () => {
    const id = await newAgent();
    const [keyId] = (await keys.keysFor(id, undefined, policy(1, { R: remote(clusterA) })))['R']!.split(':');
    policy(2, { R: remote(clusterB) });
    for (const [cluster, ids] of await keys.keysByCluster((await store.getAgent(id))!._source)) await cluster.invalidateApiKeys([...ids]);
    expect(clusterA.security.keys.get(keyId!)?.invalidated).toBe(true);
  });

  test('an entry from before connections were recorded (type remote_elasticsearch) keeps its key; its connection and type are recorded', async () => {
    const id = await newAgent();
    const p = policy(1, { R: remote(clusterA) });
    const minted = await keys.keysFor(id, undefined, p);
    const recorded = (await outputsOf(id))['R']!;
    const { connection_hash: _h, ...legacy } = { ...recorded, type: 'remote_elasticsearch' };
    const old = await newAgent({ R: legacy });
    expect(await keys.keysFor(old, { R: legacy } as never, p)).toEqual(minted);
    expect((await outputsOf(old))['R']).toMatchObject({ type: 'elasticsearch', api_key_id: recorded.api_key_id, connection_hash: recorded.connection_hash });
  });

  test('its connection is recorded only while the document still records that key (a newer pass may have replaced it)', async () => {
    const id = await newAgent();
    const p = policy(1, { R: remote(clusterA) });
    await keys.keysFor(id, undefined, p);
    const recorded = (await outputsOf(id))['R']!;
    const { connection_hash: _h, ...legacy } = { ...recorded, type: 'remote_elasticsearch' };
    const old = await newAgent({ R: legacy });
    // A pass at a newer revision has meanwhile recorded a key minted in another cluster.
    const newer = { ...legacy, api_key_id: 'newer-key', api_key: '$co.elastic.secret{newer}', type: 'elasticsearch', connection_hash: 'b'.repeat(64) };
    await store.updateAgent({ id: old, doc: { outputs: { R: newer } } as never });
    // This pass still holds the legacy entry it read. Old: it stamped its own (older) connection on the
    // newer key, which then looked moved and was re-minted, its retired twin invalidated in the wrong cluster.
    await keys.keysFor(old, { R: legacy } as never, p).catch(() => undefined);
    const after = (await outputsOf(old))['R']!;
    expect(after.api_key_id === 'newer-key' && after.connection_hash === recorded.connection_hash).toBe(false);
  });
});

describe('an output key whose secret is gone', () => {
  test('is replaced by a new key (upstream: 500 at every check-in); the old one is retired', async () => {
    const p = policy(1, { default: { type: 'elasticsearch', hosts: [fleetEs.url] } });
    const outputs = { default: { api_key: '$co.elastic.secret{gone}', api_key_id: 'old-key', permissions_hash: p.esOutputs[0]!.permissionsHash, type: 'elasticsearch' } };
    const id = await newAgent(outputs);
    const k = await keys.keysFor(id, outputs, p);
    expect(k['default']).toMatch(/^[^:]+:.+$/);
    const [newId] = k['default']!.split(':');
    expect(fleetEs.security.keys.has(newId!)).toBe(true);
    const after = (await outputsOf(id))['default']!;
    expect(after.api_key_id).toBe(newId);
    expect(after.api_key).toMatch(/^\$co\.elastic\.secret\{.+\}$/);
    expect(after.to_retire_api_key_ids).toEqual([expect.objectContaining({ id: 'old-key', output: 'default', secret_id: 'gone' })]);
  });

  test('two passes at once replace it once: both answer the key the document records, and no other stays valid', async () => {
    const p = policy(1, { default: { type: 'elasticsearch', hosts: [fleetEs.url] } });
    const outputs = { default: { api_key: '$co.elastic.secret{gone-too}', api_key_id: 'old-key-2', permissions_hash: p.esOutputs[0]!.permissionsHash, type: 'elasticsearch' } };
    const id = await newAgent(outputs);
    const [a, b] = await Promise.all([keys.keysFor(id, outputs, p), keys.keysFor(id, outputs, p)]);
    expect(b['default']).toBe(a['default']);
    const recorded = (await outputsOf(id))['default']!;
    expect(a['default']!.startsWith(`${recorded.api_key_id}:`)).toBe(true);
    expect(recorded.to_retire_api_key_ids?.map((r) => r.id)).toEqual(['old-key-2']);
    const valid = [...fleetEs.security.keys.values()].filter((k) => k.metadata['agent_id'] === id && !k.invalidated);
    expect(valid.map((k) => k.id)).toEqual([recorded.api_key_id]);
  });

  test('on the embedded store: a check-in at an older revision gets a new, non-empty key', async () => {
    const f = await InProcessFleet.start();
    try {
      const a = await f.enroll();
      const first = await f.checkin(a.id);
      const before = (await f.agent(a.id))._source.outputs!['default']!;
      await f.store.updateAgent({ id: a.id, doc: { outputs: { default: { api_key: '$co.elastic.secret{gone}' } } } });
      const again = (await f.checkin(a.id, { agent_policy_id: 'p1', policy_revision_idx: 0 })).actions![0]!;
      const key = again['data'].policy.outputs.default.api_key as string;
      expect(key).not.toBe('');
      expect(key).not.toBe(first.actions![0]!['data'].policy.outputs.default.api_key);
      const after = (await f.agent(a.id))._source.outputs!['default']!;
      expect(key.startsWith(`${after.api_key_id}:`)).toBe(true);
      expect(after.to_retire_api_key_ids?.map((r) => r.id)).toEqual([before.api_key_id]);
    } finally {
      await f.stop();
    }
  });
});

describe('an api_key written in the policy', () => {
  test('on Elasticsearch, the agent gets a key of its own, as upstream', async () => {
    const id = await newAgent();
    const p = policy(1, { default: { type: 'elasticsearch', hosts: [fleetEs.url], api_key: 'given:key' } });
    const k = await keys.keysFor(id, undefined, p);
    expect(k['default']).toMatch(/^[^:]+:.+$/);
    expect(k['default']).not.toBe('given:key');
    expect(fleetEs.security.keys.has(k['default']!.split(':')[0]!)).toBe(true);
    expect(rendered(p, id, k).data.policy.outputs.default.api_key).toBe(k['default']);
  });

  test('on the embedded store, it is sent as given and no key is minted', async () => {
    const f = await InProcessFleet.start(esPolicy('p1', { outputs: { default: { type: 'elasticsearch', hosts: ['h:9200'], api_key: 'given:key' } } }));
    try {
      const a = await f.enroll();
      const change = (await f.checkin(a.id)).actions![0]!;
      expect(change['data'].policy.outputs.default.api_key).toBe('given:key');
      expect((await f.agent(a.id))._source.outputs).toBeUndefined();
    } finally {
      await f.stop();
    }
  });
});

describe('output key names', () => {
  test('an agent id of 250 characters gets its keys at a first check-in; the name fits and the metadata names the agent', async () => {
    const id = await newAgent(undefined, `a${'x'.repeat(249)}`);
    const k = await keys.keysFor(id, undefined, policy(1, { default: { type: 'elasticsearch', hosts: [fleetEs.url] } }));
    const rec = fleetEs.security.keys.get(k['default']!.split(':')[0]!)!;
    expect(rec.name.length).toBeLessThanOrEqual(256);
    expect(rec.metadata).toMatchObject({ agent_id: id, output_name: 'default' });
  });

  test('upstream\'s "<agent id>:<output>" where Elasticsearch takes it; otherwise cut to fit, distinct, and within the rules', () => {
    expect(outputKeyName('agent-1', 'default')).toBe('agent-1:default');
    const long = 'x'.repeat(256);
    const names = [outputKeyName(long, 'default'), outputKeyName(`${long.slice(1)}y`, 'default'), outputKeyName('agent', 'out '), outputKeyName('_a', 'b')];
    expect(new Set(names).size).toBe(names.length);
    for (const n of names) {
      expect(n.length).toBeLessThanOrEqual(256);
      expect(n).not.toMatch(/^[_\u0000-\u0020]|[\u0000-\u0020]$/);
    }
    // Never half a surrogate pair.
    expect(outputKeyName('😀'.repeat(128), 'o')).not.toMatch(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])/);
  });

  test('the double refuses what Elasticsearch refuses: over 256 characters, a leading "_", whitespace at either end', async () => {
    for (const name of ['n'.repeat(257), '_n', ' n', 'n\t']) {
      await expect(store.createApiKey({ name, roleDescriptors: {}, metadata: {} })).rejects.toThrow();
    }
    await expect(store.createApiKey({ name: 'n'.repeat(256), roleDescriptors: {}, metadata: {} })).resolves.toMatchObject({ id: expect.any(String) });
  });
});

describe('remote clusters\' clients', () => {
  test('are kept for the most recently used configurations only; the others are closed', async () => {
    const close = jest.spyOn(EsApiKeys.prototype, 'close');
    const s = new EsStore(buildConfig({ output: { elasticsearch: { hosts: [fleetEs.url], service_token: fleetEs.serviceToken } } }).elasticsearch!,
      { bulk: buildConfig({}).server.bulk, monitor: buildConfig({}).monitor }, log);
    try {
      const first = s.apiKeysFor({ hosts: [clusterA.url], service_token: 't0' });
      for (let i = 1; i <= 100; i++) s.apiKeysFor({ hosts: [clusterA.url], service_token: `t${i}` });
      expect((s as unknown as { remotes: Map<string, unknown> }).remotes.size).toBeLessThanOrEqual(32);
      // Used again after it was dropped: a client of its own.
      expect(s.apiKeysFor({ hosts: [clusterA.url], service_token: 't0' })).not.toBe(first);
      const recent = s.apiKeysFor({ hosts: [clusterA.url], service_token: 't100' });
      expect(s.apiKeysFor({ hosts: [clusterA.url], service_token: 't100' })).toBe(recent);
    } finally {
      await s.close();
    }
    // Every client made is closed with the store, those dropped earlier too.
    expect(close).toHaveBeenCalledTimes(102);
    close.mockRestore();
  });
});

test('a remote output\'s connection hash names its cluster and service account, never the token\'s secret', () => {
  const token = (secret: string): string => Buffer.concat([Buffer.from([0, 1, 0, 1]), Buffer.from(`elastic/fleet-server/remote-1:${secret}`)]).toString('base64');
  const base = { type: 'remote_elasticsearch', hosts: ['https://b:9200', 'https://a:9200'], service_token: token('s3cret') };
  // A rotated token of the same account, another host order or a trailing slash: the same cluster.
  expect(connectionHash({ ...base, service_token: token('rotated') })).toBe(connectionHash(base));
  expect(connectionHash({ ...base, hosts: ['https://a:9200/', 'https://b:9200'] })).toBe(connectionHash(base));
  // Another cluster, or another account: another hash.
  expect(connectionHash({ ...base, hosts: ['https://c:9200'] })).not.toBe(connectionHash(base));
  expect(connectionHash({ ...base, service_token: Buffer.concat([Buffer.from([0, 1, 0, 1]), Buffer.from('elastic/fleet-server/other:s3cret')]).toString('base64') })).not.toBe(connectionHash(base));
  // Old: SHA-256 over the token itself, the same in every installation: a guess could be checked against it.
  const withSecret = createHash('sha256').update(JSON.stringify([['https://a:9200', 'https://b:9200'], null, null, token('s3cret'), null])).digest('hex');
  expect(connectionHash(base)).not.toBe(withSecret);
});
