// The Elasticsearch double runs painless update scripts with its own interpreter, the way Elasticsearch
// would: the scripts here are written the way upstream Fleet Server (check-in, policy ack, output keys,
// migrations) and Kibana write them, not the way our adapter does. What it cannot run is refused with
// Elasticsearch's error shape, and a runaway loop is stopped.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client, errors } from '@elastic/elasticsearch';
import { EsDouble } from './support/es-double/server';
import { MERGE_AND_REMOVE } from '../src/store/elasticsearch/scripts';

let es: EsDouble;
let client: Client;

beforeAll(async () => {
  es = await new EsDouble({ refreshIntervalMs: 300 }).start();
  client = new Client({ node: es.url, auth: { bearer: es.serviceToken } });
});
afterAll(async () => {
  await client.close();
  await es.stop();
});

type Obj = Record<string, unknown>;
const AGENTS = '.fleet-agents';
const source = async (id: string, index = AGENTS): Promise<Obj> => (await client.get<Obj>({ index, id }))._source!;
const failure = async (p: Promise<unknown>): Promise<{ status: number; body: { error: Obj; status: number } }> => {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(errors.ResponseError);
  const r = err as errors.ResponseError;
  return { status: r.meta.statusCode!, body: r.meta.body as { error: Obj; status: number } };
};

// Fleet Server's check-in script (internal/pkg/checkin/deleteAuditFieldsOnCheckin.painless), as it is sent.
const CHECKIN = `ctx._source.last_checkin = params.TS;
ctx._source.updated_at = params.Now;
ctx._source.last_checkin_status = params.Status;
ctx._source.last_checkin_message = params.Message;
ctx._source.unhealthy_reason = params.UnhealthyReason;
if (params.Ver != "") {
  ctx._source.agent.version = params.Ver;
}
if (params.Meta != null) {
  ctx._source.local_metadata = params.Meta;
}
if (params.Components != null) {
  ctx._source.components = params.Components;
}
if (params.SeqNoSet) {
    ctx._source.action_seq_no = params.SeqNo;
}
ctx._source.remove('audit_unenrolled_reason');
ctx._source.remove('audit_unenrolled_time');
ctx._source.remove('unenrolled_at'); // audit/unenroll no longer sets this but it did in the 8.16.x releases, so we need to clear it.
`;

// The OpAMP variant (checkinWithEffectiveConfig.painless): rollbacks need a map created on the way.
const CHECKIN_EFFECTIVE_CONFIG = `ctx._source.last_checkin = params.TS;
ctx._source.updated_at = params.Now;
ctx._source.last_checkin_status = params.Status;
ctx._source.sequence_num = params.SequenceNum;
if (params.PolicyID != "") {
  ctx._source.agent_policy_id = params.PolicyID;
  ctx._source.policy_revision_idx = params.RevisionIDX;
}
if (params.EffectiveConfig != null) {
  ctx._source.effective_config = params.EffectiveConfig;
}
if (params.AvailableRollbacks != null) {
  if (ctx._source.upgrade == null) {
    ctx._source.upgrade = new HashMap();
  }
  ctx._source.upgrade.rollbacks = params.AvailableRollbacks;
}
if (params.DeleteAudit) {
  ctx._source.remove('audit_unenrolled_reason');
}
`;

// The policy-ack script (handleAck.go makeUpdatePolicyBody): compact, no spaces, escaped quotes.
const ACK_POLICY = "if (ctx._source.policy_id == params.id) {ctx._source.remove('default_api_key_history');"
  + 'ctx._source.policy_revision_idx = params.rev;ctx._source.policy_coordinator_idx= params.coord;'
  + 'ctx._source.updated_at = params.ts;} else {ctx.op = "noop";}';

