// One behaviour for every store: the port's semantics, run against the embedded store and the
// Elasticsearch adapter (on the double, and on a real cluster when one is configured).
import { randomUUID } from 'node:crypto';
import type { ActionDoc, AgentDoc, PolicyDoc } from '../src/store/documents';
import type { DocUpdate } from '../src/store/port';
import { REAL_ES, STORE_KINDS, storeFixture } from './support/stores';

// The real-cluster run is added to STORE_KINDS only when configured; otherwise say so, and why.
if (!REAL_ES) console.log('store conformance on a real Elasticsearch: skipped (set ELASTICSEARCH_HOSTS and ELASTICSEARCH_SERVICE_TOKEN to run it)');

const uid = (): string => randomUUID();
const iso = (ms: number): string => new Date(ms).toISOString();

function agentDoc(over: Partial<AgentDoc> = {}): AgentDoc {
  return { active: true, type: 'PERMANENT', enrolled_at: iso(Date.now()), agent: { id: 'x', version: '9.6.0' }, ...over };
}

function policyDoc(policyId: string, rev: number): PolicyDoc {
  return {
    '@timestamp': iso(Date.now()), policy_id: policyId, revision_idx: rev, coordinator_idx: 1, default_fleet_server: false,
    data: { id: policyId, revision: rev, outputs: { default: { type: 'elasticsearch', hosts: ['http://localhost:9200'] } } },
  };
}

