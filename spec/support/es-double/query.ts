// The query DSL subset Fleet Server and Kibana's Fleet use, with Elasticsearch's semantics: any element
// of an array field may match, null and [] are missing, unmapped fields of Fleet indices match nothing,
// dates accept date math, keywords are exact and text fields are analyzed.
import { allShardsFailed, EsError, illegalArgument, parsingException } from './errors';
import { fieldType, parseStrictDate, type FieldType, type Mapping } from './mappings';

export interface StoredDoc {
  id: string;
  source: Record<string, unknown>;
  seqNo: number;
  version: number;
}

export interface Target {
  index: string;
  mapping: Mapping;
}

type Pred = (doc: StoredDoc, t: Target) => boolean;
type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v) && !ArrayBuffer.isView(v);

/** Leaf values at a dotted path; arrays are flattened, literal dotted keys are honoured, nulls are dropped. */
export function valuesAt(source: unknown, path: string): unknown[] {
  const out: unknown[] = [];
  collect(source, path.split('.'), 0, out);
  return out;
}

function collect(node: unknown, parts: string[], i: number, out: unknown[]): void {
  if (Array.isArray(node)) {
    for (const el of node) collect(el, parts, i, out);
    return;
  }
  if (i === parts.length) {
    if (node !== null && node !== undefined) out.push(node);
    return;
  }
  if (!isObj(node)) return;
  for (let j = i + 1; j <= parts.length; j++) {
    const key = parts.slice(i, j).join('.');
    if (key in node) collect(node[key], parts, j, out);
  }
}

function docValues(doc: StoredDoc, field: string): unknown[] {
  if (field === '_id') return [doc.id];
  if (field === '_seq_no') return [doc.seqNo];
  if (field.endsWith('.keyword')) {
    const base = valuesAt(doc.source, field.slice(0, -'.keyword'.length));
    const direct = valuesAt(doc.source, field);
    return direct.length ? direct : base;
  }
  return valuesAt(doc.source, field);
}

function typeOf(t: Target, field: string): FieldType | undefined {
  if (field === '_id') return 'keyword';
  if (field === '_seq_no') return 'long';
  return fieldType(t.mapping, field);
}

/** index.max_terms_count's default. */
export const MAX_TERMS_COUNT = 65_536;
/** index.max_inner_result_window's default (top_hits from + size). */
export const MAX_INNER_RESULT_WINDOW = 100;

// ---- dates ----

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, H: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** A date value or date-math expression (`now-30d`, `now-1h/d`, `2024-01-01||+1d`) as epoch millis. */
export function parseDate(v: unknown, now = Date.now()): number {
  if (typeof v === 'number') return v;
  if (typeof v !== 'string') throw new EsError(400, 'parse_exception', `failed to parse date field [${String(v)}]`);
  let base: number;
  let math: string;
  if (v.startsWith('now')) {
    base = now;
    math = v.slice(3);
  } else {
    const [anchor, rest] = v.split('||');
    base = parseStrictDate(anchor) ?? NaN;
    math = rest ?? '';
  }
  if (Number.isNaN(base)) {
    throw new EsError(400, 'parse_exception', `failed to parse date field [${v}] with format [strict_date_optional_time||epoch_millis]`);
  }
  const re = /([+-])(\d+)([yMwdhHms])|\/([yMwdhHms])/g;
  let m: RegExpExecArray | null;
  let t = base;
  let consumed = 0;
  while ((m = re.exec(math)) !== null) {
    consumed += m[0].length;
    if (m[4]) {
      const date = new Date(t);
      const unit = m[4];
      if (unit === 'y') t = Date.UTC(date.getUTCFullYear(), 0, 1);
      else if (unit === 'M') t = Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), 1);
      else t -= t % (UNIT_MS[unit] ?? 1);
      continue;
    }
    const n = Number(m[2]) * (m[1] === '-' ? -1 : 1);
    const unit = m[3]!;
    if (unit === 'y' || unit === 'M') {
      const date = new Date(t);
      if (unit === 'y') date.setUTCFullYear(date.getUTCFullYear() + n);
      else date.setUTCMonth(date.getUTCMonth() + n);
      t = date.getTime();
    } else t += n * UNIT_MS[unit]!;
  }
  if (consumed !== math.length) throw new EsError(400, 'parse_exception', `failed to parse date math [${v}]`);
  return t;
}

