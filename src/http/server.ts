// The HTTP(S) listeners: external (:8220) and internal (localhost:8221), one request pipeline:
// request id → connection limit → route → route limit → API version → auth → User-Agent → body →
// handler (upstream's middleware order). Every error on the way, routing included, is classified once
// (errors.ts) and answered in upstream's shape; nothing a client sends can end the process.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http, { ServerResponse, type IncomingMessage } from 'node:http';
import type https from 'node:https';
import net, { type AddressInfo, type Socket } from 'node:net';
import type { Logger } from 'pino';
import type { FleetServerConfig } from '../config/config';
import { ROUTES as ROUTE_NAMES, type ResolvedLimits, type RouteName } from '../config/limits';
import { FleetError, isFleetError } from '../fleet/errors';
import type { Fleet } from '../fleet/fleet';
import { checkApiVersion, DEFAULT_API_VERSION } from './api-version';
import { BodyBudget, decodeBinary, decodeJson, readBody } from './body';
import { CertificateReloader } from './cert-reload';
import { admissionLimits, ConnectionGuard, openFileLimit, type AdmissionLimits } from './connections';
import { AcceptHandoff, type ClientHandle, type HandoffChannel } from './handoff';
import { routeCounters, type RouteCounters } from './counters';
import { classify, HttpError, rawBareResponse, rawErrorResponse, writeBareError, writeError, type ErrorClass, type LogLevel } from './errors';
import { RouteLimiter } from './limiter';
import { apiKeyFromHeader } from './request';
import type { BaseContext, RequestContext, RouteSpec, UpgradeContext } from './route';
import { Router } from './router';
import { ROUTES } from './routes';
import { tlsCredentials, tlsOptions } from './tls';
import { refuseHandshake } from './websocket';
import { monotonicMs } from '../util/clock';
import { listenError, listenHost } from './listen-host';

/** What Go's net/http reads past MaxHeaderBytes before it answers 431. */
const GO_HEADER_SLACK = 4096;

/** Bytes all request bodies may hold in memory at once (raw and inflated). */
const BODY_BUDGET_BYTES = 256 * 1024 * 1024;
/** Connections the internal listener (localhost, the co-located agent) may hold; kept out of the external cap. */
const INTERNAL_CAP = 256;
/** How often Node checks header and request deadlines (its default, 30 s, lets slow headers live 6× read_header). */
const DEADLINE_CHECK_MS = 500;
/**
 * At a stop, how long a keep-alive connection that has just been answered stays open for the request
 * its client may already be sending; the clients of real agents send their next one within milliseconds.
 */
const IDLE_GRACE_MS = 1000;
/** A drain's last second at least, for requests in flight once the held polls have been answered. */
const MIN_AFTER_RELEASE_MS = 1000;

/** Characters of a request's path an access log line keeps. */
const LOGGED_PATH_MAX = 256;

/**
 * A request's path as its log line says it (ECS url.path: no query string), cut to LOGGED_PATH_MAX:
 * every refused request is logged, before any limiter, and its URL is the client's (up to the header limit).
 */
export function loggedPath(url: string | undefined): string {
  const u = url ?? '';
  const q = u.indexOf('?');
  const path = q < 0 ? u : u.slice(0, q);
  return path.length > LOGGED_PATH_MAX ? `${path.slice(0, LOGGED_PATH_MAX)}...` : path;
}

const LOGGED_MESSAGE_MAX = 1024;

/** An error message as a log line carries it: some quote the client's text, which may be a body's worth. */
function loggedMessage(message: string): string {
  return message.length > LOGGED_MESSAGE_MAX ? `${message.slice(0, LOGGED_MESSAGE_MAX)}…` : message;
}

/** The TCP socket under a request (a TLS socket's parent), as counted at accept. */
function tcpSocket(s: Socket): Socket {
  return (s as Socket & { _parent?: Socket })._parent ?? s;
}

export interface HttpOptions {
  /**
   * TLS session-ticket keys (48 bytes) shared by every process serving the listeners, so an agent
   * reconnecting to another cluster worker still resumes its session; else each process makes its own.
   */
  ticketKeys?: Buffer;
  /**
   * Listen with SO_REUSEPORT (Linux): each of several processes binds the same port and the kernel
   * spreads connections over them, instead of one process accepting every connection and passing it on.
   */
  reusePort?: boolean;
  /** A cluster worker's way to pass connections it has no room for to a sibling (handoff.ts). */
  handoff?: HandoffChannel;
}

const LEVEL_RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