// The output-key script (policy_output.go renderUpdatePainlessScript) for output "default".
const OUTPUT_KEY = `
if (ctx._source['outputs']==null)
  {ctx._source['outputs']=new HashMap();}
if (ctx._source['outputs']['default']==null)
  {ctx._source['outputs']['default']=new HashMap();}

ctx._source['outputs']['default'].api_key=params.api_key;
ctx._source['outputs']['default'].api_key_id=params.api_key_id;
if (ctx._source['outputs']['default'].to_retire_api_key_ids==null)
  {ctx._source['outputs']['default'].to_retire_api_key_ids=new ArrayList();}
ctx._source['outputs']['default'].to_retire_api_key_ids.add(params.to_retire_api_key_ids);
`;

test('the check-in script through _bulk: assignments from params, null and empty-string checks, removals', async () => {
  await client.index({
    index: AGENTS, id: 'ck1', refresh: true, document: {
      active: true, agent: { id: 'ck1', version: '9.4.0' }, local_metadata: { host: { name: 'old' } }, components: [{ id: 'old' }],
      audit_unenrolled_reason: 'uninstall', audit_unenrolled_time: '2026-01-01T00:00:00Z', unenrolled_at: '2026-01-01T00:00:00Z',
    },
  });
  await client.index({ index: AGENTS, id: 'ck2', refresh: true, document: { active: true, agent: { id: 'ck2', version: '9.4.0' }, local_metadata: { keep: true } } });
  const params = (o: Obj): Obj => ({
    TS: '2026-12-02T01:00:00Z', Now: '2026-12-02T01:00:05Z', Status: 'online', Message: 'Running', UnhealthyReason: null,
    Ver: '', Meta: null, Components: null, SeqNoSet: false, SeqNo: null, ...o,
  });
  const r = await client.bulk({
    refresh: true, operations: [
      { update: { _index: AGENTS, _id: 'ck1', retry_on_conflict: 3 } },
      { script: { lang: 'painless', source: CHECKIN, params: params({ Ver: '9.5.2', Meta: { host: { name: 'h1' } }, Components: [{ id: 'c1', state: 'HEALTHY' }], SeqNoSet: true, SeqNo: [7] }) } },
      { update: { _index: AGENTS, _id: 'ck2' } },
      { script: { lang: 'painless', source: CHECKIN, params: params({ Status: 'degraded', UnhealthyReason: ['input'] }) } },
    ],
  });
  expect(r.errors).toBe(false);
  expect(r.items.map((i) => i.update!.result)).toEqual(['updated', 'updated']);
  expect(await source('ck1')).toEqual({
    active: true, agent: { id: 'ck1', version: '9.5.2' }, local_metadata: { host: { name: 'h1' } }, components: [{ id: 'c1', state: 'HEALTHY' }],
    last_checkin: '2026-12-02T01:00:00Z', updated_at: '2026-12-02T01:00:05Z', last_checkin_status: 'online', last_checkin_message: 'Running',
    unhealthy_reason: null, action_seq_no: [7],
  });
  // Empty Ver, null Meta and Components, SeqNoSet false: those fields are left as they were.
  expect(await source('ck2')).toEqual({
    active: true, agent: { id: 'ck2', version: '9.4.0' }, local_metadata: { keep: true },
    last_checkin: '2026-12-02T01:00:00Z', updated_at: '2026-12-02T01:00:05Z', last_checkin_status: 'degraded', last_checkin_message: 'Running',
    unhealthy_reason: ['input'],
  });
});

test('the effective-config check-in script through _update creates the upgrade map it needs', async () => {
  await client.index({ index: AGENTS, id: 'oc1', document: { active: true, audit_unenrolled_reason: 'orphaned' } });
  const r = await client.update({
    index: AGENTS, id: 'oc1', script: {
      source: CHECKIN_EFFECTIVE_CONFIG, params: {
        TS: '2026-12-02T01:00:00Z', Now: '2026-12-02T01:00:01Z', Status: 'online', SequenceNum: 3, PolicyID: 'p1', RevisionIDX: 4, EffectiveConfig: { receivers: {} },
        AvailableRollbacks: [{ version: '9.4.0', valid_until: 'x' }], DeleteAudit: true,
      },
    },
  });
  expect(r.result).toBe('updated');
  expect(await source('oc1')).toEqual({
    active: true, last_checkin: '2026-12-02T01:00:00Z', updated_at: '2026-12-02T01:00:01Z', last_checkin_status: 'online', sequence_num: 3, agent_policy_id: 'p1', policy_revision_idx: 4,
    effective_config: { receivers: {} }, upgrade: { rollbacks: [{ version: '9.4.0', valid_until: 'x' }] },
  });
});