// ---- value normalisation per field type ----

function norm(type: FieldType, v: unknown): unknown {
  switch (type) {
    case 'keyword': return typeof v === 'object' ? undefined : String(v);
    case 'text': return typeof v === 'object' ? undefined : String(v);
    case 'date': try {
      return parseDate(v);
    } catch {
      return undefined;
    }
    case 'integer': case 'long': case 'float': case 'double': {
      const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
      return Number.isNaN(n) ? undefined : n;
    }
    case 'boolean': return v === true || v === 'true' ? true : v === false || v === 'false' ? false : undefined;
    case 'binary': return undefined;
  }
}

const tokens = (s: string): string[] => s.toLowerCase().split(/[^\p{L}\p{N}_]+/u).filter(Boolean);

function termMatches(type: FieldType, docValue: unknown, queryValue: unknown): boolean {
  if (type === 'text') return tokens(String(docValue)).includes(String(queryValue));
  const a = norm(type, docValue);
  const b = type === 'date' ? norm(type, queryValue) : norm(type, queryValue);
  return a !== undefined && a === b;
}

// ---- compile ----

function clauses(v: unknown): Obj[] {
  if (v === undefined) return [];
  return (Array.isArray(v) ? v : [v]) as Obj[];
}

function single(q: Obj, kind: string): [string, unknown] {
  const entries = Object.entries(q).filter(([k]) => k !== 'boost' && k !== '_name');
  if (entries.length !== 1) throw parsingException(`[${kind}] query doesn't support multiple fields, found [${entries.map(([k]) => k).join('] and [')}]`);
  return entries[0]!;
}

