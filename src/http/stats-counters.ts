// The counters of a /stats document, and what is carried of them once their source is gone. Upstream's
// counters are process-global and only grow for the life of the process (Prometheus takes any decrease
// for a reset; Kibana derives CPU from beat.cpu). Here they are counted by sources that come and go: a
// cluster's workers (one that answers late, crashes or is replaced) and, in agent mode, the server
// instance a new configuration replaces. What an ended source had counted is carried into every later
// document.
import type { StatsDocument } from './metrics';
import { isPlainObject } from '../util/is-object';

type Obj = Record<string, unknown>;
/** `true`: every number below; an object: those keys (`*`: any key) with their own spec. */
type Spec = true | { [key: string]: Spec };


/** Numbers added leaf by leaf; anything else taken from the first document that has it. */
export function add(a: unknown, b: unknown): unknown {
  if (typeof a === 'number' && typeof b === 'number') return a + b;
  if (isPlainObject(a) && isPlainObject(b)) {
    const out: Obj = { ...a };
    for (const [k, v] of Object.entries(b)) out[k] = k in a ? add(a[k], v) : v;
    return out;
  }
  return a ?? b;
}

export function sum(docs: unknown[]): Obj {
  return docs.reduce<Obj>((acc, d) => add(acc, d) as Obj, {});
}

const ROUTE: Spec = { total: true, limit_rate: true, limit_max: true, fail: true, drop: true, body_in: true, body_out: true, not_found: true, throttle: true };
const ADMISSION: Spec = { turned_away: true, evicted: true, dropped: true, handed_off: true, adopted: true, returned: true };
/** What a server instance counts (not the process: its CPU stays with the process). */
const INSTANCE_COUNTERS: Spec = {
  http_server: { tcp_open: true, tcp_close: true, routes: { '*': ROUTE } },
  fleet: { auth_cache: { hits: true, misses: true }, http: { admission: ADMISSION } },
};
/** What a process counts: its instance's, and its CPU time (in both places /stats shows it). */
const PROCESS_COUNTERS: Spec = {
  http_server: { tcp_open: true, tcp_close: true, routes: { '*': ROUTE }, cpu: true },
  beat: { cpu: true },
  fleet: { auth_cache: { hits: true, misses: true }, http: { admission: ADMISSION } },
};

function pick(v: unknown, spec: Spec): unknown {
  if (spec === true) {
    if (typeof v === 'number') return v;
    if (!isPlainObject(v)) return undefined;
    const out: Obj = {};
    for (const [k, x] of Object.entries(v)) {
      const p = pick(x, true);
      if (p !== undefined) out[k] = p;
    }
    return out;
  }
  if (!isPlainObject(v)) return undefined;
  const out: Obj = {};
  for (const [k, x] of Object.entries(v)) {
    const s = spec[k] ?? spec['*'];
    if (s === undefined) continue;
    const p = pick(x, s);
    if (p !== undefined) out[k] = p;
  }
  return out;
}

/** The counters of `doc` alone (of a process, or of a server instance within one). */
export function counters(doc: StatsDocument, of: 'process' | 'instance'): Obj {
  return (pick(doc, of === 'process' ? PROCESS_COUNTERS : INSTANCE_COUNTERS) ?? {}) as Obj;
}

/** The counters of a source that has ended: its connections are all closed. */
export function ended(doc: StatsDocument, of: 'process' | 'instance'): Obj {
  const c = counters(doc, of);
  const http = c['http_server'];
  if (isPlainObject(http) && typeof http['tcp_open'] === 'number') http['tcp_close'] = http['tcp_open'];
  return c;
}

/** `doc` with `carried` added to its counters, and tcp_active (a gauge) made from the sums again. */
export function withCarried(doc: StatsDocument, carried: Obj): StatsDocument {
  const out = add(doc, carried) as StatsDocument;
  const http = out['http_server'];
  if (isPlainObject(http) && typeof http['tcp_open'] === 'number' && typeof http['tcp_close'] === 'number') {
    out['http_server'] = { ...http, tcp_active: http['tcp_open'] - http['tcp_close'] };
  }
  return out;
}