test('the policy-ack script updates when the policy matches and is a noop when it does not', async () => {
  await client.index({ index: AGENTS, id: 'ak1', document: { policy_id: 'p1', policy_revision_idx: 1, default_api_key_history: [{ id: 'k0' }] } });
  const params = { id: 'p1', rev: 2, coord: 1, ts: '2026-12-02T01:00:00Z' };
  const r = await client.update({ index: AGENTS, id: 'ak1', retry_on_conflict: 3, refresh: true, script: { lang: 'painless', source: ACK_POLICY, params } });
  expect(r.result).toBe('updated');
  expect(await source('ak1')).toEqual({ policy_id: 'p1', policy_revision_idx: 2, policy_coordinator_idx: 1, updated_at: '2026-12-02T01:00:00Z' });
  const noop = await client.update({ index: AGENTS, id: 'ak1', script: { lang: 'painless', source: ACK_POLICY, params: { ...params, id: 'p2', rev: 9 } } });
  expect(noop.result).toBe('noop');
  expect(noop._version).toBe(r._version);
  expect((await source('ak1'))['policy_revision_idx']).toBe(2);
  // The same noop inside _bulk.
  const b = await client.bulk({ operations: [{ update: { _index: AGENTS, _id: 'ak1' } }, { script: { source: ACK_POLICY, params: { ...params, id: 'p3' } } }] });
  expect(b.items[0]!.update!.result).toBe('noop');
});

test('the output-key script builds outputs.default with bracket access and appends to the retire list', async () => {
  await client.index({ index: AGENTS, id: 'ok1', document: { active: true } });
  const run = (key: string, retire: Obj): Promise<unknown> => client.update({
    index: AGENTS, id: 'ok1', script: { lang: 'painless', source: OUTPUT_KEY, params: { api_key: `${key}:secret`, api_key_id: key, to_retire_api_key_ids: retire } },
  });
  await run('k1', { id: 'k0', retired_at: 't1' });
  await run('k2', { id: 'k1', retired_at: 't2' });
  expect(await source('ok1')).toEqual({
    active: true,
    outputs: { default: { api_key: 'k2:secret', api_key_id: 'k2', to_retire_api_key_ids: [{ id: 'k0', retired_at: 't1' }, { id: 'k1', retired_at: 't2' }] } },
  });
});

test('migration and file-upload scripts through _update_by_query: map literals, ctx._id, ++, no trailing semicolon', async () => {
  await client.index({ index: AGENTS, id: 'mg1', document: { active: true } });
  await client.index({ index: AGENTS, id: 'mg2', document: { active: true, agent: { id: 'mg2' } } });
  await client.index({ index: '.fleet-policies', id: 'pol1', document: { policy_id: 'p1', coordinator_idx: 0 } });
  await client.indices.refresh({ index: [AGENTS, '.fleet-policies'] });
  const agentMeta = await client.updateByQuery({
    index: AGENTS, refresh: true, conflicts: 'proceed',
    query: { bool: { must_not: { exists: { field: 'agent.id' } } } },
    script: 'ctx._source.agent = [:]; ctx._source.agent.id = ctx._id;',
  });
  expect(agentMeta.updated).toBeGreaterThanOrEqual(1);
  expect((await source('mg1'))['agent']).toEqual({ id: 'mg1' });
  await client.updateByQuery({ index: '.fleet-policies', refresh: true, query: { match_all: {} }, script: 'ctx._source.coordinator_idx++;' });
  expect((await source('pol1', '.fleet-policies'))['coordinator_idx']).toBe(1);

  const files = '.fleet-fileds-fromhost-meta-agent';
  await client.index({ index: files, id: 'f1', op_type: 'create', refresh: true, document: { '@timestamp': '2026-12-02T00:00:00Z', file: { Status: 'UPLOADING' } } });
  await client.updateByQuery({
    index: files, refresh: true, query: { ids: { values: ['f1'] } },
    script: { source: "ctx._source.file.Status = params.status; if(params.hash != ''){ ctx._source.transithash = ['sha256':params.hash]; }", params: { status: 'READY', hash: 'abc' } },
  });
  // Kibana's status script ends without a semicolon.
  await client.updateByQuery({ index: files, refresh: true, query: { ids: { values: ['f1'] } }, script: { source: "ctx._source.file.Status = 'DELETED'", lang: 'painless' } });
  const f = (await client.search<Obj>({ index: files, query: { ids: { values: ['f1'] } } })).hits.hits[0]!._source!;
  expect(f).toEqual({ '@timestamp': '2026-12-02T00:00:00Z', file: { Status: 'DELETED' }, transithash: { sha256: 'abc' } });
});

