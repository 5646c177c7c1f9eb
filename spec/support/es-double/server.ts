// The Elasticsearch double: an HTTP server that answers the calls Fleet Server (and Kibana's Fleet, for
// the documents it shares) makes, with Elasticsearch's documented semantics. Used in-process by tests
// and on its own by `npm run es-double`.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { mkdirSync, readFileSync, renameSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { Cluster, checkOpType, checkUpdateBody, hitOf, type OpMeta, type Refresh, type UpdateBody, autoId } from './cluster';
import { EsError, illegalArgument, indexNotFound, parsingException, rejected, resourceNotFound, validationFailed } from './errors';
import { Faults } from './faults';
import { Index } from './index';
import type { StoredDoc } from './query';
import { filterSource, parseSourceFilter } from './query';
import { makeServiceToken, Security, type ApiKeyRecord, type Principal } from './security';
import { mappingFor } from './mappings';
import { decodeCbor, encodeCbor, jsonReplacer, loadReviver, saveReplacer } from './cbor';

type Obj = Record<string, unknown>;

export interface EsDoubleOptions {
  host?: string;
  port?: number;
  serviceToken?: string;
  /** index.refresh_interval; 0 refreshes after every write. */
  refreshIntervalMs?: number;
  dataDir?: string;
  version?: string;
}

export interface EsDoubleStats {
  requests: Record<string, number>;
  docsWritten: number;
}

interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
  method: string;
  path: string;
  q: URLSearchParams;
  params: Record<string, string>;
  body: Buffer;
  principal: Principal;
  signal: AbortSignal;
}

interface Reply {
  status?: number;
  body?: unknown;
}

type Handler = (c: Ctx) => Promise<Reply> | Reply;

interface Route {
  kind: string;
  methods: string[];
  re: RegExp;
  names: string[];
  action: string;
  handler: Handler;
}

