// The HTTP(S) listeners: external (:8220) and internal (localhost:8221), one request pipeline:
// request id → connection limit → route → route limit → API version → handler.
import { randomUUID } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { SecureVersion } from 'node:tls';
import type { Logger } from 'pino';
import { pemOrFile, type FleetServerConfig, type TlsConfig } from '../config/config';
import { ROUTES, type RouteName } from '../config/limits';
import { FleetError } from '../fleet/errors';
import type { Fleet } from '../fleet/fleet';
import { checkApiVersion, DEFAULT_API_VERSION } from './api-version';
import { writeError } from './errors';
import { RouteLimiter } from './limiter';
import { matchRoute } from './router';

const TLS_VERSIONS: Record<string, SecureVersion> = { 'TLSv1.0': 'TLSv1', 'TLSv1.1': 'TLSv1.1', 'TLSv1.2': 'TLSv1.2', 'TLSv1.3': 'TLSv1.3' };

function tlsOptions(t: TlsConfig): https.ServerOptions {
  const versions = t.supportedProtocols.map((p) => TLS_VERSIONS[p]).filter((v): v is SecureVersion => v !== undefined).sort();
  const ca = t.certificateAuthorities.map((c) => pemOrFile(c)!);
  return {
    cert: pemOrFile(t.certificate),
    key: pemOrFile(t.key),
    passphrase: t.keyPassphrase,
    ca: ca.length > 0 ? ca : undefined,
    requestCert: t.clientAuthentication !== 'none',
    rejectUnauthorized: t.clientAuthentication === 'required',
    minVersion: versions[0] ?? 'TLSv1.2',
    maxVersion: versions[versions.length - 1] ?? 'TLSv1.3',
    ALPNProtocols: ['http/1.1'],
  };
}

export class HttpService {
  private readonly servers: (http.Server | https.Server)[] = [];
  private readonly limiters: Record<RouteName, RouteLimiter>;
  private inFlight = 0;
  private connections = 0;
  private readonly maxConnections: number;
  private readonly hardConnections: number;

  constructor(private readonly fleet: Fleet, private readonly config: FleetServerConfig, private readonly log: Logger) {
    const limits = config.server.limits;
    this.limiters = Object.fromEntries(ROUTES.map((r) => [r, new RouteLimiter(limits.routes[r])])) as Record<RouteName, RouteLimiter>;
    this.maxConnections = limits.maxConnections;
    // Upstream's floor(1.1·max) equals max for small values, which would make the soft limit unreachable.
    this.hardConnections = Math.max(Math.floor(limits.maxConnections * 1.1), limits.maxConnections + 1);
  }

