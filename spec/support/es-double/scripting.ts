// Script execution for update, bulk update and _update_by_query: resolves the `script` field, compiles
// with a small cache (Elasticsearch caches compiled scripts too; check-in sends one source over and over),
// runs it on ctx, and renders failures in Elasticsearch's shape: a `script_exception` carrying
// script_stack, script, lang and position, caused by the Java exception painless raised.
import { compile, execute, PainlessError, type Program } from './painless';
import { EsError, illegalArgument, resourceNotFound } from './errors';

type Obj = Record<string, unknown>;

export type ScriptSpec = string | { source?: unknown; id?: unknown; lang?: unknown; params?: unknown };

/** Elasticsearch's `script.max_size_in_bytes` default. */
export const MAX_SCRIPT_BYTES = 65_535;
const CACHE_SIZE = 100;
const cache = new Map<string, Program>();

export interface Compiled { source: string; program: Program; params: Obj }

/** Resolves and compiles a request's script, or throws what Elasticsearch answers for it. */
export function compileScript(spec: ScriptSpec): Compiled {
  const s = typeof spec === 'string' ? { source: spec } : spec;
  if (s === null || typeof s !== 'object') throw illegalArgument('script must be a string or an object');
  if (s.id !== undefined) throw resourceNotFound(`unable to find script [${String(s.id)}] in cluster state`);
  const lang = s.lang ?? 'painless';
  if (lang !== 'painless') throw illegalArgument(`script_lang not supported [${String(lang)}]`);
  if (typeof s.source !== 'string') throw illegalArgument('must specify either [source] for an inline script or [id] for a stored script');
  const source = s.source;
  const bytes = Buffer.byteLength(source);
  if (bytes > MAX_SCRIPT_BYTES) {
    throw illegalArgument(`exceeded max allowed inline script size in bytes [${MAX_SCRIPT_BYTES}] with size [${bytes}] for script [${source.slice(0, 80)}...]`);
  }
  const params = s.params === undefined || s.params === null ? {} : s.params;
  if (typeof params !== 'object' || Array.isArray(params)) throw illegalArgument('[params] must be an object');
  let program = cache.get(source);
  if (!program) {
    try {
      program = compile(source);
    } catch (err) {
      // A script nested deeper than the parser's stack is refused like any other it cannot compile.
      if (err instanceof RangeError) throw scriptException(source, new PainlessError('compile', 'illegal_argument_exception', 'script is nested too deeply', 0));
      if (err instanceof PainlessError) throw scriptException(source, err);
      throw err;
    }
    if (cache.size >= CACHE_SIZE) cache.delete(cache.keys().next().value!);
    cache.set(source, program);
  }
  return { source, program, params: params as Obj };
}

/** Runs a compiled script on ctx (mutated in place). */
export function runCompiled(c: Compiled, ctx: Obj): void {
  try {
    execute(c.program, ctx, c.params);
  } catch (err) {
    if (err instanceof RangeError) throw scriptException(c.source, new PainlessError('runtime', 'stack_overflow_error', 'stack overflow', 0));
    if (err instanceof PainlessError) throw scriptException(c.source, err);
    throw err;
  }
}

/**
 * A search script (`script_fields`): no ctx; `params` are the script's own plus `_source`, the hit's
 * source as a map (binary values are byte arrays). Returns the script's value; a failure is the
 * shard failure Elasticsearch reports for the whole search.
 */
export function runSearchScript(c: Compiled, source: Obj): unknown {
  try {
    return execute(c.program, {}, { ...c.params, _source: structuredClone(source) });
  } catch (err) {
    const e = err instanceof RangeError ? new PainlessError('runtime', 'stack_overflow_error', 'stack overflow', 0) : err;
    if (e instanceof PainlessError) {
      throw new EsError(400, 'search_phase_execution_exception', 'all shards failed', { phase: 'query', grouped: true }, scriptException(c.source, e));
    }
    throw e;
  }
}

export interface UpdateOutcome { op: 'index' | 'noop' | 'delete' | 'create'; source: Obj }

/**
 * The update API's script run: ctx carries _index, _id, _version, op and _source. As in Elasticsearch's
 * UpdateHelper, any failure is wrapped in `illegal_argument_exception: failed to execute script`, and an
 * op other than index/delete (or create for a scripted upsert) does nothing.
 */
export function runUpdateScript(spec: ScriptSpec, ctx: Obj & { op: string; _source: Obj }): UpdateOutcome {
  const upsert = ctx.op === 'create';
  try {
    runCompiled(compileScript(spec), ctx);
  } catch (err) {
    if (err instanceof EsError) throw new EsError(400, 'illegal_argument_exception', 'failed to execute script', {}, err);
    throw err;
  }
  const source = ctx._source;
  if (source === null || typeof source !== 'object' || Array.isArray(source)) {
    throw new EsError(400, 'illegal_argument_exception', 'failed to execute script', {},
      new EsError(400, 'class_cast_exception', 'ctx._source must remain a map'));
  }
  const op = ctx.op;
  if (upsert) return { op: op === 'create' ? 'create' : 'noop', source };
  return { op: op === 'index' || op === 'delete' ? op : 'noop', source };
}

function scriptException(source: string, e: PainlessError): EsError {
  const at = Math.max(0, Math.min(e.pos, source.length));
  const start = Math.max(0, at - 25);
  const end = Math.min(source.length, at + 25);
  const line = source.slice(start, end).replace(/\s/g, ' ');
  const stack = [line, `${' '.repeat(at - start)}^---- HERE`];
  return new EsError(400, 'script_exception', e.phase === 'compile' ? 'compile error' : 'runtime error',
    { script_stack: stack, script: source, lang: 'painless', position: { offset: at, start, end } },
    new EsError(400, e.causeType, e.message));
}