test('Kibana-style scripts: containsKey, contains, get/put/remove on maps, size and isEmpty, ctx.op = "delete"', async () => {
  await client.index({ index: AGENTS, id: 'kb1', document: { tags: ['a'], labels: { x: '1', y: '2' } } });
  const script = `
    if (!ctx._source.containsKey('tags') || ctx._source.tags == null) { ctx._source.tags = new ArrayList(); }
    for (def t : params.add) { if (!ctx._source.tags.contains(t)) { ctx._source.tags.add(t); } }
    for (String t : params.remove) { ctx._source.tags.remove(t); }
    Map labels = ctx._source.labels;
    if (labels.containsKey(params.rename)) { labels.put(params.rename + '_old', labels.remove(params.rename)); }
    ctx._source.label_count = labels.size();
    ctx._source.was_empty = params.add.isEmpty();
    ctx._source.first = labels.get('y');`;
  await client.update({ index: AGENTS, id: 'kb1', script: { source: script, params: { add: ['a', 'b', 'c'], remove: ['a'], rename: 'x' } } });
  expect(await source('kb1')).toEqual({ tags: ['b', 'c'], labels: { y: '2', x_old: '1' }, label_count: 2, was_empty: false, first: '2' });
  const del = await client.update({ index: AGENTS, id: 'kb1', script: "if (ctx._source.tags.size() == 2) { ctx.op = 'delete' }" });
  expect(del.result).toBe('deleted');
  expect((await client.exists({ index: AGENTS, id: 'kb1' }))).toBe(false);
});

test("Kibana's agent-tags script: a lambda in replaceAll, removeAll/addAll, a LinkedHashSet stored as a list", async () => {
  // x-pack/plugins/fleet update_agent_tags, as Kibana sends it to .fleet-agents.
  const tags = `
      ctx._source.tags = ctx._source.tags == null ? [] : ctx._source.tags;
      if (params.tagsToAdd.length == 1 && params.tagsToRemove.length == 1) {
        ctx._source.tags.replaceAll(tag -> params.tagsToRemove[0] == tag ? params.tagsToAdd[0] : tag);
      } else {
        ctx._source.tags.removeAll(params.tagsToRemove);
        ctx._source.tags.addAll(params.tagsToAdd);
      }

      LinkedHashSet uniqueSet = new LinkedHashSet();
      uniqueSet.addAll(ctx._source.tags);

      ctx._source.tags = uniqueSet.toArray();

      ctx._source.updated_at = params.updatedAt;
      `;
  await client.index({ index: AGENTS, id: 'tg1', document: { tags: ['old', 'keep', 'old'] } });
  await client.index({ index: AGENTS, id: 'tg2', document: { active: true } });
  await client.indices.refresh({ index: AGENTS });
  const run = (add: string[], remove: string[]) => client.updateByQuery({
    index: AGENTS, refresh: true, conflicts: 'abort', query: { ids: { values: ['tg1', 'tg2'] } },
    script: { source: tags, lang: 'painless', params: { tagsToAdd: add, tagsToRemove: remove, updatedAt: '2026-12-02T01:00:00Z' } },
  });
  expect((await run(['new'], ['old'])).updated).toBe(2);
  expect((await source('tg1'))['tags']).toEqual(['new', 'keep']);
  expect(await source('tg2')).toEqual({ active: true, tags: [], updated_at: '2026-12-02T01:00:00Z' });
  await run(['a', 'b'], ['keep']);
  expect((await source('tg1'))['tags']).toEqual(['new', 'a', 'b']);
  expect((await source('tg2'))['tags']).toEqual(['a', 'b']);
});