export class HttpService {
  private readonly servers: (http.Server | https.Server)[] = [];
  private certificates: CertificateReloader | undefined;
  private readonly limiters: Record<RouteName, RouteLimiter>;
  private readonly router: Router;
  /** The external listener's admission; the internal one (localhost) has its own, so a flood on one cannot evict the other's connections. */
  private readonly guard: ConnectionGuard;
  private readonly internalGuard: ConnectionGuard;
  private readonly bodyBudget = new BodyBudget(BODY_BUDGET_BYTES);
  /** Per route, as upstream's metrics name them (read by the metrics listener). */
  readonly routes = routeCounters();
  /** Set when stopping: every answer from then on closes its connection. */
  private draining = false;
  /**
   * Responses that say `Connection: close` once the server drains: an agent answered during the drain
   * (held polls included) reconnects to another instance instead of re-polling on a socket this one is
   * about to close, which it would see as a reset.
   */
  private readonly responseClass = answerResponse(() => this.draining);
  /** Connections Node timed out mid-request (answered 408 by clientError). */
  private readonly timedOut = new WeakSet<Socket>();
  /** Connections given a second header period because nothing of them had been read yet (clientError). */
  private readonly unreadGrace = new WeakSet<Socket>();
  private inFlight = 0;
  /** Upgraded sessions (OpAMP WebSockets): told to close when the server stops. */
  private readonly sessions = new Set<{ stop: AbortController; ended: Promise<void> }>();
  /** Upstream's max_connections: a cap on requests in flight (its chi Throttle), not on sockets. */
  private maxConnections: number;
  /** The process's open-file limit, which bounds the connection cap whatever max_connections says. */
  private readonly fileLimit = openFileLimit();
  /** In a cluster worker: the external listener's connections it has no room for go to a sibling. */
  private readonly handoff: AcceptHandoff | undefined;

  constructor(private readonly fleet: Fleet, private readonly config: FleetServerConfig, private readonly log: Logger,
    private readonly options: HttpOptions = {}) {
    const limits = config.server.limits;
    this.limiters = Object.fromEntries(ROUTE_NAMES.map((r) => [r, new RouteLimiter(limits.routes[r])])) as Record<RouteName, RouteLimiter>;
    this.maxConnections = limits.maxConnections;
    this.router = new Router(ROUTES.filter((r) => r.enabled?.(config) ?? true));
    this.guard = new ConnectionGuard(this.externalAdmission(limits.maxConnections));
    this.internalGuard = new ConnectionGuard({ cap: INTERNAL_CAP, pendingCap: INTERNAL_CAP / 4, lingerCap: 16 });
    if (options.handoff) this.handoff = new AcceptHandoff(options.handoff, () => !this.draining && this.connectionRoom <= 0);
  }

  /**
   * Connections the external listener can still take before it turns them away: below its cap, and
   * below max_connections (a cap on requests in flight, which held polls are: one per connection).
   */
  get connectionRoom(): number {
    // Draining: its listener is closed, and it must not look like the emptiest worker.
    if (this.draining) return 0;
    const open = this.guard.openConnections;
    const room = this.guard.limits.cap - open;
    return this.maxConnections > 0 ? Math.min(room, this.maxConnections - open) : room;
  }

  /** Whether another worker has room for connections this one cannot take (the primary says so). */
  set roomElsewhere(yes: boolean) {
    if (this.handoff) this.handoff.roomElsewhere = yes;
  }

  /** A connection handed over by a sibling (`returned`: one this worker sent away, back); false when not taken. */
  adopt(client: ClientHandle, returned = false): boolean {
    return this.handoff?.adopt(client, returned) ?? false;
  }

  private externalAdmission(maxConnections: number): AdmissionLimits {
    return admissionLimits(maxConnections, this.fileLimit === undefined ? undefined : this.fileLimit - INTERNAL_CAP);
  }

  /**
   * Takes new limits while serving: a cluster worker's share of the server's limits changes when a worker
   * dies (the others take its share, as they take its agents) and when its replacement is ready.
   */
  reshare(limits: ResolvedLimits): void {
    for (const r of ROUTE_NAMES) this.limiters[r].retune(limits.routes[r]);
    this.maxConnections = limits.maxConnections;
    this.guard.limits = this.externalAdmission(limits.maxConnections);
  }

  /** read_header, bounded by read. */
  private get headerMs(): number {
    const t = this.config.server.timeouts;
    return t.readMs > 0 ? Math.min(t.readHeaderMs, t.readMs) : t.readHeaderMs;
  }

