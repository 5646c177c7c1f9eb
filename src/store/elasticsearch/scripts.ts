// Painless scripts the Elasticsearch store sends. A partial `doc` update cannot remove fields, so an
// update that must also drop fields (upstream clears audit_unenrolled_* on check-in this way) runs
// this script: a recursive merge with Elasticsearch's partial-doc semantics, then the removals. Fields
// named in `replace` are dropped first, so their new values replace the stored ones whole (upstream
// replaces an OpAMP agent's effective_config with a script of its own).
// Kept constant so Elasticsearch compiles it once and serves it from its script cache.

const MERGE = [
  'void merge(Map dst, Map src) { for (def e : src.entrySet()) { def cur = dst.get(e.getKey());',
  ' if (cur instanceof Map && e.getValue() instanceof Map) { merge(cur, e.getValue()); } else { dst.put(e.getKey(), e.getValue()); } } }',
];
const MERGE_AND_REMOVE_BODY = [
  'if (params.containsKey(\'replace\')) { for (String f : params.replace) { ctx._source.remove(f); } }',
  'merge(ctx._source, params.doc);',
  'for (String path : params.remove) { def node = ctx._source; String[] parts = path.splitOnToken(".");',
  ' for (int i = 0; i < parts.length - 1 && node != null; i++) { node = node instanceof Map ? node.get(parts[i]) : null; }',
  ' if (node instanceof Map) { node.remove(parts[parts.length - 1]); } }',
];

export const MERGE_AND_REMOVE = [...MERGE, ...MERGE_AND_REMOVE_BODY].join('\n');

/**
 * MERGE_AND_REMOVE while none of the outputs `params.keys_unset` names has an api_key other than the one
 * this update records (a resent update finds its own), else a no-op: an update with whileOutputKeysUnset
 * (keys a check-in minted, recorded only if no other pass has).
 */
export const MERGE_AND_REMOVE_WHILE_KEYS_UNSET = [
  ...MERGE,
  'boolean taken = false;',
  'def outputs = ctx._source.outputs;',
  "def mine = params.doc.get('outputs');",
  'if (outputs instanceof Map) { for (String name : params.keys_unset) { def o = outputs.get(name);',
  " def own = mine instanceof Map && mine.get(name) instanceof Map ? mine.get(name).get('api_key_id') : null;",
  " if (o instanceof Map && o.get('api_key') != null && o.get('api_key') != '' && o.get('api_key_id') != own) { taken = true; } } }",
  'if (taken) { ctx.op = \'noop\'; } else {',
  ...MERGE_AND_REMOVE_BODY,
  '}',
].join('\n');

/**
 * MERGE_AND_REMOVE while the document's policy_id is `params.policy_id`, else a no-op: an update with
 * whilePolicyId (an agent's policy ack, which upstream's ack script conditions the same way).
 */
export const MERGE_AND_REMOVE_WHILE_POLICY = [
  ...MERGE,
  'if (ctx._source.policy_id == params.policy_id) {',
  ...MERGE_AND_REMOVE_BODY,
  "} else { ctx.op = 'noop'; }",
].join('\n');

/**
 * MERGE_AND_REMOVE while the document's access_api_key_id is `params.access_key_id` (or already the one
 * the update records: a resent update), else a no-op: an update with whileAccessKeyId (a replacing
 * enroll recording its new key, so two replaces at once cannot both win).
 */
export const MERGE_AND_REMOVE_WHILE_ACCESS_KEY = [
  ...MERGE,
  "def k = ctx._source.access_api_key_id;",
  "if (k == params.access_key_id || (params.doc.get('access_api_key_id') != null && k == params.doc.get('access_api_key_id'))) {",
  ...MERGE_AND_REMOVE_BODY,
  "} else { ctx.op = 'noop'; }",
].join('\n');