  private createServer(): http.Server | https.Server {
    const s = this.config.server;
    const opts: http.ServerOptions = {
      // Long polls last minutes: Node's default requestTimeout (5 min) would cut them.
      requestTimeout: 0,
      headersTimeout: s.timeouts.readHeaderMs,
      keepAliveTimeout: s.timeouts.idleMs,
      maxHeaderSize: s.maxHeaderByteSize,
    };
    const handler = (req: IncomingMessage, res: ServerResponse): void => this.handle(req, res);
    const server = s.tls.enabled ? https.createServer({ ...opts, ...tlsOptions(s.tls) }, handler) : http.createServer(opts, handler);
    server.on('connection', (socket: Socket) => {
      this.connections++;
      socket.once('close', () => this.connections--);
    });
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
      if (socket.writable && err.code === 'HPE_HEADER_OVERFLOW') {
        socket.end('HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      } else if (socket.writable && err.code !== 'ECONNRESET') {
        socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      } else {
        socket.destroy();
      }
    });
    return server;
  }

  async start(): Promise<void> {
    const s = this.config.server;
    const external = this.createServer();
    await listen(external, s.port, s.host);
    this.servers.push(external);
    const port = (external.address() as AddressInfo).port;
    this.log.info({ 'server.address': `${s.host}:${port}`, tls: s.tls.enabled }, 'fleet-server listening');
    if (!s.tls.enabled) this.log.warn('Exposed over insecure HTTP; enablement of TLS is strongly recommended');
    if (s.internalPort > 0 && s.internalPort !== port) {
      const internal = this.createServer();
      try {
        await listen(internal, s.internalPort, 'localhost');
        this.servers.push(internal);
        this.log.info({ 'server.address': `localhost:${s.internalPort}` }, 'fleet-server internal listener');
      } catch (err) {
        this.log.warn({ err }, 'internal listener could not start');
      }
    }
  }

  get ports(): number[] {
    return this.servers.map((s) => (s.address() as AddressInfo).port);
  }

  get inFlightRequests(): number {
    return this.inFlight;
  }

  get openConnections(): number {
    return this.connections;
  }

  /** Stops accepting, lets in-flight requests finish (held polls are answered by fleet.stop), then closes. */
  async stop(drainMs: number, beforeDrain: () => Promise<void>): Promise<void> {
    const closed = this.servers.map((s) => new Promise<void>((r) => s.close(() => r())));
    for (const s of this.servers) s.closeIdleConnections();
    await beforeDrain();
    const deadline = Date.now() + drainMs;
    while (this.inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const s of this.servers) s.closeAllConnections();
    await Promise.all(closed);
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const requestId = (req.headers['x-request-id'] as string | undefined) || randomUUID();
    res.setHeader('X-Request-Id', requestId);
    if (this.maxConnections > 0) {
      if (this.connections >= this.hardConnections) {
        // Upstream drops such sockets; an answer the client can act on beats a reset.
        res.shouldKeepAlive = false;
        this.refuseCapacity(res);
        return;
      }
      if (this.inFlight >= this.maxConnections) {
        this.refuseCapacity(res);
        return;
      }
    }
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const match = matchRoute(req.method ?? 'GET', q < 0 ? url : url.slice(0, q));
    if (match === undefined) {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' });
      res.end('404 page not found\n');
      return;
    }
    if ('methodNotAllowed' in match) {
      res.writeHead(405, { Allow: match.allow, 'Content-Length': 0 });
      res.end();
      return;
    }
    const limiter = this.limiters[match.route.limit];
    try {
      limiter.enter();
    } catch (err) {
      writeError(res, err, { 'Retry-After': String(limiter.retryAfterSeconds(err as FleetError)) });
      req.resume();
      return;
    }
    this.inFlight++;
    const started = performance.now();
    // Settled by callbacks, not by awaiting: a held long poll then keeps no suspended frame here.
    const finish = (): void => {
      this.inFlight--;
      limiter.leave();
      if (this.log.isLevelEnabled('debug')) {
        this.log.debug({ 'http.request.id': requestId, 'url.path': req.url, 'http.response.status_code': res.statusCode,
          'event.duration': Math.round((performance.now() - started) * 1e6) }, 'HTTP request');
      }
    };
    let done: Promise<void>;
    try {
      let apiVersion = DEFAULT_API_VERSION;
      try {
        apiVersion = checkApiVersion(req.headers['elastic-api-version'] as string | undefined);
      } finally {
        res.setHeader('Elastic-Api-Version', apiVersion);
      }
      done = match.route.handler({ req, res, params: match.params, fleet: this.fleet, config: this.config, log: this.log });
    } catch (err) {
      this.fail(req, res, err, requestId);
      finish();
      return;
    }
    done.then(finish, (err: unknown) => {
      this.fail(req, res, err, requestId);
      finish();
    });
  }

  private refuseCapacity(res: ServerResponse): void {
    res.writeHead(429, { 'Content-Type': 'text/plain; charset=utf-8', 'Retry-After': '5', 'Content-Length': 26 });
    res.end('Server capacity exceeded.\n');
  }

  private fail(req: IncomingMessage, res: ServerResponse, err: unknown, requestId: string): void {
    const body = writeError(res, err);
    if (body.statusCode >= 500) this.log.error({ err, 'http.request.id': requestId, 'url.path': req.url }, 'request failed');
    else this.log.debug({ 'http.request.id': requestId, 'url.path': req.url, error: body }, 'request refused');
    // The body may be unread (refused before reading): close rather than parse leftovers as a request.
    if (!req.complete) {
      res.shouldKeepAlive = false;
      req.resume();
    }
  }
}

function listen(server: http.Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