export function compileQuery(q: unknown, now = Date.now()): Pred {
  if (q === undefined || q === null) return () => true;
  if (!isObj(q)) throw parsingException('query malformed, must start with start_object');
  const keys = Object.keys(q);
  if (keys.length !== 1) throw parsingException(`[_na] query malformed, no start_object after query name`);
  const kind = keys[0]!;
  const body = q[kind] as Obj;
  switch (kind) {
    case 'match_all': return () => true;
    case 'match_none': return () => false;
    case 'bool': {
      const must = [...clauses(body['must']), ...clauses(body['filter'])].map((c) => compileQuery(c, now));
      const should = clauses(body['should']).map((c) => compileQuery(c, now));
      const not = clauses(body['must_not']).map((c) => compileQuery(c, now));
      const msm = body['minimum_should_match'] !== undefined ? Number(body['minimum_should_match'])
        : must.length === 0 && should.length > 0 ? 1 : 0;
      return (d, t) => must.every((p) => p(d, t)) && !not.some((p) => p(d, t))
        && (msm === 0 || should.filter((p) => p(d, t)).length >= msm);
    }
    case 'term': {
      const [field, spec] = single(body, 'term');
      const value = isObj(spec) ? spec['value'] : spec;
      if (Array.isArray(value)) throw parsingException(`[term] query does not support array of values`);
      return (d, t) => {
        const type = typeOf(t, field);
        return type !== undefined && docValues(d, field).some((v) => termMatches(type, v, value));
      };
    }
    case 'terms': {
      const [field, values] = single(body, 'terms');
      if (!Array.isArray(values)) throw parsingException(`[terms] query does not support [${field}]`);
      if (values.length > MAX_TERMS_COUNT) {
        throw allShardsFailed(illegalArgument(`The number of terms [${values.length}] used in the Terms Query request has exceeded the allowed maximum of [${MAX_TERMS_COUNT}]. This maximum can be set by changing the [index.max_terms_count] index level setting.`));
      }
      return (d, t) => {
        const type = typeOf(t, field);
        return type !== undefined && docValues(d, field).some((v) => values.some((q2) => termMatches(type, v, q2)));
      };
    }
    case 'ids': {
      const ids = new Set((body['values'] as string[] | undefined) ?? []);
      return (d) => ids.has(d.id);
    }
    case 'exists': {
      const field = body['field'] as string;
      return (d, t) => typeOf(t, field) !== undefined && docValues(d, field).length > 0;
    }
    case 'prefix': {
      const [field, spec] = single(body, 'prefix');
      const value = String(isObj(spec) ? spec['value'] : spec);
      return (d, t) => typeOf(t, field) !== undefined && docValues(d, field).some((v) => String(v).startsWith(value));
    }
    case 'range': {
      const [field, spec] = single(body, 'range');
      if (!isObj(spec)) throw parsingException('[range] query malformed');
      return (d, t) => {
        const type = typeOf(t, field);
        if (type === undefined || type === 'binary') return false;
        const conv = (v: unknown): unknown => (type === 'date' ? parseDate(v, now) : norm(type, v));
        const bounds: [string, unknown][] = Object.entries(spec).filter(([k]) => ['gt', 'gte', 'lt', 'lte'].includes(k)).map(([k, v]) => [k, conv(v)]);
        return docValues(d, field).some((raw) => {
          const v = norm(type, raw) as number | string | undefined;
          if (v === undefined) return false;
          return bounds.every(([op, b]) => {
            const bb = b as number | string;
            return op === 'gt' ? v > bb : op === 'gte' ? v >= bb : op === 'lt' ? v < bb : v <= bb;
          });
        });
      };
    }
    default:
      throw parsingException(`unknown query [${kind}]`);
  }
}

// ---- sort ----

export interface SortSpec {
  field: string;
  desc: boolean;
  unmappedType?: string;
}

export function parseSort(sort: unknown): SortSpec[] {
  if (sort === undefined) return [];
  const list = Array.isArray(sort) ? sort : [sort];
  return list.map((s): SortSpec => {
    if (typeof s === 'string') {
      const [field, order] = s.split(':');
      return { field: field!, desc: order === 'desc' || (field === '_score' && order !== 'asc') };
    }
    if (!isObj(s)) throw parsingException('malformed sort');
    const [field, spec] = Object.entries(s)[0]!;
    if (typeof spec === 'string') return { field, desc: spec === 'desc' };
    const o = spec as Obj;
    return { field, desc: o['order'] === 'desc', unmappedType: o['unmapped_type'] as string | undefined };
  });
}

/** Sort value of a document: the min (asc) or max (desc) of its values, dates as epoch millis. */
function sortValue(doc: StoredDoc, s: SortSpec, t: Target): unknown {
  if (s.field === '_doc' || s.field === '_score') return null;
  const type = typeOf(t, s.field) ?? 'keyword';
  const vals = docValues(doc, s.field).map((v) => norm(type, v)).filter((v) => v !== undefined) as (number | string | boolean)[];
  if (vals.length === 0) return null;
  const num = vals.map((v) => (typeof v === 'boolean' ? (v ? 1 : 0) : v));
  return num.reduce((a, b) => ((s.desc ? b > a : b < a) ? b : a));
}

export function checkSortable(specs: SortSpec[], targets: Target[]): void {
  for (const s of specs) {
    if (['_doc', '_score', '_seq_no', '_id'].includes(s.field)) continue;
    // A shard whose index cannot sort on the field fails; the double only models the case where all do
    // (a partial failure would answer the other shards' hits with _shards.failed).
    const failures = targets.map((t): EsError | undefined => {
      const type = typeOf(t, s.field);
      // Text fields have no doc values (fielddata is off by default): neither sortable nor aggregatable.
      if (type === 'text') return fielddataDisabled(s.field, t.index);
      return type === undefined && !s.unmappedType ? illegalArgument(`No mapping found for [${s.field}] in order to sort on`) : undefined;
    });
    if (targets.length > 0 && failures.every((f) => f !== undefined)) throw allShardsFailed(failures[0]!, targets[0]!.index);
  }
}

