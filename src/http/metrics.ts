// The metrics listener (http.enabled; localhost:5066, or the unix socket Elastic Agent names), as
// upstream's (elastic-agent-libs api + fleet-server's /metrics): `/` identity, `/stats` (libbeat-style
// JSON), `/state` and `/dataset` (empty), `/metrics` (Prometheus text format 0.0.4).
//
// Upstream puts its process metrics under `http_server.*`, where Elastic Agent's monitoring never looks
// (it copies `beat.cpu`, `beat.memstats.memory_sys`, `beat.handles` into the fields Kibana shows); they
// are published under `beat.*` as well, so Kibana shows this server's CPU and memory.
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync, rmSync, chmodSync } from 'node:fs';
import http from 'node:http';
import { hostname } from 'node:os';
import type { ELDHistogram } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';
import type { Logger } from 'pino';
import type { Fleet } from '../fleet/fleet';
import { cgroupMetrics } from '../util/cgroup';
import { VERSION } from '../version';
import { ROUTE_METRICS, type RouteCounters } from './counters';
import { causeText } from '../util/error-text';
import { listenError, listenHost } from './listen-host';
import { add, ended, withCarried } from './stats-counters';
import type { HttpService } from './server';

/** This process, as `/` names it (upstream leaves uuid empty; a stable one per process is more useful). */
const INSTANCE = randomUUID();
const COUNTER_KEYS = ['active', 'total', 'limit_rate', 'limit_max', 'fail', 'drop', 'body_in', 'body_out'] as const;
/** How long after a /stats document began to be made it answers later requests (shared()). */
export const STATS_REUSE_MS = 250;
/**
 * The listener has no authentication (as upstream's) and may be bound beyond loopback: connections are
 * capped and must send their request promptly (upstream: ReadHeaderTimeout 5 s).
 */
const MAX_CONNECTIONS = 64;
const HEADERS_TIMEOUT_MS = 5000;
const REQUEST_TIMEOUT_MS = 10_000;

/**
 * Event-loop delay, beyond upstream: how long requests wait for the one thread. Its histogram holds
 * ~360 KiB outside the heap, so it is made by the processes that report it (a server, each worker), not
 * by a cluster's primary, which reports its workers'.
 */
let loopDelay: ELDHistogram | undefined;
/**
 * The delay over the last whole window: reported instead of "since start", which after one bad burst
 * would never come down again and could not be alerted on.
 */
let lastWindow: { p50_ms: number; p99_ms: number; max_ms: number } | undefined;
const LOOP_WINDOW_MS = 60_000;

function delayOf(h: ELDHistogram): { p50_ms: number; p99_ms: number; max_ms: number } {
  return { p50_ms: h.percentile(50) / 1e6, p99_ms: h.percentile(99) / 1e6, max_ms: h.max / 1e6 };
}

/** Starts sampling the event-loop delay that statsDocument reports (the metrics listener, or a worker serving it). */
export function sampleEventLoop(): ELDHistogram {
  if (!loopDelay) {
    // Read here, not imported: perf_hooks weighs on a process that never reports metrics (util/clock.ts).
    const h = (require('node:perf_hooks') as typeof import('node:perf_hooks')).monitorEventLoopDelay({ resolution: 20 });
    loopDelay = h;
    setInterval(() => {
      lastWindow = delayOf(h);
      h.reset();
    }, LOOP_WINDOW_MS).unref();
  }
  loopDelay.enable();
  return loopDelay;
}

/** The /stats document; the metrics listener asks for it on every scrape (a cluster's primary sums its workers'). */
export type StatsDocument = Record<string, unknown>;
export type StatsSource = (opts: { gc: boolean }) => Promise<StatsDocument>;

interface FileLimits {
  soft?: number;
  hard?: number;
}

function fileLimits(): FileLimits {
  try {
    const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (!m) return {};
    const n = (v: string): number | undefined => (v === 'unlimited' ? undefined : Number(v));
    return { soft: n(m[1]!), hard: n(m[2]!) };
  } catch {
    return {};
  }
}

function openFiles(): number | undefined {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return undefined;
  }
}