test('interpreter semantics: precedence, integer division, string concatenation, ternary, elvis, null-safe, functions, loops', async () => {
  await client.index({ index: AGENTS, id: 'sem1', document: { list: [1, 2, 3], m: { a: 1 } } });
  const script = `
    int fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }
    def s = ctx._source;
    s.arith = 1 + 2 * 3 - 7 / 2 % 2; // 1 + 6 - ((7 / 2 = 3) % 2 = 1)
    s.concat = 'v' + 1 + 2 + ':' + (1 + 2) + true + null;
    s.last = s.list[-1];
    s.safe = s.missing?.deep?.field;
    s.elvis = s.missing ?: 'fallback';
    s.fib = fib(15);
    int total = 0;
    for (def x : s.list) { if (x == 2) { continue; } total += x; }
    int i = 0;
    while (true) { i++; if (i >= 5) { break; } }
    s.total = total;
    s.i = i;
    s.eq = [1, [2]] == [1, [2]] && ['a': 1] == s.m && !(s.m === ['a': 1]);
    s.keys = new ArrayList(s.m.keySet());
    for (def e : s.m.entrySet()) { s['k_' + e.getKey()] = e.getValue() * 10; }`;
  await client.update({ index: AGENTS, id: 'sem1', script });
  expect(await source('sem1')).toEqual({
    list: [1, 2, 3], m: { a: 1 }, arith: 6, concat: 'v12:3truenull', last: 3, safe: null, elvis: 'fallback', fib: 610,
    total: 4, i: 5, eq: true, keys: ['a'], k_a: 10,
  });
});

test("our adapter's merge-and-remove script runs through the interpreter like any other", async () => {
  await client.index({ index: AGENTS, id: 'mr1', document: { agent: { id: 'mr1', version: '1' }, upgrade: { status: 'x', details: { a: 1 } }, keep: 1 } });
  await client.update({
    index: AGENTS, id: 'mr1',
    script: { source: MERGE_AND_REMOVE, lang: 'painless', params: { doc: { agent: { version: '2' }, last_checkin: '2026-12-02T01:00:00Z' }, remove: ['upgrade.details', 'missing.path', 'keep'] } },
  });
  expect(await source('mr1')).toEqual({ agent: { id: 'mr1', version: '2' }, upgrade: { status: 'x' }, last_checkin: '2026-12-02T01:00:00Z' });
});

