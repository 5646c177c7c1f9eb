// The double's cluster state and document APIs: indices with aliases and data streams, realtime GET,
// search on refreshed data, updates with Elasticsearch's merge semantics, bulk with per-item errors.
import { randomBytes } from 'node:crypto';
import { mergeDoc } from '../../../src/store/doc-merge';
import { allShardsFailed, EsError, illegalArgument, indexNotFound, validationFailed } from './errors';
import { Index, type Cas, type WriteResult } from './index';
import { compileScript, runCompiled, runSearchScript, runUpdateScript, type Compiled, type ScriptSpec } from './scripting';
import { DATA_STREAM_PATTERNS, FLEET_SYSTEM_INDICES, fieldType, mappingFor } from './mappings';
import {
  aggregate, checkSortable, compileQuery, filterSource, parseSort, parseSourceFilter, sortDocs,
  type Ranked, type StoredDoc, type Target,
} from './query';

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v) && !ArrayBuffer.isView(v);

/** 20 URL-safe base64 characters, like Elasticsearch's auto-generated ids. */
export const autoId = (): string => randomBytes(15).toString('base64url');

/** index.max_result_window's default. */
export const MAX_RESULT_WINDOW = 10_000;

export type Refresh = 'true' | 'false' | 'wait_for';

export interface UpdateBody {
  doc?: Obj;
  doc_as_upsert?: boolean;
  upsert?: Obj;
  script?: ScriptSpec;
  scripted_upsert?: boolean;
  detect_noop?: boolean;
  _source?: unknown;
}

export interface OpMeta {
  _index?: string;
  _id?: string;
  if_seq_no?: number;
  if_primary_term?: number;
  retry_on_conflict?: number;
  op_type?: string;
}

/** The keys an update body may carry (UpdateRequest's parser is strict: any other key is a 400). */
const UPDATE_BODY_KEYS = new Set(['doc', 'doc_as_upsert', 'upsert', 'script', 'scripted_upsert', 'detect_noop', '_source']);

export function checkUpdateBody(body: unknown): void {
  if (!isObj(body)) return;
  for (const key of Object.keys(body)) {
    if (!UPDATE_BODY_KEYS.has(key)) throw new EsError(400, 'x_content_parse_exception', `[1:2] [UpdateRequest] unknown field [${key}]`, { line: 1, col: 2 });
  }
}

/** op_type takes `index` or `create` (DocWriteRequest.OpType.fromString). */
export function checkOpType(v: string | undefined): void {
  if (v !== undefined && v !== 'index' && v !== 'create') throw illegalArgument(`opType must be 'create' or 'index', found: [${v}]`);
}

/**
 * if_seq_no and if_primary_term as a write request validates them: both or neither, non-negative, and
 * never on a create. Returns the condition to check, if any.
 */
export function casOf(meta: OpMeta, op: 'index' | 'create' | 'update' | 'delete'): Cas | undefined {
  const seqNo = meta.if_seq_no;
  const term = meta.if_primary_term;
  if (seqNo !== undefined && (!Number.isInteger(seqNo) || seqNo < 0)) throw illegalArgument(`sequence numbers must be non negative. got [${String(seqNo)}].`);
  if (term !== undefined && (!Number.isInteger(term) || term < 0)) throw illegalArgument(`primary term must be non negative. got [${String(term)}]`);
  if (seqNo !== undefined && !term) throw validationFailed('ifSeqNo is set, but primary term is [0]');
  if (seqNo === undefined && term) throw validationFailed(`ifSeqNo is unassigned, but primary term is [${term}]`);
  if (seqNo === undefined) return undefined;
  if (op === 'create') throw validationFailed('create operations do not support compare and set. use index instead');
  return { seqNo, term: term! };
}

export class Cluster {
  readonly indices = new Map<string, Index>();
  readonly aliases = new Map<string, string>();
  readonly dataStreams = new Map<string, string>();
  /** Called after every write, for persistence and statistics. */
  onWrite: (count: number) => void = () => {};

  // ---- resolution ----

  /** The concrete index behind a name (alias, data stream or index). */
  resolve(name: string): Index | undefined {
    const concrete = this.aliases.get(name) ?? this.dataStreams.get(name) ?? name;
    return this.indices.get(concrete);
  }

  mustResolve(name: string): Index {
    const idx = this.resolve(name);
    if (!idx) throw indexNotFound(name);
    return idx;
  }