/** Process metrics in libbeat's shape (upstream's elastic-agent-system-metrics report), mapped from Node's. */
export function processMetrics(): Record<string, unknown> {
  const mem = process.memoryUsage();
  const heap = getHeapStatistics();
  const cpu = process.cpuUsage();
  const [userMs, systemMs] = [cpu.user / 1000, cpu.system / 1000];
  const limits = fileLimits();
  const open = openFiles();
  const cgroup = cgroupMetrics();
  return {
    memstats: {
      // Go's cumulative allocation has no Node counterpart: the committed heap stands in for it.
      memory_total: heap.total_heap_size,
      memory_alloc: mem.heapUsed,
      memory_sys: mem.rss,
      gc_next: heap.total_heap_size,
      rss: mem.rss,
      heap_used: mem.heapUsed,
      heap_total: mem.heapTotal,
      external: mem.external,
      array_buffers: mem.arrayBuffers,
    },
    cpu: {
      user: { ticks: Math.round(userMs), time: { ms: Math.round(userMs) } },
      system: { ticks: Math.round(systemMs), time: { ms: Math.round(systemMs) } },
      total: { value: userMs + systemMs, ticks: Math.round(userMs + systemMs), time: { ms: Math.round(userMs + systemMs) } },
    },
    // Go's goroutines: here, the resources keeping the event loop busy (sockets, timers, …).
    runtime: { goroutines: process.getActiveResourcesInfo().length },
    info: { ephemeral_id: '', name: 'fleet-server', version: VERSION, uptime: { ms: Math.round(process.uptime() * 1000) } },
    ...(open !== undefined ? { handles: { open, limit: { hard: limits.hard ?? 0, soft: limits.soft ?? 0 } } } : {}),
    ...(cgroup !== undefined ? { cgroup } : {}),
  };
}

function routesDocument(fleet: Fleet, service: HttpService): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  for (const name of ROUTE_METRICS) {
    const c: RouteCounters = service.routes[name];
    out[name] = Object.fromEntries(COUNTER_KEYS.map((k) => [k, c[k]]));
  }
  out['artifacts'] = { ...out['artifacts'], not_found: fleet.artifacts.stats.notFound, throttle: fleet.artifacts.stats.throttled };
  return out;
}

export function statsDocument(fleet: Fleet, service: HttpService): StatsDocument {
  const proc = processMetrics();
  // Not started here: an instance's counts read at its stop must not load perf_hooks into a process that never reported.
  const delay = loopDelay;
  const tcp = service.tcp;
  return {
    http_server: { tcp_open: tcp.open, tcp_close: tcp.close, tcp_active: tcp.open - tcp.close, routes: routesDocument(fleet, service), ...proc },
    beat: proc,
    // Beyond upstream: what this server knows that Go's does not show.
    fleet: {
      status: fleet.health.current.state,
      checkin: { held: fleet.checkins.heldCount },
      policy: { waiting: fleet.policies.waiting() },
      bookkeeping: { pending: fleet.bookkeeper.size },
      auth_cache: { hits: fleet.auth.stats.hits, misses: fleet.auth.stats.misses },
      http: { in_flight: service.inFlightRequests, connections: service.openConnections, admission: service.admission },
      // The last whole minute's; the first minute, since start.
      event_loop: { delay: lastWindow ?? (delay ? delayOf(delay) : { p50_ms: 0, p99_ms: 0, max_ms: 0 }) },
    },
  };
}