const JSON_TYPE = 'application/vnd.elasticsearch+json;compatible-with=9';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class EsDouble {
  readonly cluster = new Cluster();
  readonly security: Security;
  readonly faults = new Faults();
  readonly stats: EsDoubleStats = { requests: {}, docsWritten: 0 };
  readonly serviceToken: string;
  private server: http.Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly routes: Route[] = [];
  private refreshTimer: NodeJS.Timeout | undefined;
  /** Periodic refreshes skipped (holdRefresh): a test can then see what is not yet refreshed whatever the timing. */
  private refreshHeld = false;
  private saveTimer: NodeJS.Timeout | undefined;
  private port: number;
  private readonly host: string;
  private readonly version: string;
  private readonly refreshIntervalMs: number;

  constructor(private readonly opts: EsDoubleOptions = {}) {
    this.serviceToken = opts.serviceToken ?? makeServiceToken();
    this.security = new Security(new Set([this.serviceToken]));
    this.port = opts.port ?? 0;
    this.host = opts.host ?? '127.0.0.1';
    this.version = opts.version ?? '9.6.0';
    this.refreshIntervalMs = opts.refreshIntervalMs ?? 1000;
    this.cluster.onWrite = (n) => {
      this.stats.docsWritten += n;
      if (this.refreshIntervalMs === 0) this.cluster.refreshAll();
      this.scheduleSave();
    };
    this.defineRoutes();
    if (opts.dataDir) this.load(opts.dataDir);
  }

  get url(): string {
    return `http://${this.host}:${this.port}`;
  }

  async start(): Promise<this> {
    const server = http.createServer({ keepAliveTimeout: 60_000, requestTimeout: 0 }, (req, res) => void this.handle(req, res));
    server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.once('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, this.host, () => resolve());
    });
    this.port = (server.address() as { port: number }).port;
    this.server = server;
    if (this.refreshIntervalMs > 0 && !this.refreshTimer) {
      this.refreshTimer = setInterval(() => {
        if (!this.refreshHeld) this.cluster.refreshAll();
      }, this.refreshIntervalMs);
      this.refreshTimer.unref();
    }
    return this;
  }

  /** Skips the periodic refreshes until released (explicit and refresh=true ones still happen). */
  holdRefresh(held: boolean): void {
    this.refreshHeld = held;
  }

  /** Stops listening and drops every connection, as a crashed or stopped node would. */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) {
      const closed = new Promise<void>((r) => server.close(() => r()));
      for (const s of this.sockets) s.destroy();
      await closed;
    }
    if (this.refreshTimer) clearInterval(this.refreshTimer);
    this.refreshTimer = undefined;
    this.saveNow();
  }

  /** Refuses connections for `ms`, then serves again on the same port with the same data. */
  async down(ms: number): Promise<void> {
    await this.stop();
    await sleep(ms);
    await this.start();
  }

  // ---- persistence (--data DIR) ----

  private scheduleSave(): void {
    if (!this.opts.dataDir || this.saveTimer) return;
    this.saveTimer = setTimeout(() => this.saveNow(), 200);
    this.saveTimer.unref();
  }

  private saveNow(): void {
    if (this.saveTimer) clearTimeout(this.saveTimer);
    this.saveTimer = undefined;
    const dir = this.opts.dataDir;
    if (!dir) return;
    mkdirSync(dir, { recursive: true });
    const state = {
      indices: [...this.cluster.indices.values()].map((i) => ({ name: i.name, dataStream: i.dataStream, maxSeqNo: i.maxSeqNo, docs: [...i.docs.values()] })),
      aliases: [...this.cluster.aliases], dataStreams: [...this.cluster.dataStreams], apiKeys: [...this.security.keys.values()],
      serviceTokens: [...this.security.serviceTokens],
    };
    writeFileSync(join(dir, 'state.json.tmp'), JSON.stringify(state, saveReplacer));
    renameSync(join(dir, 'state.json.tmp'), join(dir, 'state.json'));
  }

  private load(dir: string): void {
    const file = join(dir, 'state.json');
    if (!existsSync(file)) return;
    const state = JSON.parse(readFileSync(file, 'utf8'), loadReviver) as {
      indices: { name: string; dataStream?: string; maxSeqNo: number; docs: StoredDoc[] }[];
      aliases: [string, string][]; dataStreams: [string, string][]; apiKeys: ApiKeyRecord[]; serviceTokens: string[];
    };
    for (const [a, c] of state.aliases) this.cluster.aliases.set(a, c);
    for (const [a, c] of state.dataStreams) this.cluster.dataStreams.set(a, c);
    for (const i of state.indices) {
      const alias = [...this.cluster.aliases, ...this.cluster.dataStreams].find(([, c]) => c === i.name)?.[0];
      const idx = new Index(i.name, mappingFor(alias ?? i.name), i.dataStream);
      idx.load(i.docs, i.maxSeqNo);
      this.cluster.indices.set(i.name, idx);
    }
    for (const k of state.apiKeys) this.security.keys.set(k.id, k);
    for (const t of state.serviceTokens) this.security.serviceTokens.add(t);
  }

  // ---- request handling ----

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://double');
    const method = req.method ?? 'GET';
    const path = decodeURIComponent(url.pathname);
    const abort = new AbortController();
    res.once('close', () => abort.abort());
    try {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      let body = Buffer.concat(chunks);
      if (req.headers['content-encoding'] === 'gzip' && body.length) body = gunzipSync(body);
      if (path.startsWith('/_double/')) {
        this.send(res, method, 200, this.control(method, path, body));
        return;
      }
      const found = this.match(method, path);
      if (!found) {
        const known = this.routes.some((r) => r.re.test(path));
        throw known
          ? new EsError(405, 'method_not_allowed', `Incorrect HTTP method for uri [${req.url}] and method [${method}]`)
          : illegalArgument(`no handler found for uri [${req.url}] and method [${method}]`);
      }
      const { route, params } = found;
      this.stats.requests[route.kind] = (this.stats.requests[route.kind] ?? 0) + 1;
      const fault = this.faults.take(route.kind, method, path);
      if (fault?.delayMs) await sleep(fault.delayMs);
      if (fault?.rawBody !== undefined) {
        res.writeHead(fault.status ?? 200, { 'X-Elastic-Product': 'Elasticsearch', 'Content-Type': 'application/json' });
        res.end(fault.rawBody);
        return;
      }
      const injected = fault?.status ? (fault.status === 429 ? rejected() : new EsError(fault.status, fault.status === 503 ? 'unavailable_shards_exception' : 'double_fault_injection',
        `fault injected on [${route.kind}]`)) : undefined;
      if (injected && !fault?.afterServing) throw injected;
      const ct = String(req.headers['content-type'] ?? '');
      if (body.length > 0 && ct && !/json|ndjson|cbor/.test(ct)) {
        this.send(res, method, 406, { error: `Content-Type header [${ct}] is not supported`, status: 406 });
        return;
      }
      const principal = this.security.authenticate(req.headers.authorization);
      this.security.authorize(principal, route.action);
      const ctx: Ctx = { req, res, method, path, q: url.searchParams, params, body, principal, signal: abort.signal };
      if (fault?.itemStatus) Object.assign(ctx, { itemStatus: fault.itemStatus, itemIds: fault.itemIds });
      const reply = await route.handler(ctx);
      if (injected) throw injected;
      this.send(res, method, reply.status ?? 200, reply.body);
    } catch (err) {
      const e = err instanceof EsError ? err
        : err instanceof SyntaxError ? new EsError(400, 'x_content_parse_exception', `[1:1] ${err.message}`)
          : new EsError(500, 'exception', String((err as Error)?.message ?? err));
      this.send(res, method, e.status, e.envelope(), e.headers);
    }
  }

  /** Answers in CBOR when the client accepts it (as Elasticsearch's XContent negotiation does), else JSON. */
  private send(res: ServerResponse, method: string, status: number, body: unknown, headers: Record<string, string | string[]> = {}): void {
    if (res.destroyed) return;
    const cbor = /application\/(vnd\.elasticsearch\+)?cbor/.test(String(res.req?.headers.accept ?? ''));
    const out = body === undefined ? Buffer.alloc(0) : cbor ? encodeCbor(body) : Buffer.from(JSON.stringify(body, jsonReplacer));
    const type = cbor ? 'application/cbor' : JSON_TYPE;
    res.writeHead(status, { ...headers, 'X-Elastic-Product': 'Elasticsearch', 'Content-Type': type, 'Content-Length': out.length });
    res.end(method === 'HEAD' ? undefined : out);
  }

  private match(method: string, path: string): { route: Route; params: Record<string, string> } | undefined {
    for (const route of this.routes) {
      if (!route.methods.includes(method)) continue;
      const m = route.re.exec(path);
      if (!m) continue;
      const params: Record<string, string> = {};
      route.names.forEach((n, i) => (params[n] = m[i + 1]!));
      return { route, params };
    }
    return undefined;
  }

  private route(kind: string, methods: string, pattern: string, action: string, handler: Handler): void {
    const names: string[] = [];
    const re = new RegExp(`^${pattern.replace(/\{(\w+)\}/g, (_, n: string) => {
      names.push(n);
      return '([^/]+)';
    })}/?$`);
    this.routes.push({ kind, methods: methods.split('|'), re, names, action, handler });
  }

  private control(method: string, path: string, body: Buffer): unknown {
    if (path === '/_double/stats') return this.stats;
    if (path === '/_double/faults' && method === 'POST') {
      this.faults.add(JSON.parse(body.toString()) as never);
      return { acknowledged: true };
    }
    if (path === '/_double/faults' && method === 'DELETE') {
      this.faults.clear();
      return { acknowledged: true };
    }
    if (path === '/_double/refresh') {
      this.cluster.refreshAll();
      return { acknowledged: true };
    }
    throw illegalArgument(`unknown double control [${path}]`);
  }

  // ---- routes ----

  private defineRoutes(): void {
    const c = this.cluster;
    // Document bodies may be CBOR (upstream writes upload chunks so); everything else is JSON.
    const json = (x: Ctx): Obj => {
      if (!x.body.length) return {};
      return /cbor/.test(String(x.req.headers['content-type'] ?? '')) ? decodeCbor(x.body) as Obj : JSON.parse(x.body.toString()) as Obj;
    };
    const refreshParam = (x: Ctx): Refresh | undefined => parseRefresh(x.q.get('refresh'));
    const writeReply = async (x: Ctx, idx: Index, r: { result: string; doc: StoredDoc }, extra: Obj = {}): Promise<Obj> => {
      const forced = r.result === 'noop' ? false : await c.afterWrite(idx, r.doc.seqNo, refreshParam(x));
      return {
        _index: idx.name, _id: r.doc.id, _version: r.doc.version, result: r.result,
        _shards: r.result === 'noop' ? { total: 0, successful: 0, failed: 0 } : { total: 1, successful: 1, failed: 0 },
        _seq_no: r.doc.seqNo, _primary_term: 1, ...(forced ? { forced_refresh: true } : {}), ...extra,
      };
    };
    const seqParam = (x: Ctx): OpMeta => ({ if_seq_no: longParam(x.q, 'if_seq_no'), if_primary_term: longParam(x.q, 'if_primary_term') });

    this.route('info', 'GET|HEAD', '/', 'cluster:monitor/main', () => ({
      body: {
        name: 'es-double', cluster_name: 'es-double', cluster_uuid: 'AAAAAAAAAAAAAAAAAAAAAA',
        version: {
          number: this.version, build_flavor: 'default', build_type: 'docker', build_hash: '0000000', build_date: '2026-01-01T00:00:00Z',
          build_snapshot: false, lucene_version: '10.2.2', minimum_wire_compatibility_version: '8.19.0', minimum_index_compatibility_version: '8.0.0',
        },
        tagline: 'You Know, for Search',
      },
    }));

    // ---- security ----
    this.route('authenticate', 'GET', '/_security/_authenticate', 'cluster:admin/xpack/security/user/authenticate', (x) => ({ body: this.security.whoami(x.principal) }));
    this.route('api_key_create', 'PUT|POST', '/_security/api_key', 'cluster:admin/xpack/security/api_key/create', (x) => ({ body: this.security.create(x.principal, json(x)) }));
    this.route('api_key_get', 'GET', '/_security/api_key', 'cluster:admin/xpack/security/api_key/get', (x) => this.security.get(x.principal, x.q));
    this.route('api_key_invalidate', 'DELETE', '/_security/api_key', 'cluster:admin/xpack/security/api_key/invalidate', (x) => ({ body: this.security.invalidate(x.principal, json(x)) }));
    this.route('api_key_bulk_update', 'POST', '/_security/api_key/_bulk_update', 'cluster:admin/xpack/security/api_key/update', (x) => ({ body: this.security.bulkUpdate(x.principal, json(x)) }));
    this.route('api_key_update', 'PUT', '/_security/api_key/{id}', 'cluster:admin/xpack/security/api_key/update', (x) => ({ body: this.security.update(x.principal, x.params['id']!, json(x)) }));

    // ---- Fleet plugin ----
    this.route('secret_post', 'POST', '/_fleet/secret', 'cluster:admin/fleet/secrets/post', (x) => {
      const b = json(x);
      if (typeof b['value'] !== 'string') throw validationFailed('value is missing');
      const id = autoId();
      c.index('.fleet-secrets', id, { value: b['value'] });
      c.mustResolve('.fleet-secrets').refresh();
      return { body: { id } };
    });
    this.route('secret_get', 'GET', '/_fleet/secret/{id}', 'cluster:admin/fleet/secrets/get', (x) => {
      const doc = c.resolve('.fleet-secrets')?.docs.get(x.params['id']!);
      if (!doc) throw resourceNotFound(`No secret with id [${x.params['id']}]`);
      return { body: { id: doc.id, value: doc.source['value'] } };
    });
    this.route('secret_delete', 'DELETE', '/_fleet/secret/{id}', 'cluster:admin/fleet/secrets/delete', (x) => {
      const idx = c.resolve('.fleet-secrets');
      if (!idx?.docs.has(x.params['id']!)) throw resourceNotFound(`No secret with id [${x.params['id']}]`);
      c.delete('.fleet-secrets', x.params['id']!);
      return { body: { deleted: true } };
    });
    this.route('global_checkpoints', 'GET', '/{index}/_fleet/global_checkpoints', 'indices:monitor/fleet/global_checkpoints', (x) => this.globalCheckpoints(x));
    this.route('fleet_search', 'GET|POST', '/{index}/_fleet/_fleet_search', 'indices:data/read/fleet/search', async (x) => {
      const wait = x.q.get('wait_for_checkpoints');
      if (x.params['index']!.includes(',')) throw illegalArgument('Fleet search API only supports searching a single index.');
      if (wait !== null && wait !== '') await this.waitForCheckpoints(x.params['index']!, wait.split(',').map(parseLong), x.q.get('wait_for_checkpoints_timeout'));
      return { body: c.search(x.params['index'], json(x), Object.fromEntries(x.q)) };
    });
    this.route('fleet_msearch', 'GET|POST', '/_fleet/_fleet_msearch', 'indices:data/read/fleet/msearch', (x) => this.msearch(x, undefined, true));
    this.route('fleet_msearch', 'GET|POST', '/{index}/_fleet/_fleet_msearch', 'indices:data/read/fleet/msearch', (x) => this.msearch(x, x.params['index'], true));

    // ---- multi-document ----
    this.route('bulk', 'POST|PUT', '/_bulk', 'indices:data/write/bulk', (x) => this.bulk(x, undefined));
    this.route('bulk', 'POST|PUT', '/{index}/_bulk', 'indices:data/write/bulk', (x) => this.bulk(x, x.params['index']));
    this.route('mget', 'GET|POST', '/_mget', 'indices:data/read/mget', (x) => this.mget(x, undefined));
    this.route('mget', 'GET|POST', '/{index}/_mget', 'indices:data/read/mget', (x) => this.mget(x, x.params['index']));
    this.route('msearch', 'GET|POST', '/_msearch', 'indices:data/read/msearch', (x) => this.msearch(x, undefined, false));
    this.route('msearch', 'GET|POST', '/{index}/_msearch', 'indices:data/read/msearch', (x) => this.msearch(x, x.params['index'], false));
    this.route('search', 'GET|POST', '/_search', 'indices:data/read/search', (x) => ({ body: c.search(undefined, json(x), Object.fromEntries(x.q)) }));
    this.route('search', 'GET|POST', '/{index}/_search', 'indices:data/read/search', (x) => ({ body: c.search(x.params['index'], json(x), Object.fromEntries(x.q)) }));
    this.route('count', 'GET|POST', '/{index}/_count', 'indices:data/read/search', (x) => ({ body: c.count(x.params['index'], json(x), x.q.get('ignore_unavailable') === 'true') }));
    this.route('refresh', 'GET|POST', '/_refresh', 'indices:admin/refresh', () => {
      c.refreshAll();
      return { body: { _shards: { total: c.indices.size, successful: c.indices.size, failed: 0 } } };
    });
    this.route('refresh', 'GET|POST', '/{index}/_refresh', 'indices:admin/refresh', (x) => {
      const list = c.targets(x.params['index'], x.q.get('ignore_unavailable') === 'true');
      for (const idx of list) idx.refresh();
      return { body: { _shards: { total: list.length, successful: list.length, failed: 0 } } };
    });
    for (const kind of ['update', 'delete'] as const) {
      this.route(`${kind}_by_query`, 'POST', `/{index}/_${kind}_by_query`, `indices:data/write/${kind}/byquery`, (x) => {
        if (x.q.get('refresh') === 'wait_for') throw illegalArgument('[refresh] parameter does not accept [wait_for] for by-query operations');
        const refresh = boolParam(x.q, 'refresh');
        const conflicts = x.q.get('conflicts') ?? 'abort';
        if (conflicts !== 'abort' && conflicts !== 'proceed') throw illegalArgument(`conflicts may only be "proceed" or "abort" but was [${conflicts}]`);
        const out = c.byQuery(kind, x.params['index']!, json(x), conflicts === 'proceed');
        if (refresh) for (const idx of c.targets(x.params['index'])) idx.refresh();
        // The answer's status is the highest of its failures' (BulkIndexByScrollResponseContentListener).
        return { status: Math.max(200, ...(out['failures'] as { status: number }[]).map((f) => f.status)), body: out };
      });
    }

    // ---- single documents ----
    this.route('index', 'PUT|POST', '/{index}/_doc/{id}', 'indices:data/write/index', async (x) => {
      const meta = { ...seqParam(x), op_type: x.q.get('op_type') ?? undefined };
      checkOpType(meta.op_type);
      const { idx, r } = c.index(x.params['index']!, x.params['id'], json(x), meta);
      return { status: r.result === 'created' ? 201 : 200, body: await writeReply(x, idx, r) };
    });
    this.route('index', 'POST', '/{index}/_doc', 'indices:data/write/index', async (x) => {
      const { idx, r } = c.index(x.params['index']!, undefined, json(x), { ...seqParam(x), op_type: 'create' });
      return { status: 201, body: await writeReply(x, idx, r) };
    });
    this.route('create', 'PUT|POST', '/{index}/_create/{id}', 'indices:data/write/index', async (x) => {
      const { idx, r } = c.index(x.params['index']!, x.params['id'], json(x), { ...seqParam(x), op_type: 'create' });
      return { status: 201, body: await writeReply(x, idx, r) };
    });
    this.route('get', 'GET|HEAD', '/{index}/_doc/{id}', 'indices:data/read/get', (x) => {
      const { idx, doc } = c.get(x.params['index']!, x.params['id']!);
      if (!doc) return { status: 404, body: { _index: idx.name, _id: x.params['id'], found: false } };
      const shape = getShape(idx, doc, sourceParam(x.q.get('_source') ?? undefined, x.q.get('_source_includes'), x.q.get('_source_excludes'), x.q.get('stored_fields')),
        x.q.get('_source_includes') ?? undefined, x.q.get('_source_excludes') ?? undefined);
      const stored = storedFields(idx, doc, x.q.get('stored_fields'));
      return { body: stored ? { ...shape, fields: stored } : shape };
    });
    this.route('delete', 'DELETE', '/{index}/_doc/{id}', 'indices:data/write/delete', async (x) => {
      const { idx, r } = c.delete(x.params['index']!, x.params['id']!, seqParam(x));
      return { status: r.result === 'not_found' ? 404 : 200, body: await writeReply(x, idx, r) };
    });
    this.route('update', 'POST', '/{index}/_update/{id}', 'indices:data/write/update', async (x) => {
      const body = json(x) as UpdateBody;
      checkUpdateBody(body);
      const meta = { ...seqParam(x), retry_on_conflict: Number(x.q.get('retry_on_conflict') ?? 0) };
      const { idx, r } = c.update(x.params['index']!, x.params['id']!, body, meta);
      const extra = body._source !== undefined || x.q.get('_source') ? { get: { ...getShape(idx, r.doc, body._source ?? x.q.get('_source')), _index: undefined } } : {};
      return { status: r.result === 'created' ? 201 : 200, body: await writeReply(x, idx, r, extra) };
    });

    // ---- index administration (enough for clean-up and existence checks) ----
    this.route('index_exists', 'HEAD', '/{index}', 'indices:admin/get', (x) => ({ status: c.resolve(x.params['index']!) ? 200 : 404 }));
    this.route('index_create', 'PUT', '/{index}', 'indices:admin/create', (x) => {
      if (c.resolve(x.params['index']!)) {
        throw new EsError(400, 'resource_already_exists_exception', `index [${x.params['index']}] already exists`, { index: x.params['index'] });
      }
      c.create(x.params['index']!);
      return { body: { acknowledged: true, shards_acknowledged: true, index: x.params['index'] } };
    });
    this.route('index_delete', 'DELETE', '/{index}', 'indices:admin/delete', (x) => {
      const idx = c.mustResolve(x.params['index']!);
      c.indices.delete(idx.name);
      for (const m of [c.aliases, c.dataStreams]) for (const [a, n] of m) if (n === idx.name) m.delete(a);
      return { body: { acknowledged: true } };
    });
  }

  // ---- Fleet global checkpoints ----

  private async globalCheckpoints(x: Ctx): Promise<Reply> {
    const index = x.params['index']!;
    const advance = boolParam(x.q, 'wait_for_advance') ?? false;
    const waitIndex = boolParam(x.q, 'wait_for_index') ?? false;
    if (waitIndex && !advance) throw validationFailed('If wait_for_index is set to true, wait_for_advance must also be set to true.');
    const cps = (x.q.get('checkpoints') ?? '').split(',').filter(Boolean).map(parseLong);
    if (cps.some((n) => n < -1)) throw validationFailed('All checkpoints must be >= -1');
    if (cps.length > 1) {
      throw new EsError(400, 'status_exception', `number of checkpoints must equal number of shards. [shard count: 1, checkpoint count: ${cps.length}]`);
    }
    const checkpoint = cps[0] ?? -1;
    const timeoutMs = parseTime(x.q.get('timeout') ?? '30s');
    const deadline = Date.now() + timeoutMs;
    let idx = this.cluster.resolve(index);
    if (!idx && waitIndex) {
      while (!idx && Date.now() < deadline && !x.signal.aborted) {
        await sleep(50);
        idx = this.cluster.resolve(index);
      }
    }
    if (!idx) throw indexNotFound(index);
    if (!advance) return { body: { global_checkpoints: [idx.maxSeqNo], timed_out: false } };
    const advanced = await idx.waitForAdvance(checkpoint, Math.max(0, deadline - Date.now()), x.signal);
    return { body: { global_checkpoints: [idx.maxSeqNo], timed_out: !advanced } };
  }

  /** wait_for_checkpoints: a refresh must cover seq_no N; N past the last issued seq_no is a 400. */
  private async waitForCheckpoints(index: string, cps: number[], timeout: string | null): Promise<void> {
    const idx = this.cluster.resolve(index);
    if (!idx) throw indexNotFound(index);
    if (cps.length !== 1) throw illegalArgument(`The number of checkpoints [${cps.length}] must equal the number of shards [1]`);
    const n = cps[0]!;
    if (n > idx.maxSeqNo) {
      throw new EsError(400, 'search_phase_execution_exception', 'all shards failed', { phase: 'query', grouped: true },
        illegalArgument(`Cannot wait for unissued seqNo checkpoint [wait_for_checkpoint=${n}, max_issued_seqNo=${idx.maxSeqNo}]`));
    }
    if (idx.refreshedSeqNo < n) idx.refresh();
    if (!(await idx.waitForRefresh(n, parseTime(timeout ?? '30s')))) {
      throw new EsError(500, 'search_phase_execution_exception', 'all shards failed', { phase: 'query', grouped: true },
        new EsError(500, 'elasticsearch_timeout_exception', `Wait for seq_no [${n}] refreshed timed out`));
    }
  }

  // ---- NDJSON APIs ----

  private async msearch(x: Ctx, pathIndex: string | undefined, fleet: boolean): Promise<Reply> {
    const lines = ndjson(x.body);
    if (lines.length % 2 !== 0) throw illegalArgument('The msearch request must be terminated by a newline [\n]');
    // Header keys are checked while the request is parsed: an unknown one fails the whole request
    // (MultiSearchRequest.readMultiLineFormat); only the Fleet endpoint takes its two.
    for (let i = 0; i < lines.length; i += 2) {
      for (const key of Object.keys((lines[i] ?? {}) as Obj)) {
        if (!MSEARCH_HEADER_KEYS.has(key) && !(fleet && FLEET_MSEARCH_HEADER_KEYS.has(key))) {
          throw illegalArgument(`key [${key}] is not supported in the metadata section`);
        }
      }
    }
    const responses: Obj[] = [];
    for (let i = 0; i < lines.length; i += 2) {
      const header = lines[i] as Obj;
      const body = lines[i + 1] as Obj;
      const started = Date.now();
      try {
        const index = (header['index'] as string | string[] | undefined) ?? pathIndex;
        const wait = header['wait_for_checkpoints'] as number[] | undefined;
        if (fleet && wait?.length) {
          if (index === undefined) throw illegalArgument('Fleet search API param wait_for_checkpoints is only supported with an index to search specified');
          if (Array.isArray(index) && index.length !== 1) throw illegalArgument('Fleet search API only supports searching a single index.');
          await this.waitForCheckpoints(Array.isArray(index) ? index[0]! : index, wait.map((n) => parseLong(String(n))), timeValueOf(header['wait_for_checkpoints_timeout']));
        }
        const r = this.cluster.search(index, body, { ignore_unavailable: header['ignore_unavailable'] });
        responses.push({ ...r, took: Date.now() - started, status: 200 });
      } catch (err) {
        const e = err instanceof EsError ? err : new EsError(500, 'exception', String(err));
        responses.push({ ...e.envelope(), status: e.status });
      }
    }
    return { body: { took: 1, responses } };
  }

  private mget(x: Ctx, pathIndex: string | undefined): Reply {
    const body = x.body.length ? (JSON.parse(x.body.toString()) as Obj) : {};
    const docs: Obj[] = (body['docs'] as Obj[] | undefined) ?? ((body['ids'] as string[] | undefined) ?? []).map((id): Obj => ({ _id: id }));
    if (boolParam(x.q, 'refresh')) for (const idx of this.cluster.indices.values()) idx.refresh();
    return {
      body: {
        docs: docs.map((d) => {
          const index = (d['_index'] as string | undefined) ?? pathIndex;
          const id = d['_id'] as string;
          if (!index) return { _index: null, _id: id, error: illegalArgument('index is missing').item() };
          const idx = this.cluster.resolve(index);
          if (!idx) return { _index: index, _id: id, error: indexNotFound(index).item() };
          const doc = idx.docs.get(id);
          if (!doc) return { _index: idx.name, _id: id, found: false };
          const storedParam = d['stored_fields'] !== undefined ? [d['stored_fields']].flat().join(',') : x.q.get('stored_fields');
          const shape = getShape(idx, doc, sourceParam(d['_source'] ?? x.q.get('_source') ?? undefined, x.q.get('_source_includes'), x.q.get('_source_excludes'), storedParam),
            x.q.get('_source_includes') ?? undefined, x.q.get('_source_excludes') ?? undefined);
          const stored = storedFields(idx, doc, storedParam);
          return stored ? { ...shape, fields: stored } : shape;
        }),
      },
    };
  }

  private async bulk(x: Ctx & { itemStatus?: number; itemIds?: string[] }, pathIndex: string | undefined): Promise<Reply> {
    const started = Date.now();
    const text = x.body.toString();
    if (text.length > 0 && !text.endsWith('\n')) throw illegalArgument('The bulk request must be terminated by a newline [\\n]');
    const lines = ndjson(x.body);
    // The whole body is parsed before any operation runs (BulkRequestParser): a malformed line fails the
    // request with nothing written.
    const ops: { op: string; meta: OpMeta & Obj; source: Obj | undefined }[] = [];
    let i = 0;
    while (i < lines.length) {
      const action = lines[i++] as Obj;
      const op = Object.keys(action)[0];
      if (!op || !['index', 'create', 'update', 'delete'].includes(op)) throw illegalArgument(`Malformed action/metadata line [${i}], expected one of [create, delete, index, update] but found [${op}]`);
      const meta = action[op] as OpMeta & Obj;
      if (Object.keys(action).length > 1 || meta === null || typeof meta !== 'object') throw illegalArgument(`Malformed action/metadata line [${i}], expected a simple value for field [${op}] but found [START_ARRAY]`);
      for (const key of Object.keys(meta)) {
        if (!BULK_META_KEYS.has(key)) throw illegalArgument(`Action/metadata line [${i}] contains an unknown parameter [${key}]`);
      }
      if (op === 'index' || op === 'create') checkOpType(meta.op_type);
      const source = op === 'delete' ? undefined : lines[i++] as Obj;
      if (op !== 'delete' && source === undefined) throw illegalArgument('The bulk request must be terminated by a newline [\\n]');
      if (op === 'update') checkUpdateBody(source);
      ops.push({ op, meta, source });
    }
    const refresh = parseRefresh(x.q.get('refresh'));
    const items: Obj[] = [];
    const touched = new Map<Index, number>();
    for (const { op, meta, source } of ops) {
      const index = meta._index ?? pathIndex;
      try {
        if (!index) throw validationFailed('index is missing');
        if (x.itemStatus && (!x.itemIds || x.itemIds.includes(meta._id ?? ''))) throw x.itemStatus === 429 ? rejected('bulk item') : new EsError(x.itemStatus, 'double_fault_injection', 'fault injected on bulk item');
        if (op !== 'create' && op !== 'index' && !meta._id) throw validationFailed('id is missing');
        const res = op === 'update' ? this.cluster.update(index, meta._id!, source as UpdateBody, meta)
          : op === 'delete' ? this.cluster.delete(index, meta._id!, meta)
            : this.cluster.index(index, meta._id, source!, { ...meta, op_type: op === 'create' ? 'create' : meta.op_type });
        const { idx, r } = res;
        if (r.result !== 'noop') touched.set(idx, Math.max(touched.get(idx) ?? -1, r.doc.seqNo));
        const status = r.result === 'created' ? 201 : r.result === 'not_found' ? 404 : 200;
        items.push({
          [op]: {
            _index: idx.name, _id: r.doc.id, _version: r.doc.version, result: r.result,
            _shards: r.result === 'noop' ? { total: 0, successful: 0, failed: 0 } : { total: 1, successful: 1, failed: 0 },
            _seq_no: r.doc.seqNo, _primary_term: 1, status,
          },
        });
      } catch (err) {
        const e = err instanceof EsError ? err : new EsError(500, 'exception', String(err));
        const idx = index ? this.cluster.resolve(index) : undefined;
        items.push({ [op]: { _index: idx?.name ?? index, _id: meta._id ?? null, status: e.status, error: e.item() } });
      }
    }
    let forced = false;
    for (const [idx, seq] of touched) forced = (await this.cluster.afterWrite(idx, seq, refresh)) || forced;
    const errors = items.some((it) => 'error' in (Object.values(it)[0] as Obj));
    return { body: { took: Date.now() - started, errors, items } };
  }
}