  private createServer(guard: ConnectionGuard): http.Server | https.Server {
    const s = this.config.server;
    const readMs = s.timeouts.readMs;
    const headerMs = this.headerMs;
    const opts: http.ServerOptions = {
      // Node applies requestTimeout only while a request is still arriving (headers and body), so it is
      // upstream's ReadTimeout; a long poll whose body has arrived is not cut by it.
      requestTimeout: readMs,
      headersTimeout: headerMs,
      connectionsCheckingInterval: DEADLINE_CHECK_MS,
      keepAliveTimeout: s.timeouts.idleMs,
      // Go's server reads MaxHeaderBytes plus 4096 bytes of slack before it refuses (net/http's
      // initialReadLimitSize): a request a service mesh's headers bring past 8 KiB is served there.
      // 0 is Go's default, 1 MiB (Node would take 0 as its own 16 KiB).
      maxHeaderSize: (s.maxHeaderByteSize > 0 ? s.maxHeaderByteSize : 1 << 20) + GO_HEADER_SLACK,
      ServerResponse: this.responseClass,
      // Only routes that take upgrades see them; an Upgrade header elsewhere is an ordinary request.
      shouldUpgradeCallback: (req: IncomingMessage) => this.upgradeRoute(req) !== undefined,
    };
    const handler = (req: IncomingMessage, res: ServerResponse): void => this.handle(req, res, guard);
    const server = s.tls.enabled
      // A TLS client that never finishes its handshake is held no longer than one that never finishes its headers.
      // node:https (and node:tls under it) is loaded only when TLS is on: ~2 MiB of RSS in every process otherwise.
      ? (require('node:https') as typeof https).createServer({ ...opts, ...tlsOptions(s.tls, this.options.ticketKeys), handshakeTimeout: headerMs }, handler)
      : http.createServer(opts, handler);
    // A connection turned away is kept until its request can be answered 429 (handle()).
    server.on('connection', (socket: Socket) => guard.admit(socket));
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => this.clientError(err, socket));
    server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => this.upgrade(req, socket, head, guard));
    return server;
  }

  /**
   * Errors Node raises outside a handler (parse errors, the header and request deadlines): answered in
   * the error shape, then closed. A request whose body timed out is logged by its own pipeline, as 408.
   */
  private clientError(err: NodeJS.ErrnoException, socket: Socket): void {
    const answered = (socket as Socket & { _httpMessage?: ServerResponse })._httpMessage?.headersSent === true;
    // A TLS handshake that failed or timed out has no channel to answer on.
    const tlsFailure = err.code?.startsWith('ERR_TLS') === true || err.code?.startsWith('ERR_SSL') === true;
    if (!socket.writable || answered || tlsFailure || err.code === 'ECONNRESET') {
      socket.destroy();
      return;
    }
    const code = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'RequestTimeout' : err.code === 'HPE_HEADER_OVERFLOW' ? 'HeaderTooLarge' : 'MalformedRequest';
    if (code === 'RequestTimeout' && socket.bytesRead === 0 && !this.unreadGrace.has(socket)) {
      this.graceUnread(err, socket);
      return;
    }
    if (code === 'RequestTimeout') this.timedOut.add(tcpSocket(socket));
    const c = classify(new HttpError(code));
    this.log.debug({ 'error.code': err.code, 'http.response.status_code': c.status, 'client.address': socket.remoteAddress }, 'HTTP client error');
    socket.end(rawErrorResponse(c));
    socket.destroySoon();
  }

  /**
   * Node starts a connection's header deadline when it accepts it, and checks deadlines on a timer that
   * runs before the event loop next reads its sockets. After a stall longer than read_header (a worker
   * that accepted thousands of reconnecting agents at once on a starved box), connections whose requests
   * were sent in time but not yet read were answered 408 (the likely cause of the 25–27 408s restarts at
   * 100,000 agents met; none in the three runs since). One with nothing read gets a second period,
   * judged after the loop has read what is waiting; a client that sends nothing at all is closed at twice
   * read_header (the connection cap's eviction still applies).
   */
  private graceUnread(err: NodeJS.ErrnoException, socket: Socket): void {
    this.unreadGrace.add(socket);
    const timer = setTimeout(() => setImmediate(() => {
      socket.off('close', cancel);
      // A request that began meanwhile is under Node's deadlines again (they restart with its first byte).
      if (socket.bytesRead === 0 && !socket.destroyed) this.clientError(err, socket);
    }), this.headerMs).unref();
    const cancel = (): void => clearTimeout(timer);
    socket.once('close', cancel);
  }

  async start(): Promise<void> {
    const s = this.config.server;
    const external = this.createServer(this.guard);
    await listen(external, s.port, s.host, this.log, this.options.reusePort).catch((err: unknown) => {
      throw listenError(err, s.host);
    });
    this.servers.push(external);
    this.handoff?.attach(external);
    const port = (external.address() as AddressInfo).port;
    this.log.info({ 'server.address': `${s.host}:${port}`, tls: s.tls.enabled, 'connections.cap': this.guard.limits.cap }, 'fleet-server listening');
    if (!s.tls.enabled) this.log.warn('Exposed over insecure HTTP; enablement of TLS is strongly recommended');
    if (s.internalPort > 0 && s.internalPort !== port) {
      const internal = this.createServer(this.internalGuard);
      try {
        await listen(internal, s.internalPort, listenHost('localhost'), this.log, this.options.reusePort);
        this.servers.push(internal);
        this.log.info({ 'server.address': `localhost:${s.internalPort}` }, 'fleet-server internal listener');
      } catch (err) {
        this.log.warn({ err }, 'internal listener could not start');
      }
    }
    if (s.tls.enabled && s.tls.reloadIntervalMs > 0) {
      // The shared ticket keys go with every new context, so sessions still resume across workers.
      const ticketKeys = this.options.ticketKeys;
      this.certificates = new CertificateReloader(this.servers as https.Server[], {
        read: () => ({ ...tlsCredentials(s.tls), ...(ticketKeys ? { ticketKeys } : {}) }),
      }, this.log);
      this.certificates.start(s.tls.reloadIntervalMs);
    }
  }

  get ports(): number[] {
    return this.servers.map((s) => (s.address() as AddressInfo).port);
  }

  get inFlightRequests(): number {
    return this.inFlight;
  }

  get openConnections(): number {
    return this.guard.openConnections + this.internalGuard.openConnections;
  }

  /** Connections turned away (answered 429), evicted to make room, dropped with no room to answer (both listeners), handed to a sibling worker, taken from one, and handed off but given back (external). */
  get admission(): { pending: number; turned_away: number; evicted: number; dropped: number; handed_off: number; adopted: number; returned: number } {
    const [a, b] = [this.guard.counts, this.internalGuard.counts];
    return {
      pending: this.guard.pendingConnections + this.internalGuard.pendingConnections,
      turned_away: a.turnedAway + b.turnedAway, evicted: a.evicted + b.evicted, dropped: a.dropped + b.dropped,
      handed_off: this.handoff?.counts.handedOff ?? 0, adopted: this.handoff?.counts.adopted ?? 0, returned: this.handoff?.counts.returned ?? 0,
    };
  }

  /** TCP connections accepted and closed on both API listeners (upstream's tcp_open / tcp_close). */
  get tcp(): { open: number; close: number } {
    const [a, b] = [this.guard.counts, this.internalGuard.counts];
    return { open: a.accepted + b.accepted, close: a.closed + b.closed };
  }

  /**
   * Stops accepting, runs `beforeDrain` (held polls answered), lets in-flight requests finish within
   * `drainMs` of the call (a second at least after `beforeDrain` ends), then closes. Resolves with the
   * number of requests cut (still in flight then; OpAMP sessions are ended apart and not counted).
   */
  async stop(drainMs: number, beforeDrain: () => Promise<void>): Promise<number> {
    this.draining = true;
    this.handoff?.detach();
    this.certificates?.stop();
    // net.Server's close: it stops listening, nothing more. http.Server's also closes every idle
    // keep-alive connection at once, and an agent answered a moment before has its next request on the
    // way: it meets a reset (15 of 50,000 agents in a bench restart). A connection idle longer than
    // IDLE_GRACE_MS is closed now; one that became idle more recently gets until then, and a request it
    // brings is answered (held polls are let go now, and every answer says Connection: close).
    const closed = this.servers.map((s) => new Promise<void>((r) => net.Server.prototype.close.call(s, () => r())));
    const guards = [this.guard, this.internalGuard];
    if (guards.reduce((n, g) => n + g.closeIdle(IDLE_GRACE_MS), 0) > 0) {
      setTimeout(() => guards.forEach((g) => g.closeIdle(0)), IDLE_GRACE_MS).unref();
    }
    const started = Date.now();
    // Every held poll is answered, however long a starved process takes: closing the rest at the end of
    // the window was tried (100,000 agents, six workers sharing two cores with the load generators) and
    // cut 33,351 polls for a stop no shorter, against 0-2,230 cut by the deadlines' kill without it.
    await beforeDrain();
    const sessions = [...this.sessions];
    for (const s of sessions) s.stop.abort();
    // The whole drain within drainMs of the stop (what is written after it needs the rest of the
    // process's deadline), yet a second at least for what is in flight once the held polls are answered.
    const deadline = Math.max(started + drainMs, Date.now() + MIN_AFTER_RELEASE_MS);
    await Promise.race([Promise.all(sessions.map((s) => s.ended)), new Promise((r) => setTimeout(r, deadline - Date.now()).unref())]);
    while (this.inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const cut = this.inFlight;
    for (const s of this.servers) s.closeAllConnections();
    await Promise.all(closed);
    // http.Server's own close now, with nothing left to close: it ends its request-timeout checks.
    for (const s of this.servers) s.close();
    return cut;
  }

  private handle(req: IncomingMessage, res: ServerResponse, guard: ConnectionGuard): void {
    const started = monotonicMs();
    let requestId = '';
    let limiter: RouteLimiter | undefined;
    let counters: RouteCounters | undefined;
    let bare: string | undefined;
    try {
      const socket = tcpSocket(req.socket);
      if (!guard.busy(socket)) {
        if (!guard.isTurnedAway(socket)) {
          req.socket.destroy();
          return;
        }
        // Turned away at accept: answered, told when to come back, closed. Not a request of any route.
        res.shouldKeepAlive = false;
        writeError(res, this.turnedAway(guard));
        return;
      }
      res.on('error', ignoreResponseError);
      requestId = (req.headers['x-request-id'] as string | undefined) || newRequestId();
      (res as ServerResponse & AnswerHeaders).requestId = requestId;
      if (this.maxConnections > 0 && this.inFlight >= this.maxConnections) {
        throw new HttpError('MaxConnections', undefined, undefined, guard.retryAfterSeconds());
      }
      const url = req.url ?? '/';
      const q = url.indexOf('?');
      const { route, params } = this.router.match(req.method ?? 'GET', q < 0 ? url : url.slice(0, q));
      counters = this.routes[route.metric];
      counters.total++;
      const routeLimiter = this.limiters[route.limit];
      try {
        routeLimiter.enter();
      } catch (err) {
        if (isFleetError(err, 'RateLimit')) counters.limit_rate++;
        else counters.limit_max++;
        throw err;
      }
      // Only a slot taken is given back (a refusal by enter() must not).
      limiter = routeLimiter;
      bare = route.bareErrors;
      counters.active++;
      this.inFlight++;
      let apiVersion = DEFAULT_API_VERSION;
      try {
        apiVersion = checkApiVersion(req.headers['elastic-api-version'] as string | undefined);
      } finally {
        (res as ServerResponse & AnswerHeaders).apiVersion = apiVersion;
      }
      const base: BaseContext = {
        req, res, params, fleet: this.fleet, config: this.config, log: this.log, agentVersion: '', counters,
      };
      // Settled by callbacks, not by awaiting: a held long poll then keeps no suspended frame here.
      const taken = counters;
      const bareType = bare;
      this.dispatch(route, base, taken, () => this.done(req, res, guard, started, requestId, limiter, taken), (err: unknown) => {
        const finish = (): void => this.done(req, res, guard, started, requestId, limiter, taken, err, bareType);
        // Only an authenticated client's refusal waits for its body; anyone else's connection is closed at once.
        if (drainable.has(req)) drainUnread(req, err, finish);
        else finish();
      });
    } catch (err) {
      this.done(req, res, guard, started, requestId, limiter, counters, err, bare);
    }
  }

  /** The answer to a connection turned away at accept: 429, with its place in the queue of refused clients. */
  private turnedAway(guard: ConnectionGuard): ErrorClass {
    return classify(new HttpError('MaxConnections', undefined, undefined, guard.retryAfterSeconds()));
  }

  private upgradeRoute(req: IncomingMessage): RouteSpec | undefined {
    try {
      const url = req.url ?? '/';
      const q = url.indexOf('?');
      const { route } = this.router.match(req.method ?? 'GET', q < 0 ? url : url.slice(0, q));
      return route.upgrade ? route : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * An upgrade request (a WebSocket on /v1/opamp): the same admission, limiter and authentication as a
   * request, answered on the raw socket when refused; then the route's session owns the socket, counted
   * active until it ends. The limiter slot is given back once the session starts (it is not a request).
   */
  private upgrade(req: IncomingMessage, socket: Socket, head: Buffer, guard: ConnectionGuard): void {
    const started = monotonicMs();
    const requestId = (req.headers['x-request-id'] as string | undefined) || newRequestId();
    socket.on('error', () => socket.destroy());
    const refuse = (err: unknown, route?: RouteSpec, counters?: RouteCounters): void => {
      const c = classify(err);
      if (counters) counters.fail++;
      refuseHandshake(socket, route?.bareErrors !== undefined ? rawBareResponse(c, route.bareErrors, requestId) : rawErrorResponse(c));
      this.logUpgrade(req, started, requestId, c.status, c);
    };
    const tcp = tcpSocket(socket);
    if (!guard.busy(tcp)) {
      if (guard.isTurnedAway(tcp)) refuseHandshake(socket, rawErrorResponse(this.turnedAway(guard)));
      else socket.destroy();
      return;
    }
    const route = this.upgradeRoute(req);
    if (!route) {
      refuse(new HttpError('RouteNotFound'));
      return;
    }
    const counters = this.routes[route.metric];
    counters.total++;
    const limiter = this.limiters[route.limit];
    try {
      limiter.enter();
    } catch (err) {
      if (isFleetError(err, 'RateLimit')) counters.limit_rate++;
      else counters.limit_max++;
      refuse(err);
      return;
    }
    const stop = new AbortController();
    const ctx = {
      req, socket, head, params: {}, fleet: this.fleet, config: this.config, log: this.log, agentVersion: '', counters, stopping: stop.signal,
      responseHeaders: { 'X-Request-Id': requestId }, bodyBudget: this.bodyBudget,
    } as unknown as UpgradeContext;
    this.authenticate(route, ctx, ctx as unknown as Record<string, unknown>).then(() => {
      limiter.leave();
      if (this.draining) throw new FleetError('ClientClosed');
      counters.active++;
      this.logUpgrade(req, started, requestId, 101);
      const ended = route.upgrade!(ctx).catch((err: unknown) => this.log.warn({ err }, 'upgraded session failed')).finally(() => {
        counters.active--;
        this.sessions.delete(session);
      });
      const session = { stop, ended };
      this.sessions.add(session);
    }, (err: unknown) => {
      limiter.leave();
      refuse(route.authError ? route.authError(err) : err, route, counters);
    }).catch((err: unknown) => refuse(err, route, counters));
  }

  private logUpgrade(req: IncomingMessage, started: number, requestId: string, status: number, c?: ErrorClass): void {
    const level: LogLevel = status === 101 ? 'debug' : 'info';
    if (!this.log.isLevelEnabled(level)) return;
    this.log[level]({
      'http.request.id': requestId, 'http.request.method': req.method, 'url.path': loggedPath(req.url), 'http.response.status_code': status,
      'event.duration': Math.round((monotonicMs() - started) * 1e6), 'client.address': req.socket.remoteAddress,
      // Cut as in logRequest: a message may carry client text.
      ...(c ? { 'error.type': c.error, 'error.message': loggedMessage(c.message) } : {}),
    }, 'HTTP upgrade');
  }

  /**
   * The declared steps of a route, then its handler; the context lives only until the handler has it.
   * The handler's promise is the only one a held long poll keeps: its end goes straight to `ok`/`fail`.
   */
  private dispatch(route: RouteSpec, base: BaseContext, counters: RouteCounters, ok: () => void, fail: (err: unknown) => void): void {
    const ctx = base as RequestContext;
    this.prepare(route, ctx, counters).then((proceed) => {
      if (!proceed) {
        ok();
        return;
      }
      let answered: Promise<void>;
      try {
        answered = route.handler(ctx);
      } catch (err) {
        fail(err);
        return;
      }
      answered.then(ok, fail);
    }, fail);
  }

  /** False when the request was answered on the way (a route's answer to a refused authentication). */
  private async prepare(route: RouteSpec, ctx: RequestContext, counters: RouteCounters): Promise<boolean> {
    const { fleet, req } = ctx;
    const c = ctx as RequestContext & Record<string, unknown>;
    try {
      await this.authenticate(route, ctx, c);
    } catch (err) {
      if (route.authRefused?.(ctx, err)) return false;
      throw route.authError ? route.authError(err) : err;
    }
    if (route.userAgent) ctx.agentVersion = fleet.versions.check(req.headers['user-agent']);
    if (route.body) {
      const body = route.body;
      const binary = 'decode' in body;
      // A binary route takes exactly its Content-Type (OpAMP: anything else would be a WebSocket attempt).
      if (binary && req.headers['content-type'] !== body.contentType) {
        throw new FleetError('BadRequest', `Bad request: Content-Type must be ${body.contentType}`);
      }
      const limit = ctx.config.server.limits.routes[route.limit];
      const raw = await readBody(req, body.what, {
        maxBytes: limit.maxBody, maxDecompressed: limit.maxBodyDecompressed, allowGzip: body.gzip === true,
        tooLarge: body.tooLarge, binary,
      }, this.bodyBudget);
      counters.body_in += raw.wireBytes;
      if (raw.size === 0 && body.empty) {
        raw.release();
        throw new FleetError(body.empty);
      }
      c['body'] = binary ? decodeBinary(raw, body.what, body.decode) : decodeJson(raw, body.what, body.validator);
    }
    return true;
  }

  private async authenticate(route: RouteSpec, ctx: Pick<BaseContext, 'fleet' | 'req' | 'params'>, c: Record<string, unknown>): Promise<void> {
    const { fleet, req } = ctx;
    switch (route.auth) {
      case 'agent':
        c['agent'] = await fleet.auth.authenticateAgent(apiKeyFromHeader(req), ctx.params['id']);
        break;
      case 'agentKey':
        c['agent'] = await fleet.auth.authenticateAgent(apiKeyFromHeader(req));
        if (route.drainRefused) drainable.add(req);
        break;
      case 'enrollment':
        c['enrollment'] = await fleet.enrollment.authenticate(apiKeyFromHeader(req));
        if (route.drainRefused) drainable.add(req);
        break;
      case 'optional':
        // A bad or unknown key only hides what is reserved for authenticated callers.
        c['authenticated'] = req.headers['authorization'] !== undefined
          && await Promise.resolve().then(() => fleet.auth.authenticate(apiKeyFromHeader(req))).then(() => true, () => false);
        break;
      case 'none':
        break;
    }
  }

  /** The end of every request: the error (if any) answered, the slot released, one log line as upstream. */
  private done(req: IncomingMessage, res: ServerResponse, guard: ConnectionGuard, started: number, requestId: string,
    limiter: RouteLimiter | undefined, counters: RouteCounters | undefined, err?: unknown, bare?: string): void {
    let c: ErrorClass | undefined;
    let socket: Socket | undefined;
    try {
      socket = tcpSocket(req.socket);
      if (err !== undefined) {
        c = this.timedOut.has(socket) ? classify(new HttpError('RequestTimeout')) : classify(err);
        // The body may be unread (refused before reading): close rather than parse leftovers as a request.
        // Set before the head is written, so that it says Connection: close.
        if (!req.complete) res.shouldKeepAlive = false;
        if (bare !== undefined) writeBareError(res, c, bare);
        else writeError(res, c, err instanceof HttpError ? err.headers : undefined);
      }
    } catch (fatal) {
      this.log.error({ err: fatal }, 'request error answer failed');
      // No answer can follow a half-written one: the client sees the connection end instead of waiting.
      res.destroy();
    } finally {
      // Whatever writing the answer did: a slot kept here would be lost to the route (and to
      // max_connections) for the life of the process.
      if (limiter) {
        this.inFlight--;
        limiter.leave();
      }
    }
    try {
      if (counters) {
        if (limiter) counters.active--;
        if (c && limiter) {
          if (c.error === 'StatusClientClosedRequest') counters.drop++;
          else counters.fail++;
        }
        // Every answer here states its length (gzip answers their compressed one).
        const out = Number(res.getHeader('content-length'));
        if (out > 0) counters.body_out += out;
      }
      if (socket && res.shouldKeepAlive) guard.idleAgain(socket);
      this.logRequest(req, res, started, requestId, err, c);
    } catch (fatal) {
      // Never let bookkeeping of a request end the process.
      this.log.error({ err: fatal }, 'request clean-up failed');
    }
  }

  /** Non-2xx at info (limiter refusals included), 2xx at debug; server faults with their error. */
  private logRequest(req: IncomingMessage, res: ServerResponse, started: number, requestId: string, err: unknown, c: ErrorClass | undefined): void {
    const clientClosed = c?.error === 'StatusClientClosedRequest';
    // Nothing was answered to a client that went away: 499, as upstream, at debug.
    const status = clientClosed ? 499 : c?.status ?? res.statusCode;
    let level: LogLevel = clientClosed || (status >= 200 && status < 300) ? 'debug' : 'info';
    if (c && !clientClosed && LEVEL_RANK[c.level] > LEVEL_RANK[level]) level = c.level;
    if (!this.log.isLevelEnabled(level)) return;
    const fields: Record<string, unknown> = {
      'http.request.id': requestId,
      'http.request.method': req.method,
      'url.path': loggedPath(req.url),
      'http.response.status_code': status,
      'event.duration': Math.round((monotonicMs() - started) * 1e6),
      'client.address': req.socket.remoteAddress,
    };
    if (c) {
      fields['error.type'] = c.error;
      // A message may carry client text (a bad field's value, up to the body's size): a line a few
      // hundred bytes long says what went wrong, and a client cannot make every line half a megabyte.
      fields['error.message'] = loggedMessage(c.message);
      if (c.level === 'error') fields['err'] = err;
    }
    this.log[level](fields, status >= 500 ? 'HTTP request failed' : 'HTTP request');
  }
}

/**
 * Requests of authenticated clients (agents, Collectors) on routes that declare `drainRefused`. Kept
 * aside rather than read from the request's context: the callbacks that settle a request must not hold
 * its context, or every held long poll would keep its whole context alive.
 */
const drainable = new WeakSet<IncomingMessage>();

/** Bodies up to this size are read to their end before a refusal is answered (an upload chunk's 4 MiB). */
const DRAIN_MAX_BYTES = 4 * 1024 * 1024 + 64 * 1024;
/** …and for at most this long: a client trickling its body gets its refusal then, and a closed connection. */
const DRAIN_MAX_MS = 5000;

/**
 * A refusal that came before the body was read (an upload chunk for a stopped upload, say, on routes
 * that declare `drainRefused`): a client still sending would see its connection reset instead of the answer. A body of at most
 * DRAIN_MAX_BYTES is read to its end first, for at most DRAIN_MAX_MS (the route's slot stays taken
 * meanwhile); past either, or for a larger declared length, it is answered at once and the connection
 * closed.
 */
function drainUnread(req: IncomingMessage, err: unknown, then: () => void): void {
  const declared = Number(req.headers['content-length']);
  if (req.complete || req.destroyed || isFleetError(err, 'ClientClosed') || declared > DRAIN_MAX_BYTES) {
    then();
    return;
  }
  let called = false;
  let read = 0;
  const timer = setTimeout(() => once(), DRAIN_MAX_MS);
  const once = (): void => {
    if (called) return;
    called = true;
    clearTimeout(timer);
    req.off('data', counted);
    req.off('end', once);
    req.off('close', once);
    req.off('error', once);
    if (!req.complete) req.pause();
    then();
  };
  const counted = (c: Buffer): void => {
    read += c.length;
    if (read > DRAIN_MAX_BYTES) once();
  };
  req.on('data', counted);
  req.on('end', once);
  req.on('close', once);
  req.on('error', once);
  req.resume();
}

/** A response error (a write after the client went away) is not worth more than the close already seen. */
function ignoreResponseError(): void {}

/**
 * The kernel's cap on a listen queue (net.core.somaxconn), which Go's listeners use; Node's default
 * backlog of 511 overflows first when thousands of agents reconnect at once, and they see resets.
 */
function listenBacklog(): number {
  try {
    const n = Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : 511;
  } catch {
    return 511;
  }
}

function listen(server: http.Server, port: number, host: string, log: Logger, reusePort = false): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    // `exclusive`: a cluster worker binds the port itself rather than asking its primary for the handle.
    server.listen({ port, host, backlog: listenBacklog(), ...(reusePort ? { reusePort: true, exclusive: true } : {}) }, () => {
      server.off('error', reject);
      // Accept can still fail (a file limit reached by something else); that must not end the process.
      server.on('error', (err) => log.warn({ err }, 'listener error'));
      resolve();
    });
  });
}