  /** Resolves for a write, creating system indices and data streams on first use as Elasticsearch does. */
  forWrite(name: string, opType: 'index' | 'create' | 'update' | 'delete'): Index {
    let idx = this.resolve(name);
    if (!idx) {
      if (opType === 'delete') throw indexNotFound(name);
      if (name.startsWith('_') || name !== name.toLowerCase()) {
        throw new EsError(400, 'invalid_index_name_exception', `Invalid index name [${name}], must be lowercase`, { index: name });
      }
      idx = this.create(name);
    }
    if (idx.dataStream) {
      // Through the stream's name only creates go in; its backing indices take updates and deletes of
      // what is there, not new documents (IndexRequest / TransportBulkAction's data-stream checks).
      if (this.dataStreams.has(name) && opType !== 'create') throw illegalArgument('only write ops with an op_type of create are allowed in data streams');
      if (!this.dataStreams.has(name) && (opType === 'index' || opType === 'create')) {
        throw illegalArgument(opType === 'create'
          ? `index request with op_type=create targeting backing indices is disallowed, target corresponding data stream [${idx.dataStream}] instead`
          : `index request with op_type=index and no if_primary_term and if_seq_no set targeting backing indices is disallowed, target corresponding data stream [${idx.dataStream}] instead`);
      }
    }
    return idx;
  }

  create(name: string): Index {
    if (FLEET_SYSTEM_INDICES.includes(name)) {
      const idx = new Index(`${name}-7`, mappingFor(name));
      this.indices.set(idx.name, idx);
      this.aliases.set(name, idx.name);
      return idx;
    }
    if (DATA_STREAM_PATTERNS.some((p) => p.test(name))) {
      const day = new Date().toISOString().slice(0, 10).replace(/-/g, '.');
      const idx = new Index(`.ds-${name}-${day}-000001`, mappingFor(name), name);
      this.indices.set(idx.name, idx);
      this.dataStreams.set(name, idx.name);
      return idx;
    }
    const idx = new Index(name, mappingFor(name));
    this.indices.set(name, idx);
    return idx;
  }