test('an unsupported script is refused with the error shape of the update API, and nothing is written', async () => {
  await client.index({ index: AGENTS, id: 'bad1', document: { tags: ['x', 'y'] } });
  const before = await client.get({ index: AGENTS, id: 'bad1' });
  const streams = "ctx._source.tags = ctx._source.tags.stream().filter(t -> t != 'x').collect(Collectors.toList());";
  const { status, body } = await failure(client.update({ index: AGENTS, id: 'bad1', script: { source: streams, lang: 'painless' } }));
  expect(status).toBe(400);
  expect(body.status).toBe(400);
  expect(body.error).toMatchObject({
    root_cause: [{ type: 'illegal_argument_exception', reason: 'failed to execute script' }],
    type: 'illegal_argument_exception', reason: 'failed to execute script',
    caused_by: {
      type: 'script_exception', reason: 'compile error', script: streams, lang: 'painless',
      caused_by: { type: 'illegal_argument_exception', reason: 'cannot resolve symbol [Collectors]' },
    },
  });
  const cause = body.error['caused_by'] as Obj;
  expect(cause['script_stack']).toEqual([expect.stringContaining('Collectors'), expect.stringMatching(/\^---- HERE$/)]);
  expect(cause['position']).toEqual({ offset: streams.indexOf('Collectors'), start: expect.any(Number), end: expect.any(Number) });

  // An unknown symbol is a compile error even on a branch that would never run; a null receiver is a runtime one.
  const unknown = await failure(client.update({ index: AGENTS, id: 'bad1', script: 'if (false) { foo.bar = 1; }' }));
  expect(unknown.body.error['caused_by']).toMatchObject({ reason: 'compile error', caused_by: { type: 'illegal_argument_exception', reason: 'cannot resolve symbol [foo]' } });
  const b = await client.bulk({ operations: [{ update: { _index: AGENTS, _id: 'bad1' } }, { script: { source: 'ctx._source.missing.field = params.v;', params: { v: 1 } } }] });
  expect(b.errors).toBe(true);
  expect(b.items[0]!.update).toMatchObject({
    status: 400,
    error: { type: 'illegal_argument_exception', reason: 'failed to execute script', caused_by: { type: 'script_exception', reason: 'runtime error', caused_by: { type: 'null_pointer_exception' } } },
  });
  expect((await client.get({ index: AGENTS, id: 'bad1' }))._seq_no).toBe(before._seq_no);

  // Stored scripts and other languages are not run either; _update_by_query answers the script_exception itself.
  const lang = await failure(client.update({ index: AGENTS, id: 'bad1', script: { source: '1', lang: 'expression' } }));
  expect(lang.body.error['caused_by']).toMatchObject({ type: 'illegal_argument_exception', reason: 'script_lang not supported [expression]' });
  const ubq = await failure(client.updateByQuery({ index: AGENTS, query: { match_all: {} }, script: 'ctx._source.x = Math.max(1, 2);' }));
  expect(ubq.status).toBe(400);
  expect(ubq.body.error).toMatchObject({ root_cause: [{ type: 'script_exception', reason: 'compile error' }], type: 'script_exception', caused_by: { type: 'illegal_argument_exception' } });
});

test('a runaway loop is stopped by the loop counter, a bounded one runs, and oversized scripts are refused', async () => {
  await client.index({ index: AGENTS, id: 'loop1', document: { n: 0 } });
  const bounded = await client.update({ index: AGENTS, id: 'loop1', script: { source: 'for (int i = 0; i < params.times; i++) { ctx._source.n += 2; }', params: { times: 10 } } });
  expect(bounded.result).toBe('updated');
  expect((await source('loop1'))['n']).toBe(20);
  const runaway = await failure(client.update({ index: AGENTS, id: 'loop1', script: 'while (true) { ctx._source.n++; }' }));
  expect(runaway.status).toBe(400);
  expect(runaway.body.error['caused_by']).toMatchObject({
    type: 'script_exception', reason: 'runtime error',
    caused_by: { type: 'painless_error', reason: 'The maximum number of statements that can be executed in a loop has been reached.' },
  });
  expect((await source('loop1'))['n']).toBe(20);
  const huge = `ctx._source.n = 1;${' '.repeat(70_000)}`;
  const big = await failure(client.update({ index: AGENTS, id: 'loop1', script: huge }));
  expect(big.body.error['caused_by']).toMatchObject({ type: 'illegal_argument_exception', reason: expect.stringContaining('exceeded max allowed inline script size in bytes [65535]') });
});

test('the double runs scripts with its own code: nothing of the product is imported for them', () => {
  for (const f of ['cluster.ts', 'scripting.ts', 'painless.ts']) {
    const text = readFileSync(join(__dirname, 'support/es-double', f), 'utf8');
    expect(text).not.toMatch(/from '[./]*src\/store\/elasticsearch/);
  }
});