function fielddataDisabled(field: string, index: string): EsError {
  return illegalArgument(`Fielddata is disabled on [${field}] in [${index}]. Text fields are not optimised for operations that require per-document field data like aggregations and sorting, so these operations are disabled by default. Please use a keyword field instead. Alternatively, set fielddata=true on [${field}] in order to load field data by uninverting the inverted index. Note that this can use significant memory.`);
}

export interface Ranked {
  doc: StoredDoc;
  target: Target;
  sort: unknown[];
}

export function sortDocs(items: { doc: StoredDoc; target: Target }[], specs: SortSpec[]): Ranked[] {
  const ranked = items.map((x) => ({ ...x, sort: specs.map((s) => sortValue(x.doc, s, x.target)) }));
  if (specs.length === 0) return ranked;
  return ranked.sort((a, b) => {
    for (let i = 0; i < specs.length; i++) {
      const x = a.sort[i];
      const y = b.sort[i];
      if (x === y) continue;
      if (x === null) return 1; // missing values go last in both directions
      if (y === null) return -1;
      const c = (x as number) < (y as number) ? -1 : 1;
      return specs[i]!.desc ? -c : c;
    }
    return 0;
  });
}

// ---- _source filtering ----

const glob = (p: string): RegExp => new RegExp(`^${p.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);

export interface SourceFilter {
  enabled: boolean;
  includes: RegExp[];
  includePrefixes: string[];
  excludes: RegExp[];
}

export function parseSourceFilter(spec: unknown, includesParam?: string, excludesParam?: string): SourceFilter {
  let includes: string[] = [];
  let excludes: string[] = [];
  let enabled = true;
  if (spec === false || spec === 'false') enabled = false;
  else if (typeof spec === 'string' && spec !== 'true') includes = spec.split(',');
  else if (Array.isArray(spec)) includes = spec as string[];
  else if (isObj(spec)) {
    const inc = spec['includes'] ?? spec['include'];
    const exc = spec['excludes'] ?? spec['exclude'];
    includes = inc === undefined ? [] : Array.isArray(inc) ? (inc as string[]) : [String(inc)];
    excludes = exc === undefined ? [] : Array.isArray(exc) ? (exc as string[]) : [String(exc)];
  }
  if (includesParam) includes = includesParam.split(',');
  if (excludesParam) excludes = excludesParam.split(',');
  return { enabled, includes: includes.map(glob), includePrefixes: includes, excludes: excludes.map(glob) };
}

export function filterSource(src: Obj, f: SourceFilter): Obj | undefined {
  if (!f.enabled) return undefined;
  if (f.includes.length === 0 && f.excludes.length === 0) return src;
  return filterObj(src, '', f, f.includes.length === 0) ?? {};
}

function filterObj(obj: Obj, prefix: string, f: SourceFilter, included: boolean): Obj | undefined {
  const out: Obj = {};
  let any = false;
  for (const [key, value] of Object.entries(obj)) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (f.excludes.some((r) => r.test(path))) continue;
    const inc = included || f.includes.some((r) => r.test(path));
    const mayContain = f.includePrefixes.some((p) => p.startsWith(`${path}.`) || p.includes('*'));
    let kept: unknown;
    if (isObj(value)) kept = inc || mayContain ? filterObj(value, path, f, inc) : undefined;
    else if (Array.isArray(value) && value.some(isObj)) {
      kept = inc || mayContain ? value.map((el) => (isObj(el) ? filterObj(el, path, f, inc) ?? {} : el)).filter((el) => inc || !isObj(el) || Object.keys(el).length > 0) : undefined;
      if (Array.isArray(kept) && kept.length === 0 && !inc) kept = undefined;
    } else kept = inc ? value : undefined;
    if (kept !== undefined) {
      out[key] = kept;
      any = true;
    }
  }
  return any || included ? out : undefined;
}

// ---- aggregations ----

export function aggregate(aggs: unknown, items: { doc: StoredDoc; target: Target }[], hitOf: (r: Ranked, opts: Obj) => Obj): Obj {
  if (!isObj(aggs)) throw parsingException('aggregations must be an object');
  const out: Obj = {};
  for (const [name, def] of Object.entries(aggs)) {
    if (!isObj(def)) throw parsingException(`Expected [START_OBJECT] under [${name}]`);
    const sub = (def['aggs'] ?? def['aggregations']) as Obj | undefined;
    const kind = Object.keys(def).find((k) => k !== 'aggs' && k !== 'aggregations');
    const spec = (kind ? def[kind] : {}) as Obj;
    if (kind === 'terms') {
      const field = spec['field'] as string;
      const size = Number(spec['size'] ?? 10);
      for (const it of items) if (typeOf(it.target, field) === 'text') throw allShardsFailed(fielddataDisabled(field, it.target.index), it.target.index);
      const buckets = new Map<string | number | boolean, { doc: StoredDoc; target: Target }[]>();
      for (const it of items) {
        const type = typeOf(it.target, field);
        if (type === undefined) continue;
        const seen = new Set<unknown>();
        for (const v of docValues(it.doc, field)) {
          const key = type === 'text' ? undefined : norm(type, v) as string | number | boolean | undefined;
          if (key === undefined || seen.has(key)) continue;
          seen.add(key);
          const b = buckets.get(key) ?? [];
          b.push(it);
          buckets.set(key, b);
        }
      }
      const sorted = [...buckets].sort((a, b) => b[1].length - a[1].length || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
      const shown = sorted.slice(0, size);
      const other = sorted.slice(size).reduce((s, [, b]) => s + b.length, 0);
      out[name] = {
        doc_count_error_upper_bound: 0, sum_other_doc_count: other,
        buckets: shown.map(([key, b]) => ({ key, doc_count: b.length, ...(sub ? aggregate(sub, b, hitOf) : {}) })),
      };
    } else if (kind === 'top_hits') {
      const specs = parseSort(spec['sort']);
      const ranked = sortDocs(items, specs);
      const size = Number(spec['size'] ?? 3);
      const from = Number(spec['from'] ?? 0);
      if (from + size > MAX_INNER_RESULT_WINDOW && items.length > 0) {
        throw allShardsFailed(illegalArgument(`Top hits result window is too large, the top hits aggregator [${name}]'s from + size must be less than or equal to: [${MAX_INNER_RESULT_WINDOW}] but was [${from + size}]. This limit can be set by changing the [index.max_inner_result_window] index level setting.`), items[0]!.target.index);
      }
      out[name] = {
        hits: {
          total: { value: items.length, relation: 'eq' }, max_score: null,
          hits: ranked.slice(Number(spec['from'] ?? 0), Number(spec['from'] ?? 0) + size).map((r) => hitOf(r, { ...spec, _sorted: specs.length > 0 })),
        },
      };
    } else if (kind === 'max' || kind === 'min') {
      const field = spec['field'] as string;
      const vals = items.flatMap((it) => docValues(it.doc, field).map((v) => norm(typeOf(it.target, field) ?? 'float', v))).filter((v) => typeof v === 'number') as number[];
      out[name] = { value: vals.length ? (kind === 'max' ? Math.max(...vals) : Math.min(...vals)) : null };
    } else {
      throw parsingException(`Unknown aggregation type [${kind}] did you mean [terms]?`);
    }
  }
  return out;
}