/**
 * The headers every answer carries, kept as two fields until its head is written: set on the response
 * when the request arrives, they would cost a headers object and an array per header for as long as a
 * long poll is held (~0.2 KiB per held agent).
 */
/**
 * A request id as one flat string: randomUUID()'s text is a rope of ~15 joined pieces (~0.5 KiB), which
 * a held long poll would keep as long as it is held. The copy through a buffer is flat (36 bytes).
 */
function newRequestId(): string {
  return Buffer.from(randomUUID(), 'latin1').toString('latin1');
}

interface AnswerHeaders {
  requestId: string;
  apiVersion: string;
}

function answerResponse(draining: () => boolean): typeof ServerResponse {
  return class AnswerResponse extends ServerResponse implements AnswerHeaders {
    requestId = '';
    apiVersion = '';

    // Every head goes through writeHead (Node's implicit headers included).
    override writeHead(...args: unknown[]): this {
      if (draining()) this.shouldKeepAlive = false;
      if (this.requestId !== '') this.setHeader('X-Request-Id', this.requestId);
      if (this.apiVersion !== '') this.setHeader('Elastic-Api-Version', this.apiVersion);
      return (ServerResponse.prototype.writeHead as (...a: unknown[]) => this).apply(this, args);
    }
  } as typeof ServerResponse;
}