function getShape(idx: Index, doc: StoredDoc, source?: unknown, includes?: string, excludes?: string): Obj {
  const src = filterSource(doc.source, parseSourceFilter(source, includes, excludes));
  return {
    _index: idx.name, _id: doc.id, _version: doc.version, _seq_no: doc.seqNo, _primary_term: 1, found: true,
    ...(src !== undefined ? { _source: src } : {}),
  };
}

/**
 * `stored_fields`: only fields the mapping stores are returned (under `fields`, as arrays); a binary
 * field's value is its bytes (base64 in a JSON source, decoded as Elasticsearch stores it).
 */
function storedFields(idx: Index, doc: StoredDoc, param: string | null): Obj | undefined {
  if (param === null || param === '' || param === '_none_') return undefined;
  const out: Obj = {};
  for (const name of param.split(',')) {
    if (!idx.mapping.stored.has(name)) continue;
    const v = name.split('.').reduce<unknown>((o, k) => (o !== null && typeof o === 'object' ? (o as Obj)[k] : undefined), doc.source);
    if (v === undefined || v === null) continue;
    const values = Array.isArray(v) ? v : [v];
    out[name] = idx.mapping.fields.get(name) === 'binary'
      ? values.map((x) => (typeof x === 'string' ? new Uint8Array(Buffer.from(x, 'base64')) : x))
      : values;
  }
  return Object.keys(out).length ? out : undefined;
}