interface Sample {
  name: string;
  type: 'counter' | 'gauge';
  value: number;
  help?: string;
  labels?: Record<string, string>;
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

/** The text exposition format, version 0.0.4: one family per name, TYPE before its samples. */
export function prometheusText(samples: Sample[]): string {
  const lines: string[] = [];
  const byName = new Map<string, Sample[]>();
  for (const s of samples) byName.set(s.name, [...(byName.get(s.name) ?? []), s]);
  for (const [name, family] of byName) {
    if (family[0]!.help) lines.push(`# HELP ${name} ${family[0]!.help}`);
    lines.push(`# TYPE ${name} ${family[0]!.type}`);
    for (const s of family) {
      const labels = s.labels ? `{${Object.entries(s.labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(',')}}` : '';
      lines.push(`${name}${labels} ${Number.isFinite(s.value) ? s.value : 0}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

class Scrapes {
  inFlight = 0;
  readonly byCode = new Map<string, number>([['200', 0], ['500', 0], ['503', 0]]);
}

/** A number in the stats document at a dotted path (0 when absent). */
function at(doc: StatsDocument, path: string): number {
  let v: unknown = doc;
  for (const k of path.split('.')) v = v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined;
  return typeof v === 'number' ? v : 0;
}

/** Upstream's metric names and types (its custom registry: no process metrics), then this server's own; all read from /stats. */
function metricSamples(doc: StatsDocument, scrapes: Scrapes): Sample[] {
  const out: Sample[] = [
    { name: 'http_server_tcp_open', type: 'counter', value: at(doc, 'http_server.tcp_open') },
    { name: 'http_server_tcp_close', type: 'counter', value: at(doc, 'http_server.tcp_close') },
    { name: 'http_server_tcp_active', type: 'gauge', value: at(doc, 'http_server.tcp_active') },
  ];
  for (const route of ROUTE_METRICS) {
    for (const k of COUNTER_KEYS) out.push({ name: `http_server_routes_${route}_${k}`, type: k === 'active' ? 'gauge' : 'counter', value: at(doc, `http_server.routes.${route}.${k}`) });
  }
  out.push({ name: 'http_server_routes_artifacts_not_found', type: 'counter', value: at(doc, 'http_server.routes.artifacts.not_found') });
  out.push({ name: 'http_server_routes_artifacts_throttle', type: 'counter', value: at(doc, 'http_server.routes.artifacts.throttle') });
  out.push({ name: 'service_info', type: 'counter', value: 1, help: 'Service information', labels: { name: 'fleet-server', version: VERSION } });
  for (const [code, n] of scrapes.byCode) out.push({ name: 'promhttp_metric_handler_requests_total', type: 'counter', value: n, labels: { code } });
  out.push({ name: 'promhttp_metric_handler_requests_in_flight', type: 'gauge', value: scrapes.inFlight });
  // Beyond upstream.
  out.push({ name: 'fleet_server_checkin_held', type: 'gauge', value: at(doc, 'fleet.checkin.held'), help: 'Check-ins held as long polls' });
  out.push({ name: 'fleet_server_auth_cache_hits', type: 'counter', value: at(doc, 'fleet.auth_cache.hits'), help: 'API keys authenticated from the cache' });
  out.push({ name: 'fleet_server_auth_cache_misses', type: 'counter', value: at(doc, 'fleet.auth_cache.misses'), help: 'API keys authenticated by the store' });
  out.push({ name: 'fleet_server_connections_turned_away', type: 'counter', value: at(doc, 'fleet.http.admission.turned_away'), help: 'Connections over the cap answered 429 MaxConnections' });
  out.push({ name: 'fleet_server_connections_evicted', type: 'counter', value: at(doc, 'fleet.http.admission.evicted'), help: 'Unfinished or idle connections closed to make room' });
  out.push({ name: 'fleet_server_connections_dropped', type: 'counter', value: at(doc, 'fleet.http.admission.dropped'), help: 'Connections closed at accept with no room to answer them' });
  out.push({ name: 'fleet_server_connections_handed_off', type: 'counter', value: at(doc, 'fleet.http.admission.handed_off'), help: 'Connections a full worker passed to a worker with room' });
  out.push({ name: 'fleet_server_connections_adopted', type: 'counter', value: at(doc, 'fleet.http.admission.adopted'), help: 'Connections taken from a full worker' });
  out.push({ name: 'fleet_server_connections_returned', type: 'counter', value: at(doc, 'fleet.http.admission.returned'), help: 'Connections handed off and given back: no worker had room' });
  out.push({ name: 'fleet_server_event_loop_delay_p99_seconds', type: 'gauge', value: at(doc, 'fleet.event_loop.delay.p99_ms') / 1e3, help: 'Event-loop delay, 99th percentile over the last minute' });
  out.push({ name: 'fleet_server_event_loop_delay_max_seconds', type: 'gauge', value: at(doc, 'fleet.event_loop.delay.max_ms') / 1e3, help: 'Longest event-loop delay over the last minute' });
  return out;
}

function json(res: http.ServerResponse, doc: unknown, pretty: boolean): void {
  const text = pretty ? JSON.stringify(doc, null, 2) : JSON.stringify(doc);
  res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * What the server instances this process ran before the current one counted (agent mode replaces its
 * instance when its configuration changes): carried into the current one's document, so its counters
 * keep growing as upstream's process-global ones do (stats-counters.ts).
 */
let carried: Record<string, unknown> = {};

const retired = new WeakSet<HttpService>();

/** The instance is stopping for good (its connections closed): what it counted is carried, once. */
export function retireInstanceCounters(fleet: Fleet, service: HttpService): void {
  if (retired.has(service)) return;
  retired.add(service);
  carried = add(carried, ended(statsDocument(fleet, service), 'instance')) as Record<string, unknown>;
}

/** The /stats document of this process alone. */
export function localStats(fleet: Fleet, service: HttpService): StatsSource {
  sampleEventLoop();
  // What the instances before this one counted: taken now, so that this instance's own counts, carried
  // at its stop, are not added to its documents a second time while it is still answering.
  const base = carried;
  return ({ gc }) => {
    // Only a process started with --expose-gc (benchmarks) can be asked to collect first.
    const collect = (globalThis as { gc?: () => void }).gc;
    if (gc && collect) collect();
    return Promise.resolve(withCarried(statsDocument(fleet, service), base));
  };
}

/**
 * One document for every request that comes while it is being made, and for STATS_REUSE_MS from its start:
 * each costs /proc reads (a scan of the open descriptors, which grows with the agents held) and, in a
 * cluster, a message to every worker. Without this a loop of requests kept every event loop busy; now at
 * most four documents a second are made.
 */
function shared(stats: StatsSource): StatsSource {
  const made = new Map<boolean, { at: number; doc: Promise<StatsDocument> }>();
  return ({ gc }) => {
    const now = performance.now();
    const known = made.get(gc);
    if (known && now - known.at < STATS_REUSE_MS) return known.doc;
    const doc = stats({ gc });
    made.set(gc, { at: now, doc });
    // A failure is not kept: the next request tries again.
    doc.catch(() => { if (made.get(gc)?.doc === doc) made.delete(gc); });
    return doc;
  };
}

export async function startMetrics(host: string, port: number, source: StatsSource, log: Logger): Promise<http.Server> {
  const scrapes = new Scrapes();
  const stats = shared(source);
  // Deadlines checked every second (Node's default 30 s would let silent connections hold the cap that long).
  const server = http.createServer({ connectionsCheckingInterval: 1000 }, (req, res) => void serve(req, res).catch((err: unknown) => {
    log.error({ err }, 'metrics request failed');
    if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' });
    res.end('metrics unavailable\n');
  }));
  const serve = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://metrics');
    const pretty = url.searchParams.has('pretty');
    switch (url.pathname) {
      case '/':
        json(res, { beat: 'fleet-server', name: 'fleet-server', hostname: hostname(), uuid: INSTANCE, version: VERSION }, pretty);
        return;
      case '/stats':
        json(res, await stats({ gc: url.searchParams.has('gc') }), pretty);
        return;
      case '/state':
      case '/dataset':
        json(res, {}, pretty);
        return;
      case '/metrics': {
        scrapes.inFlight++;
        try {
          const text = prometheusText(metricSamples(await stats({ gc: false }), scrapes));
          scrapes.byCode.set('200', (scrapes.byCode.get('200') ?? 0) + 1);
          res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
          res.end(text);
        } catch (err) {
          scrapes.byCode.set('500', (scrapes.byCode.get('500') ?? 0) + 1);
          log.error({ err }, 'metrics scrape failed');
          res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' });
          res.end('metrics unavailable\n');
        } finally {
          scrapes.inFlight--;
        }
        return;
      }
      default:
        res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' });
        res.end('404 page not found\n');
    }
  };
  server.maxConnections = MAX_CONNECTIONS;
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  server.requestTimeout = REQUEST_TIMEOUT_MS;
  // Elastic Agent asks for a unix socket (http.host: unix:///…/x.sock) to collect metrics from.
  const socketPath = host.startsWith('unix://') ? host.slice('unix://'.length) : undefined;
  // As upstream: a host name, http://host:port or unix:///path; any other scheme is a start-up error.
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(host) && !socketPath && !host.startsWith('http://')) {
    throw new Error(`http.host ${host}: the scheme is not supported (use a host name, http://host:port or unix:///path)`);
  }
  const tcpHost = listenHost(host.startsWith('http://') ? new URL(host).hostname.replace(/^\[(.*)\]$/, '$1') : host);
  const tcpPort = host.startsWith('http://') && new URL(host).port ? Number(new URL(host).port) : port;
  if (socketPath) rmSync(socketPath, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    if (socketPath) server.listen(socketPath, () => resolve());
    else server.listen(tcpPort, tcpHost, () => resolve());
  }).finally(() => server.removeAllListeners('error')).catch((err: unknown) => {
    // Named by its settings: "cannot listen on 127.0.0.1:5066" alone reads as the API's port.
    if (socketPath) throw new Error(`cannot listen on ${socketPath} (http.host): ${causeText(err)}`, { cause: err });
    const named = listenError(err, tcpHost, 'http.host', 'http.port');
    throw named !== err ? named : new Error(`cannot listen on ${tcpHost}:${tcpPort} (http.host, http.port): ${causeText(err)}`, { cause: err });
  });
  // Accept can still fail (no descriptors left): logged, never the end of the process (http/server.ts does the same).
  server.on('error', (err) => log.warn({ err }, 'metrics listener error'));
  // As upstream: the agent (same user or group) may connect, nobody else.
  if (socketPath) chmodSync(socketPath, 0o740);
  server.unref();
  log.info({ 'server.address': socketPath ?? `${tcpHost}:${tcpPort}` }, 'metrics listener');
  return server;
}