  /** Search targets: comma lists and wildcards over indices, aliases and data streams. */
  targets(expr: string | string[] | undefined, ignoreUnavailable = false): Index[] {
    const names = expr === undefined || expr === '' || expr === '_all' ? ['*'] : Array.isArray(expr) ? expr : expr.split(',');
    const out = new Set<Index>();
    for (const n of names) {
      if (n.includes('*')) {
        const re = new RegExp(`^${n.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
        for (const [alias, concrete] of [...this.aliases, ...this.dataStreams]) if (re.test(alias)) out.add(this.indices.get(concrete)!);
        for (const idx of this.indices.values()) if (re.test(idx.name)) out.add(idx);
        continue;
      }
      const idx = this.resolve(n);
      if (idx) out.add(idx);
      else if (!ignoreUnavailable) throw indexNotFound(n);
    }
    return [...out];
  }

  // ---- refresh ----

  refreshAll(): void {
    for (const idx of this.indices.values()) idx.refresh();
  }

  async afterWrite(idx: Index, seq: number, refresh: Refresh | undefined): Promise<boolean> {
    if (refresh === 'true') {
      idx.refresh();
      return true;
    }
    if (refresh === 'wait_for') await idx.waitForRefresh(seq, 60_000);
    return false;
  }

  // ---- documents ----

  get(index: string, id: string): { idx: Index; doc: StoredDoc | undefined } {
    const idx = this.mustResolve(index);
    return { idx, doc: idx.docs.get(id) };
  }

  index(index: string, id: string | undefined, source: Obj, meta: OpMeta = {}): { idx: Index; r: WriteResult } {
    if (!isObj(source)) throw new EsError(400, 'mapper_parsing_exception', 'failed to parse, document is empty');
    checkOpType(meta.op_type);
    // An index request without an id gets one generated and runs as a create (IndexRequest.autoGenerateId),
    // so it is allowed into a data stream.
    const create = meta.op_type === 'create' || id === undefined;
    const cas = casOf(meta, create ? 'create' : 'index');
    const idx = this.forWrite(index, create ? 'create' : 'index');
    const r = idx.put(id ?? autoId(), source, { create, cas });
    this.onWrite(1);
    return { idx, r };
  }

  delete(index: string, id: string, meta: OpMeta = {}): { idx: Index; r: WriteResult } {
    const cas = casOf(meta, 'delete');
    const idx = this.forWrite(index, 'delete');
    const r = idx.delete(id, cas);
    this.onWrite(1);
    return { idx, r };
  }

  update(index: string, id: string, body: UpdateBody, meta: OpMeta = {}): { idx: Index; r: WriteResult } {
    if (!isObj(body)) throw validationFailed('script or doc is missing');
    checkUpdateBody(body);
    const cas = casOf(meta, 'update');
    const hasDoc = body.doc !== undefined;
    const hasScript = body.script !== undefined;
    const retries = meta.retry_on_conflict ?? 0;
    if (!hasDoc && !hasScript) throw validationFailed('script or doc is missing');
    if (hasDoc && hasScript) throw validationFailed("can't provide both script and doc");
    if (body.doc_as_upsert && !hasDoc) throw validationFailed('doc must be specified if doc_as_upsert is enabled');
    if (meta.if_seq_no !== undefined && retries > 0) throw validationFailed('compare and write operations can not be retried');
    if (meta.if_seq_no !== undefined && body.doc_as_upsert) throw validationFailed('compare and write operations can not be used with upsert');
    if (meta.if_seq_no !== undefined && body.upsert) throw validationFailed("upsert requests don't support `if_seq_no` and `if_primary_term`");
    const idx = this.forWrite(index, 'update');
    const prev = idx.docs.get(id);
    if (!prev) {
      // UpdateHelper looks the document up first: a missing one is an upsert (which refuses CAS) or a 404.
      const seed = body.doc_as_upsert ? body.doc : body.upsert;
      if (!seed) throw new EsError(404, 'document_missing_exception', `[${id}]: document missing`, idx.meta());
      let source = seed as Obj;
      if (body.scripted_upsert && hasScript) {
        const out = runUpdateScript(body.script!, { _index: idx.name, _id: id, _version: -1, _routing: null, op: 'create', _now: Date.now(), _source: structuredClone(seed) as Obj });
        // A scripted upsert that chooses noop creates nothing (UpdateHelper answers NOOP).
        if (out.op === 'noop') return { idx, r: { result: 'noop', doc: { id, source: {}, seqNo: -2, version: -1 } } };
        source = out.source;
      }
      const r = idx.put(id, structuredClone(source));
      this.onWrite(1);
      return { idx, r };
    }
    idx.checkCas(id, prev, cas);
    let next: Obj | undefined;
    if (hasDoc) {
      if (!isObj(body.doc)) throw new EsError(400, 'x_content_parse_exception', '[1:8] [UpdateRequest] failed to parse field [doc]');
      next = mergeDoc(structuredClone(prev.source), body.doc);
    } else {
      const out = runUpdateScript(body.script!, {
        _index: idx.name, _id: id, _version: prev.version, _routing: null, op: 'index', _now: Date.now(), _source: structuredClone(prev.source),
      });
      if (out.op === 'noop') return { idx, r: { result: 'noop', doc: prev } };
      if (out.op === 'delete') {
        const r = idx.delete(id);
        this.onWrite(1);
        return { idx, r };
      }
      next = out.source;
    }
    // A script always rewrites the document; a partial doc is a noop when nothing changes (detect_noop).
    const r = idx.replace(prev, next, hasDoc && body.detect_noop !== false);
    if (r.result !== 'noop') this.onWrite(1);
    return { idx, r };
  }

  // ---- search ----

  search(indexExpr: string | string[] | undefined, body: Obj, params: Obj = {}): Obj {
    const started = Date.now();
    const ignoreUnavailable = params['ignore_unavailable'] === true || params['ignore_unavailable'] === 'true';
    const indices = this.targets(indexExpr, ignoreUnavailable);
    const explicitMissing = indices.length === 0 && ignoreUnavailable && typeof indexExpr === 'string' && !indexExpr.includes('*');
    const q = body['query'];
    const pred = compileQuery(q);
    const size = Number(params['size'] ?? body['size'] ?? 10);
    const from = Number(params['from'] ?? body['from'] ?? 0);
    if (size < 0) throw illegalArgument(`[size] parameter cannot be negative, found [${size}]`);
    if (from < 0) throw illegalArgument(`[from] parameter cannot be negative, found [${from}]`);
    // index.max_result_window is checked on each shard: a search that reaches no shard is not refused.
    if (from + size > MAX_RESULT_WINDOW && indices.length > 0) {
      throw allShardsFailed(illegalArgument(`Result window is too large, from + size must be less than or equal to: [${MAX_RESULT_WINDOW}] but was [${from + size}]. See the scroll api for a more efficient way to request large data sets. This limit can be set by changing the [index.max_result_window] index level setting.`), indices[0]!.name);
    }
    const specs = parseSort(body['sort'] ?? (typeof params['sort'] === 'string' ? (params['sort'] as string).split(',') : undefined));
    const targets: Target[] = indices.map((i) => ({ index: i.name, mapping: i.mapping }));
    checkSortable(specs, targets);
    const matched: { doc: StoredDoc; target: Target }[] = [];
    indices.forEach((idx, i) => {
      for (const doc of idx.searchable.values()) if (pred(doc, targets[i]!)) matched.push({ doc, target: targets[i]! });
    });
    let ranked = sortDocs(matched, specs);
    const after = body['search_after'] as unknown[] | undefined;
    if (after) {
      ranked = ranked.filter((r) => specs.some((s, i) => {
        for (let j = 0; j < i; j++) if (r.sort[j] !== after[j]) return false;
        const v = r.sort[i] as number;
        const a = after[i] as number;
        return v !== a && (v === null ? true : s.desc ? v < a : v > a);
      }));
    }
    const hitOpts: Obj = {
      seq_no_primary_term: body['seq_no_primary_term'] === true || params['seq_no_primary_term'] === 'true',
      version: body['version'] === true || params['version'] === 'true',
      _source: body['_source'] ?? params['_source'],
      _source_includes: params['_source_includes'],
      _source_excludes: params['_source_excludes'],
      fields: body['fields'],
      script_fields: compileScriptFields(body['script_fields']),
      _sorted: specs.length > 0,
    };
    const hits = ranked.slice(from, from + size).map((r) => hitOf(r, hitOpts));
    const track = body['track_total_hits'] ?? 10000;
    const out: Obj = {
      took: Date.now() - started,
      timed_out: false,
      _shards: { total: indices.length, successful: indices.length, skipped: 0, failed: 0 },
      hits: {
        ...(track === false ? {} : {
          total: typeof track === 'number' && matched.length > track ? { value: track, relation: 'gte' } : { value: matched.length, relation: 'eq' },
        }),
        max_score: specs.length > 0 || matched.length === 0 ? null : q === undefined ? 1 : 0,
        hits,
      },
    };
    const aggs = body['aggs'] ?? body['aggregations'];
    if (aggs !== undefined && !explicitMissing) out['aggregations'] = aggregate(aggs, matched, hitOf);
    return out;
  }

  count(indexExpr: string | undefined, body: Obj, ignoreUnavailable = false): Obj {
    const indices = this.targets(indexExpr, ignoreUnavailable);
    const pred = compileQuery(body['query']);
    let count = 0;
    for (const idx of indices) {
      const t = { index: idx.name, mapping: idx.mapping };
      for (const doc of idx.searchable.values()) if (pred(doc, t)) count++;
    }
    return { count, _shards: { total: indices.length, successful: indices.length, skipped: 0, failed: 0 } };
  }

  /** _update_by_query / _delete_by_query over the refreshed view, as a point-in-time scroll would see it. */
  byQuery(kind: 'update' | 'delete', indexExpr: string, body: Obj, conflictsProceed: boolean): Obj {
    const started = Date.now();
    const indices = this.targets(indexExpr);
    const pred = compileQuery(body['query']);
    const max = body['max_docs'] === undefined ? Infinity : Number(body['max_docs']);
    let total = 0;
    let done = 0;
    let conflicts = 0;
    let noops = 0;
    const failures: Obj[] = [];
    let deleted = 0;
    // Compiled before any document is touched: a script that does not compile fails the whole request.
    const script = kind === 'update' && body['script'] !== undefined ? compileScript(body['script'] as ScriptSpec) : undefined;
    // A write the index refuses (its mapping) is a bulk failure: it is reported, and the operation stops
    // there whatever `conflicts` says (only version conflicts may proceed).
    let refused = false;
    for (const idx of indices) {
      if (refused) break;
      const t = { index: idx.name, mapping: idx.mapping };
      for (const doc of [...idx.searchable.values()]) {
        if (refused) break;
        if (total >= max) break;
        if (!pred(doc, t)) continue;
        total++;
        const live = idx.docs.get(doc.id);
        if (!live || live.seqNo !== doc.seqNo) {
          conflicts++;
          if (!conflictsProceed) {
            const reason = live
              ? `[${doc.id}]: version conflict, required seqNo [${doc.seqNo}], primary term [1]. current document has seqNo [${live.seqNo}] and primary term [1]`
              : `[${doc.id}]: version conflict, required seqNo [${doc.seqNo}], primary term [1]. but no document was found`;
            failures.push({ index: idx.name, id: doc.id, cause: { type: 'version_conflict_engine_exception', reason, ...idx.meta() }, status: 409 });
          }
          continue;
        }
        if (kind === 'delete') {
          idx.delete(doc.id);
          done++;
        } else if (!script) {
          idx.replace(live, live.source, false);
          done++;
        } else {
          const ctx = { _index: idx.name, _id: live.id, _version: live.version, _routing: null, op: 'index', _now: Date.now(), _source: structuredClone(live.source) };
          runCompiled(script, ctx);
          if (ctx.op === 'noop' || ctx.op === 'none') noops++;
          else if (ctx.op === 'delete') {
            idx.delete(live.id);
            deleted++;
          } else if (ctx.op === 'index') {
            if (!isObj(ctx._source)) throw illegalArgument('ctx._source must remain a map');
            try {
              idx.replace(live, ctx._source, false);
              done++;
            } catch (err) {
              if (!(err instanceof EsError)) throw err;
              failures.push({ index: idx.name, id: live.id, cause: err.item(), status: err.status });
              refused = true;
            }
          } else {
            throw illegalArgument(`Operation type [${String(ctx.op)}] not allowed, only [noop, index, delete] are allowed`);
          }
        }
      }
    }
    if (done + deleted > 0) this.onWrite(done + deleted);
    return {
      took: Date.now() - started, timed_out: false, total, updated: kind === 'update' ? done : 0, deleted: kind === 'delete' ? done : deleted,
      batches: 1, version_conflicts: conflicts, noops, retries: { bulk: 0, search: 0 }, throttled_millis: 0,
      requests_per_second: -1, throttled_until_millis: 0, failures,
    };
  }
}

export function hitOf(r: Ranked, opts: Obj): Obj {
  const h: Obj = { _index: r.target.index, _id: r.doc.id };
  if (opts['seq_no_primary_term']) {
    h['_seq_no'] = r.doc.seqNo;
    h['_primary_term'] = 1;
  }
  if (opts['version']) h['_version'] = r.doc.version;
  h['_score'] = opts['_sorted'] ? null : 0;
  const src = filterSource(r.doc.source, parseSourceFilter(opts['_source'], opts['_source_includes'] as string | undefined, opts['_source_excludes'] as string | undefined));
  if (src !== undefined) h['_source'] = src;
  const fields = opts['fields'] as (string | { field: string })[] | undefined;
  if (fields?.length) {
    const f: Obj = {};
    for (const spec of fields) {
      const name = typeof spec === 'string' ? spec : spec.field;
      if (name !== '_id' && fieldType(r.target.mapping, name) === undefined) continue;
      const vals = name === '_id' ? [r.doc.id] : valuesAtForFields(r.doc.source, name);
      if (vals.length) f[name] = vals;
    }
    if (Object.keys(f).length) h['fields'] = f;
  }
  const scripted = opts['script_fields'] as [string, Compiled][] | undefined;
  if (scripted?.length) {
    const f = (h['fields'] ?? {}) as Obj;
    for (const [name, c] of scripted) f[name] = [runSearchScript(c, r.doc.source)];
    h['fields'] = f;
  }
  if (opts['_sorted']) h['sort'] = r.sort;
  return h;
}

/** `script_fields: {name: {script}}`, compiled before any hit is rendered (a bad script fails the search). */
function compileScriptFields(spec: unknown): [string, Compiled][] | undefined {
  if (spec === undefined) return undefined;
  if (!isObj(spec)) throw new EsError(400, 'parsing_exception', 'Expected [START_OBJECT] under [script_fields]', { line: 1, col: 1 });
  return Object.entries(spec).map(([name, f]) => {
    if (!isObj(f) || f['script'] === undefined) throw new EsError(400, 'parsing_exception', `[${name}] must define a [script]`, { line: 1, col: 1 });
    return [name, compileScript(f['script'] as ScriptSpec)];
  });
}

function valuesAtForFields(src: Obj, path: string): unknown[] {
  const parts = path.split('.');
  let nodes: unknown[] = [src];
  for (const p of parts) nodes = nodes.flatMap((n) => (Array.isArray(n) ? n : [n])).filter(isObj).map((n) => n[p]).filter((v) => v !== undefined && v !== null);
  return nodes.flatMap((n) => (Array.isArray(n) ? n : [n]));
}