describe.each(STORE_KINDS)('%s store', (_name, make) => {
  const store = storeFixture(make);

  test('API keys: minted keys authenticate, wrong secrets and invalidated keys do not; roles update', async () => {
    const k = await store.createApiKey({ name: uid(), roleDescriptors: { r1: { cluster: [] } }, metadata: { managed: true } });
    expect(await store.checkApiKey(k.id, k.key)).toBe('valid');
    expect(await store.checkApiKey(k.id, `${k.key}x`)).toBe('invalid');
    expect(await store.checkApiKey('no-such-key', k.key)).toBe('invalid');
    expect(Object.keys((await store.getApiKeyRoles(k.id))!)).toEqual(['r1']);
    await store.updateApiKeyRoles([k.id], { r2: { cluster: ['monitor'] } });
    expect(Object.keys((await store.getApiKeyRoles(k.id))!)).toEqual(['r2']);
    await store.invalidateApiKeys([k.id]);
    expect(await store.checkApiKey(k.id, k.key)).toBe('invalid');
    expect(await store.getApiKeyRoles(k.id)).toBeUndefined();
  });

  test('secrets: stored, read back, deleted; a missing secret reads as undefined', async () => {
    const id = await store.createSecret('id:key');
    expect(await store.getSecret(id)).toBe('id:key');
    await store.deleteSecrets([id]);
    expect(await store.getSecret(id)).toBeUndefined();
    await store.deleteSecrets([id]);
  });

  test('output keys in one write (stores that mint their own keys): key, secret and agent entry; no agent, none of it', async () => {
    if (!store.createOutputKeys) {
      // Keys minted in a cluster are made one by one by fleet logic.
      expect(store.traits.remoteApiKeys).toBe(true);
      return;
    }
    const id = uid();
    await store.createAgent(id, agentDoc({ outputs: { gone: { api_key: 'x', api_key_id: 'k0', permissions_hash: 'h0', type: 'elasticsearch' } } }));
    const request = { name: `${id}:default`, roleDescriptors: { r1: { cluster: [] } }, metadata: { agent_id: id } };
    const entry = { permissions_hash: 'h1', to_retire_api_key_ids: [], type: 'elasticsearch' };
    const [minted, ...more] = await store.createOutputKeys(id, [{ output: 'default', request, entry }],
      { id, doc: { last_checkin_status: 'online' }, unset: ['outputs.gone'] });
    expect(more).toEqual([]);
    expect(minted!.output).toBe('default');
    expect(await store.checkApiKey(minted!.key.id, minted!.key.key)).toBe('valid');
    expect(Object.keys((await store.getApiKeyRoles(minted!.key.id))!)).toEqual(['r1']);
    expect(await store.getSecret(minted!.secretId)).toBe(`${minted!.key.id}:${minted!.key.key}`);
    const doc = (await store.getAgent(id))!._source;
    expect(doc.outputs).toEqual({ default: { api_key: `$co.elastic.secret{${minted!.secretId}}`, api_key_id: minted!.key.id, ...entry } });
    expect(doc.last_checkin_status).toBe('online');
    await expect(store.createOutputKeys(uid(), [{ output: 'default', request, entry }], { id: 'x', doc: {} })).rejects.toMatchObject({ name: 'NotFoundError' });

    // Only outputs change (a first check-in; a renamed output): merged into what is there, the rest kept as it was.
    const other = uid();
    const meta = { host: { name: 'h\u00e9 "1"', ip: ['10.0.0.1'] }, n: 1.5, none: null };
    await store.createAgent(other, agentDoc({ local_metadata: meta as never, outputs: {
      'old-one': { api_key: 'x', api_key_id: 'k0', permissions_hash: 'h0', type: 'elasticsearch' },
      kept: { api_key: 'y', api_key_id: 'k1', permissions_hash: 'h1', type: 'logstash', to_retire_api_key_ids: [{ id: 'r', retired_at: 't' }] },
    } }));
    const retire = { to_retire_api_key_ids: [{ id: 'k0', retired_at: 't2', output: 'old-one' }] };
    const [m2] = await store.createOutputKeys(other, [{ output: 'new_1', request, entry }],
      { id: other, doc: { outputs: { kept: retire } as never }, unset: ['outputs.old-one'] });
    const after = (await store.getAgent(other))!._source;
    expect(after.local_metadata).toEqual(meta);
    expect(JSON.stringify(after.outputs)).toBe(JSON.stringify({
      kept: { api_key: 'y', api_key_id: 'k1', permissions_hash: 'h1', type: 'logstash', ...retire },
      new_1: { api_key: `$co.elastic.secret{${m2!.secretId}}`, api_key_id: m2!.key.id, ...entry },
    }));
  });

  test('enrollment keys: only active keys are found', async () => {
    const id = uid();
    const apiKeyId = uid();
    const policyId = uid();
    await store.putEnrollmentKey(id, { api_key_id: apiKeyId, api_key: 'abc', active: true, policy_id: policyId, created_at: iso(Date.now()) });
    expect((await store.findEnrollmentKey(apiKeyId))?._id).toBe(id);
    expect((await store.listEnrollmentKeys(policyId)).map((h) => h._id)).toEqual([id]);
    await store.updateEnrollmentKey(id, { active: false });
    expect(await store.findEnrollmentKey(apiKeyId)).toBeUndefined();
    expect((await store.listEnrollmentKeys(policyId))[0]!._source.active).toBe(false);
  });

  test('agents: create once, realtime reads, merge updates keep nulls, unset removes, bulk updates, lookups, delete', async () => {
    const id = uid();
    const keyId = uid();
    const enrollmentId = uid();
    const policyId = uid();
    expect(await store.createAgent(id, agentDoc({ access_api_key_id: keyId, enrollment_id: enrollmentId, policy_id: policyId, tags: ['a'], audit_unenrolled_reason: 'uninstall' }))).toBe(true);
    expect(await store.createAgent(id, agentDoc())).toBe(false);
    expect((await store.getAgent(id))?._source.access_api_key_id).toBe(keyId);
    await store.updateAgent({ id, doc: { agent: { version: '9.7.0' } as never, tags: ['b'], upgrade_started_at: null } });
    let doc = (await store.getAgent(id))!._source;
    expect(doc.agent).toEqual({ id: 'x', version: '9.7.0' });
    expect(doc.tags).toEqual(['b']);
    expect(doc).toHaveProperty('upgrade_started_at', null);
    await store.bulkUpdateAgents([{ id, doc: { last_checkin_status: 'online' }, unset: ['audit_unenrolled_reason'] }, { id: uid(), doc: { x: 1 } }]);
    doc = (await store.getAgent(id))!._source;
    expect(doc.last_checkin_status).toBe('online');
    expect(doc).not.toHaveProperty('audit_unenrolled_reason');
    // `replace`: the field's new value replaces the stored one whole (an OpAMP effective_config), with or without unset.
    await store.bulkUpdateAgents([{ id, doc: { effective_config: { a: { x: 1 }, b: 2 } } }]);
    await store.bulkUpdateAgents([{ id, doc: { effective_config: { a: { y: 1 } }, agent: { version: '9.8.0' } }, replace: ['effective_config'] }]);
    doc = (await store.getAgent(id))!._source;
    expect(doc['effective_config']).toEqual({ a: { y: 1 } });
    expect(doc.agent).toEqual({ id: 'x', version: '9.8.0' });
    await store.bulkUpdateAgents([{ id, doc: { effective_config: { c: 3 } }, replace: ['effective_config'], unset: ['tags'] }]);
    doc = (await store.getAgent(id))!._source;
    expect(doc['effective_config']).toEqual({ c: 3 });
    expect(doc).not.toHaveProperty('tags');
    await expect(store.updateAgent({ id: uid(), doc: { active: false } })).rejects.toThrow(/not found/);
    expect((await store.findAgentByAccessKeyId(keyId))?._id).toBe(id);
    expect((await store.findAgentByEnrollmentId(enrollmentId))?._id).toBe(id);
    expect((await store.listAgents({ policyId })).map((h) => h._id)).toEqual([id]);
    await store.deleteAgent(id);
    expect(await store.getAgent(id)).toBeUndefined();
  });

  test('agents: held polls\' check-in refreshes read back everywhere an agent is read, interleaved with other updates; newest wins', async () => {
    const id = uid();
    const keyId = uid();
    const policyId = uid();
    const t = (s: number): string => iso(Date.UTC(2026, 11, 3, 12, 0, s));
    const refresh = (s: number, status = 'online', unhealthy: string[] | null = null) => ({
      updated_at: t(s), last_checkin: t(s), last_checkin_status: status, last_checkin_message: 'Running', unhealthy_reason: unhealthy, sequence_num: 0,
    });
    await store.createAgent(id, agentDoc({ access_api_key_id: keyId, policy_id: policyId, last_checkin: t(0), updated_at: t(0), last_checkin_status: 'starting', tags: ['a'] } as Partial<AgentDoc>));
    // Every way an agent is read; Elasticsearch's searches see a write only after the index refreshes.
    const read = async (): Promise<Record<string, unknown>[]> => [
      (await store.getAgent(id))!._source,
      ...(store.kind === 'elasticsearch' ? [] : [(await store.findAgentByAccessKeyId(keyId))!._source, (await store.listAgents({ policyId }))[0]!._source]),
    ] as unknown as Record<string, unknown>[];
    const expectAll = async (fields: Record<string, unknown>): Promise<void> => {
      for (const doc of await read()) expect(doc).toMatchObject(fields);
    };

    await store.bulkUpdateAgents([{ id, doc: refresh(10, 'online', ['input']) }]);
    await expectAll({ last_checkin: t(10), updated_at: t(10), last_checkin_status: 'online', unhealthy_reason: ['input'], tags: ['a'] });
    // An update beside the check-in fields (an ack): its fields, the refresh kept, updated_at its own (later).
    await store.updateAgent({ id, doc: { policy_revision_idx: 2, updated_at: t(20) } });
    await expectAll({ policy_revision_idx: 2, last_checkin: t(10), updated_at: t(20), unhealthy_reason: ['input'] });
    await store.bulkUpdateAgents([{ id, doc: refresh(30) }]);
    await expectAll({ last_checkin: t(30), updated_at: t(30), unhealthy_reason: null, policy_revision_idx: 2 });
    // A partial update of a check-in field merges over the newest refresh, never an older check-in.
    await store.updateAgent({ id, doc: { last_checkin_status: 'degraded' } });
    await expectAll({ last_checkin: t(30), last_checkin_status: 'degraded', updated_at: t(30) });
    await store.bulkUpdateAgents([{ id, doc: refresh(40) }]);
    await store.updateAgent({ id, doc: {}, unset: ['unhealthy_reason'] });
    for (const doc of await read()) {
      expect(doc).not.toHaveProperty('unhealthy_reason');
      expect(doc).toMatchObject({ last_checkin: t(40), last_checkin_status: 'online' });
    }
    // A check-in with news (every check-in field and more) after a refresh.
    await store.bulkUpdateAgents([{ id, doc: refresh(50) }]);
    await store.bulkUpdateAgents([{ id, doc: { ...refresh(60, 'error', ['other']), local_metadata: { host: { name: 'h2' } } as never } }]);
    await expectAll({ last_checkin: t(60), updated_at: t(60), last_checkin_status: 'error', unhealthy_reason: ['other'], local_metadata: { host: { name: 'h2' } } });
    await store.bulkUpdateAgents([{ id, doc: refresh(70) }]);
    await expectAll({ last_checkin: t(70), last_checkin_status: 'online', local_metadata: { host: { name: 'h2' } } });
    // A field kept in a column of its own (the document written whole) keeps the newest check-in.
    await store.updateAgent({ id, doc: { enrollment_id: 'e1', tags: ['c'] } });
    await expectAll({ last_checkin: t(70), last_checkin_status: 'online', tags: ['c'] });
    if (store.kind !== 'elasticsearch') expect((await store.findAgentByEnrollmentId('e1'))!._source).toMatchObject({ last_checkin: t(70) });

    // A refresh for an agent that is gone or never was writes nothing: an agent made later under that id
    // shows its own check-in.
    const other = uid();
    await store.bulkUpdateAgents([{ id: other, doc: refresh(80) }]);
    expect(await store.getAgent(other)).toBeUndefined();
    await store.deleteAgent(id);
    await store.createAgent(id, agentDoc({ last_checkin: t(1) } as Partial<AgentDoc>));
    await store.createAgent(other, agentDoc({ last_checkin: t(2) } as Partial<AgentDoc>));
    expect((await store.getAgent(id))!._source.last_checkin).toBe(t(1));
    expect((await store.getAgent(other))!._source.last_checkin).toBe(t(2));
  });

  test('agents: updates of one batch that share a document (plain check-in refreshes) each apply to their own agent; one with removals is no refresh', async () => {
    // A guard for the embedded store's per-batch memo (batchRefreshes): the update with removals shares
    // its document with refreshes, and must still be applied as what it is.
    const [a, b, gone, c] = [uid(), uid(), uid(), uid()];
    const t = (s: number): string => iso(Date.UTC(2026, 11, 5, 4, 0, s));
    for (const id of [a, b, c]) await store.createAgent(id, agentDoc({ last_checkin: t(0), updated_at: t(0), tags: ['x'] } as Partial<AgentDoc>));
    const shared = { updated_at: t(10), last_checkin: t(10), last_checkin_status: 'online', last_checkin_message: 'Running', unhealthy_reason: null, sequence_num: 0 };
    await store.bulkUpdateAgents([
      { id: a, doc: shared }, { id: gone, doc: shared }, { id: b, doc: shared }, { id: c, doc: shared, unset: ['tags'] },
    ] as DocUpdate<AgentDoc>[]);
    for (const id of [a, b, c]) expect((await store.getAgent(id))!._source).toMatchObject({ last_checkin: t(10), last_checkin_status: 'online' });
    expect((await store.getAgent(a))!._source).toMatchObject({ tags: ['x'] });
    expect((await store.getAgent(c))!._source).not.toHaveProperty('tags');
    expect(await store.getAgent(gone)).toBeUndefined();
  });

  test('agents: a check-in\'s partial update merges as Elasticsearch does (nested objects merge, arrays replace, nulls kept at any depth); a moved policy is found under its new id', async () => {
    const id = uid();
    const [policyA, policyB] = [uid(), uid()];
    await store.createAgent(id, agentDoc({ policy_id: policyA, local_metadata: { host: { name: 'h', ip: ['1'] }, os: { family: 'debian' } } as never, components: [{ id: 'a' }] as never }));
    await store.bulkUpdateAgents([{ id, doc: {
      last_checkin: '2026-12-02T00:00:00Z', unhealthy_reason: null, sequence_num: 7,
      local_metadata: { host: { ip: ['2', '3'] } } as never, components: [{ id: 'b', message: null }] as never,
    } }]);
    let doc = (await store.getAgent(id))!._source as Record<string, any>;
    expect(doc['local_metadata']).toEqual({ host: { name: 'h', ip: ['2', '3'] }, os: { family: 'debian' } });
    expect(doc['components']).toEqual([{ id: 'b', message: null }]);
    expect(doc).toHaveProperty('unhealthy_reason', null);
    expect(doc['sequence_num']).toBe(7);
    // A null below the top level is kept, not dropped.
    await store.updateAgent({ id, doc: { upgrade: { started_at: null, status: 'x' } } as never });
    doc = (await store.getAgent(id))!._source as Record<string, any>;
    expect(doc['upgrade']).toEqual({ started_at: null, status: 'x' });
    // Unset a nested field; move the agent to another policy: its lookups follow.
    await store.updateAgent({ id, doc: { policy_id: policyB }, unset: ['local_metadata.os'] });
    doc = (await store.getAgent(id))!._source as Record<string, any>;
    expect(doc['local_metadata']).toEqual({ host: { name: 'h', ip: ['2', '3'] } });
    expect((await store.listAgents({ policyId: policyB })).map((h) => h._id)).toEqual([id]);
    expect(await store.listAgents({ policyId: policyA })).toEqual([]);
    await store.deleteAgent(id);
  });

  test('agents: an update made while the agent has a given policy_id applies only then, removals too; otherwise nothing changes', async () => {
    const id = uid();
    const [policyA, policyB] = [uid(), uid()];
    await store.createAgent(id, agentDoc({ policy_id: policyA, policy_revision_idx: 1, default_api_key_history: [{ id: 'k0' }] as never }));
    // As a policy ack writes it: the row-kept form on the embedded store, and one with a removal.
    await store.updateAgent({ id, doc: { policy_revision_idx: 2, updated_at: '2030-01-01T00:00:00Z' }, whilePolicyId: policyB });
    await store.updateAgent({ id, doc: { policy_revision_idx: 2 }, unset: ['default_api_key_history'], whilePolicyId: policyB });
    let doc = (await store.getAgent(id))!._source;
    expect(doc).toMatchObject({ policy_id: policyA, policy_revision_idx: 1, default_api_key_history: [{ id: 'k0' }] });
    expect(doc.updated_at).not.toBe('2030-01-01T00:00:00Z');
    await store.updateAgent({ id, doc: { policy_revision_idx: 3, updated_at: '2030-01-01T00:00:00Z' }, whilePolicyId: policyA });
    doc = (await store.getAgent(id))!._source;
    expect(doc).toMatchObject({ policy_id: policyA, policy_revision_idx: 3, updated_at: '2030-01-01T00:00:00Z' });
    await store.updateAgent({ id, doc: { policy_revision_idx: 4 }, unset: ['default_api_key_history'], whilePolicyId: policyA });
    doc = (await store.getAgent(id))!._source;
    expect(doc.policy_revision_idx).toBe(4);
    expect(doc).not.toHaveProperty('default_api_key_history');
    await expect(store.updateAgent({ id: uid(), doc: { policy_revision_idx: 1 }, whilePolicyId: policyA })).rejects.toThrow(/not found/);
    await store.deleteAgent(id);
  });

  test('agents: keys are recorded only while no other pass has recorded one for the output (whileOutputKeysUnset); otherwise nothing changes', async () => {
    const id = uid();
    const entry = (key: string, keyId: string) => ({ api_key: key, api_key_id: keyId, permissions_hash: 'h1', type: 'elasticsearch' });
    // A remote output whose key could not be made has '' recorded: still unset.
    await store.createAgent(id, agentDoc({ outputs: { remote: { ...entry('', 'r0'), type: 'remote_elasticsearch' } } }));
    await store.updateAgent({ id, doc: { outputs: { default: entry('ref-1', 'k1'), remote: entry('ref-r', 'r1') } as never }, whileOutputKeysUnset: ['default', 'remote'] });
    expect((await store.getAgent(id))!._source.outputs).toMatchObject({ default: { api_key: 'ref-1', api_key_id: 'k1' }, remote: { api_key: 'ref-r' } });
    // Another pass, which read the document before the first recorded its key.
    const late = store.updateAgent({ id, doc: { outputs: { default: entry('ref-2', 'k2') } as never, last_checkin_status: 'error' }, unset: ['outputs.remote'], whileOutputKeysUnset: ['default'] });
    await expect(late).rejects.toMatchObject({ name: 'ConflictError' });
    const doc = (await store.getAgent(id))!._source;
    expect(doc.outputs).toMatchObject({ default: { api_key: 'ref-1', api_key_id: 'k1' }, remote: { api_key: 'ref-r' } });
    expect(doc.last_checkin_status).not.toBe('error');
    // The same update sent again (its answer was lost) finds its own key: applied.
    await store.updateAgent({ id, doc: { outputs: { default: entry('ref-1', 'k1') } as never, last_checkin_status: 'resent' }, whileOutputKeysUnset: ['default'] });
    expect((await store.getAgent(id))!._source.last_checkin_status).toBe('resent');
    if (store.createOutputKeys) {
      // Minted in the same write: a conflict refuses all of it (the race test shows no key is left).
      const request = { name: `${id}:default`, roleDescriptors: {}, metadata: { agent_id: id } };
      const minting = store.createOutputKeys(id, [{ output: 'default', request, entry: { permissions_hash: 'h1', type: 'elasticsearch' } }],
        { id, doc: {}, whileOutputKeysUnset: ['default'] });
      await expect(minting).rejects.toMatchObject({ name: 'ConflictError' });
      expect((await store.getAgent(id))!._source.outputs!['default']!.api_key_id).toBe('k1');
    }
    await store.deleteAgent(id);
  });

  test('agents: a new access key is recorded only over the key the writer read (whileAccessKeyId); otherwise nothing changes', async () => {
    const id = uid();
    await store.createAgent(id, agentDoc({ access_api_key_id: 'k0' }));
    await store.updateAgent({ id, doc: { access_api_key_id: 'kA', tags: ['a'] }, whileAccessKeyId: 'k0' });
    // Another replace that read k0 too: refused, nothing of it written.
    const late = store.updateAgent({ id, doc: { access_api_key_id: 'kB', tags: ['b'] }, whileAccessKeyId: 'k0' });
    await expect(late).rejects.toMatchObject({ name: 'ConflictError' });
    expect((await store.getAgent(id))!._source).toMatchObject({ access_api_key_id: 'kA', tags: ['a'] });
    // The first update sent again (its answer was lost) finds its own key: applied.
    await store.updateAgent({ id, doc: { access_api_key_id: 'kA', tags: ['again'] }, whileAccessKeyId: 'k0' });
    expect((await store.getAgent(id))!._source.tags).toEqual(['again']);
    await expect(store.updateAgent({ id: uid(), doc: { tags: [] }, whileAccessKeyId: 'k0' })).rejects.toThrow(/not found/);
    await store.deleteAgent(id);
  });

  test('policies: one document per revision, the latest wins, the change feed wakes on a new revision', async () => {
    const policyId = uid();
    await store.addPolicyRevision(policyDoc(policyId, 1));
    await store.addPolicyRevision(policyDoc(policyId, 2));
    expect((await store.latestPolicy(policyId))?._source.revision_idx).toBe(2);
    expect((await store.latestPolicies()).find((h) => h._source.policy_id === policyId)?._source.revision_idx).toBe(2);
    const cp = await store.policyChanges.checkpoint();
    const signal = new AbortController().signal;
    const quiet = await store.policyChanges.next(cp, 200, signal);
    expect(quiet.hits).toEqual([]);
    const waiting = store.policyChanges.next(cp, 20_000, signal);
    setTimeout(() => void store.addPolicyRevision(policyDoc(policyId, 3)), 100);
    const r = await waiting;
    expect(r.checkpoint).toBeGreaterThan(cp);
    expect(r.hits.map((h) => [h._source.policy_id, h._source.revision_idx])).toContainEqual([policyId, 3]);
  });

  test('policies: writers that read the same latest revision each get one of their own (the next free), returned as written', async () => {
    const policyId = uid();
    await store.addPolicyRevision(policyDoc(policyId, 1));
    const racing = [0, 1, 2, 3].map((i) => ({ ...policyDoc(policyId, 2), name: `writer ${i}` }));
    const hits = await Promise.all(racing.map((d) => store.addPolicyRevision(d)));
    expect(hits.map((h) => h._source.revision_idx).sort()).toEqual([2, 3, 4, 5]);
    for (const h of hits) expect(h._source.data.revision).toBe(h._source.revision_idx);
    const latest = (await store.latestPolicy(policyId))!._source;
    expect([latest.revision_idx, latest.data.revision, latest['name']]).toEqual([5, 5, hits.find((h) => h._source.revision_idx === 5)!._source['name']]);
    // A revision beyond the latest is written as given.
    expect((await store.addPolicyRevision(policyDoc(policyId, 9)))._source.revision_idx).toBe(9);
  });

  test('actions: pending actions are the agent’s, unexpired, after its position and up to the checkpoint', async () => {
    const agent = uid();
    const now = Date.now();
    const base = (over: Partial<ActionDoc>): ActionDoc => ({ action_id: uid(), '@timestamp': iso(now), type: 'SETTINGS', expiration: iso(now + 3600e3), agents: [agent], ...over });
    const startCp = await store.actionChanges.checkpoint();
    const [a1, expired, other, a2] = await store.createActions([base({}), base({ expiration: iso(now - 1000) }), base({ agents: [uid()] }), base({ type: 'UPGRADE' })]);
    expect((await store.findAction(a1!._source.action_id))?._id).toBe(a1!._id);
    expect(await store.actionSeqNo(a2!._id)).toBe(a2!._seq_no);
    const cp = await store.actionChanges.checkpoint();
    const pending = await store.pendingActions({ agentId: agent, afterSeqNo: startCp, checkpoint: cp, nowIso: iso(Date.now()), limit: 100 });
    expect(pending.map((p) => p._id)).toEqual([a1!._id, a2!._id]);
    expect(pending[0]!._source).not.toHaveProperty('agents');
    const after = await store.pendingActions({ agentId: agent, afterSeqNo: a1!._seq_no!, checkpoint: cp, nowIso: iso(Date.now()), limit: 100 });
    expect(after.map((p) => p._id)).toEqual([a2!._id]);
    expect([expired, other].every((x) => x!._id)).toBe(true);
    const feed = await store.actionChanges.next(startCp, 5000, new AbortController().signal);
    expect(feed.hits.map((h) => h._id)).toEqual(expect.arrayContaining([a1!._id, a2!._id]));
    expect(feed.hits.map((h) => h._id)).not.toContain(expired!._id);
    expect((await store.listActions(10)).length).toBeGreaterThan(0);
  });

  test('expired actions are deleted once past the clean-up horizon, and only those', async () => {
    const now = Date.now();
    const [old, recent] = await store.createActions([
      { action_id: uid(), '@timestamp': iso(now - 45 * 86_400e3), type: 'SETTINGS', expiration: iso(now - 40 * 86_400e3), agents: [uid()] },
      { action_id: uid(), '@timestamp': iso(now), type: 'SETTINGS', expiration: iso(now - 86_400e3), agents: [uid()] },
    ]);
    expect(await store.deleteExpiredActions(new Date(now - 30 * 86_400e3))).toBeGreaterThanOrEqual(1);
    expect(await store.findAction(old!._source.action_id)).toBeUndefined();
    expect((await store.findAction(recent!._source.action_id))?._id).toBe(recent!._id);
  });

  test('action results: the first result for an action and agent is kept', async () => {
    const actionId = uid();
    const id = `${actionId}:agent-1`;
    await store.createActionResults([{ id, doc: { '@timestamp': iso(Date.now()), action_id: actionId, agent_id: 'agent-1' } }]);
    await store.createActionResults([{ id, doc: { '@timestamp': iso(Date.now()), action_id: actionId, agent_id: 'agent-1', error: 'second' } }]);
    const results = await store.listActionResults(actionId);
    expect(results).toHaveLength(1);
    expect(results[0]!._source.error).toBeUndefined();
  });

  test('health check answers', async () => {
    await expect(store.healthCheck()).resolves.toBeUndefined();
  });
});