function ndjson(body: Buffer): unknown[] {
  const out: unknown[] = [];
  for (const line of body.toString().split('\n')) {
    if (line.trim() === '') continue;
    try {
      out.push(JSON.parse(line));
    } catch {
      throw parsingException(`Unexpected character in NDJSON line: ${line.slice(0, 40)}`);
    }
  }
  return out;
}

/** Elasticsearch time values: 240000ms, 4m, 30s, 1h. */
export function parseTime(v: string, setting = 'timeout'): number {
  // TimeValue.parseTimeValue: a unit is required, except for 0 and -1.
  if (v === '0' || v === '-1') return v === '0' ? 0 : MAX_TIMER_MS;
  const m = /^(\d+(?:\.\d+)?)\s*(nanos|micros|ms|s|m|h|d)$/.exec(v.trim());
  if (!m) {
    throw new EsError(400, 'parse_exception', `failed to parse setting [${setting}] with value [${v}] as a time value: unit is missing or unrecognized`);
  }
  const unit = { nanos: 1e-6, micros: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms'];
  return Math.min(MAX_TIMER_MS, Number(m[1]) * unit);
}

/** The longest wait a timer takes (Node fires at once beyond it): about 24.8 days, forever for a test. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A REST boolean/`wait_for` refresh parameter (the empty string is true). */
function parseRefresh(r: string | null): Refresh | undefined {
  if (r === null) return undefined;
  if (r === '' || r === 'true') return 'true';
  if (r === 'false' || r === 'wait_for') return r;
  throw illegalArgument(`Unknown value for refresh: [${r}].`);
}

/** A time value in a JSON header: a number is milliseconds (XContentMapValues.nodeTimeValue). */
function timeValueOf(v: unknown): string | null {
  if (v === undefined || v === null) return null;
  return typeof v === 'number' ? `${v}ms` : String(v);
}

/** Long.parseLong, as the REST layer parses a long parameter. */
function parseLong(v: string): number {
  if (!/^[-+]?\d+$/.test(v)) throw new EsError(400, 'number_format_exception', `For input string: "${v}"`);
  return Number(v);
}

/** RestRequest.paramAsBoolean: only true, false or the empty string (true). */
function boolParam(q: URLSearchParams, name: string): boolean | undefined {
  const v = q.get(name);
  if (v === null) return undefined;
  if (v === '' || v === 'true') return true;
  if (v === 'false') return false;
  throw illegalArgument(`Failed to parse value [${v}] only [true] or [false] are allowed.`);
}

function longParam(q: URLSearchParams, name: string): number | undefined {
  const v = q.get(name);
  if (v === null) return undefined;
  if (!/^[-+]?\d+$/.test(v)) throw illegalArgument(`Failed to parse long parameter [${name}] with value [${v}]`);
  return Number(v);
}

/**
 * Whether a GET or mget returns `_source`: as asked by `_source` / `_source_includes` / `_source_excludes`,
 * else not when `stored_fields` is given without `_source` among them (ShardGetService.normalizeFetchSourceContent).
 */
function sourceParam(source: unknown, includes: string | null, excludes: string | null, storedFields: string | null | undefined): unknown {
  if (source !== undefined || includes || excludes) return source;
  if (storedFields !== null && storedFields !== undefined && !storedFields.split(',').includes('_source')) return false;
  return undefined;
}

/** Header keys of `_msearch` (MultiSearchRequest.readMultiLineFormat). */
const MSEARCH_HEADER_KEYS = new Set(['index', 'indices', 'search_type', 'ccs_minimize_roundtrips', 'request_cache', 'preference', 'routing',
  'allow_partial_search_results', 'expand_wildcards', 'ignore_unavailable', 'allow_no_indices', 'ignore_throttled']);
/** The keys the Fleet plugin's `_fleet_msearch` adds (RestFleetMultiSearchAction). */
const FLEET_MSEARCH_HEADER_KEYS = new Set(['wait_for_checkpoints', 'wait_for_checkpoints_timeout']);
/** Keys of a `_bulk` action line (BulkRequestParser). */
const BULK_META_KEYS = new Set(['_index', '_id', 'routing', 'op_type', 'version', 'version_type', 'if_seq_no', 'if_primary_term',
  'retry_on_conflict', 'pipeline', '_source', 'require_alias', 'require_data_stream', 'list_executed_pipelines', 'dynamic_templates']);

export { hitOf };
