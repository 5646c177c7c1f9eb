// What a route declares (once, in routes.ts): method, path, limiter, authentication, body rules and
// handler. The pipeline in server.ts runs the declared steps in upstream's order, so handlers start
// with an authenticated caller and a decoded, validated body.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { FleetServerConfig } from '../config/config';
import type { RouteName } from '../config/limits';
import type { RouteCounters, RouteMetric } from './counters';
import type { ByteBudget } from './websocket';
import type { FleetErrorCode } from '../fleet/errors';
import type { EnrollmentRecord } from '../fleet/enroll';
import type { Fleet } from '../fleet/fleet';
import type { Validator } from '../fleet/messages';
import type { AgentDoc, Hit } from '../store/documents';

/**
 * none; optional (a bad key only hides details); the access key of the agent the path names (`:id`);
 * an agent's access key, the agent found by it (artifacts, files, uploads); an enrollment token.
 */
export type AuthKind = 'none' | 'optional' | 'agent' | 'agentKey' | 'enrollment';

interface AuthResult {
  none: object;
  optional: { authenticated: boolean };
  agent: { agent: Hit<AgentDoc> };
  agentKey: { agent: Hit<AgentDoc> };
  enrollment: { enrollment: EnrollmentRecord };
}

export interface BaseContext {
  req: IncomingMessage;
  res: ServerResponse;
  params: Record<string, string>;
  fleet: Fleet;
  config: FleetServerConfig;
  log: Logger;
  /** The agent version from User-Agent, on routes that declare `userAgent`. */
  agentVersion: string;
  /** The route's counters, for handlers that stream bodies (body_in) themselves. */
  counters: RouteCounters;
}

export type RequestContext<A extends AuthKind = AuthKind, B = unknown> = BaseContext & AuthResult[A] & { body: B };

/** An upgrade request (WebSocket) after its route's limiter and authentication: the socket is the handler's. */
export type UpgradeContext<A extends AuthKind = AuthKind> = Omit<BaseContext, 'res'> & AuthResult[A] & {
  socket: Socket;
  /** Bytes that arrived after the request's headers. */
  head: Buffer;
  /** Aborted when the server stops: the session should close (WebSocket 1001). */
  stopping: AbortSignal;
  /** Headers the session's answer to the upgrade carries (X-Request-Id). */
  responseHeaders: Record<string, string>;
  /** The server's budget for bodies in memory, which a session's unfinished messages share. */
  bodyBudget: ByteBudget;
};

interface BodyCommon {
  /** Named in error messages ("unable to decode <what> request"). */
  what: string;
  /** Content-Encoding: gzip accepted (check-in and OpAMP, as upstream). */
  gzip?: boolean;
  /** The error for an empty body (default: a JSON decoding 400). */
  empty?: FleetErrorCode;
  /** The error for a body over the route's limit (default: upstream's 400 "request body too large"). */
  tooLarge?: FleetErrorCode;
}

/** A JSON body, validated. */
export interface JsonBodySpec<B> extends BodyCommon {
  validator: Validator<B>;
}

/** A binary body of one Content-Type (OpAMP's protobuf), decoded by `decode`; a throw is a 400. */
export interface BinaryBodySpec<B> extends BodyCommon {
  contentType: string;
  decode(bytes: Buffer): B;
}

export type BodySpec<B> = JsonBodySpec<B> | BinaryBodySpec<B>;

export interface RouteSpec<A extends AuthKind = AuthKind, B = unknown> {
  method: 'GET' | 'POST' | 'PUT';
  /** Segments; `:name` is a percent-decoded param. */
  path: string;
  limit: RouteName;
  /** The route's name in the metrics (upstream's). */
  metric: RouteMetric;
  auth: A;
  /** Requires an Elastic Agent User-Agent of a supported version (enroll, check-in). */
  userAgent?: boolean;
  body?: BodySpec<B>;
  /** Served only when the configuration enables it (a feature flag); otherwise the path is unknown. */
  enabled?(config: FleetServerConfig): boolean;
  /**
   * Errors after the route's limiter are answered with the status alone and this Content-Type, no body
   * (OpAMP, as opamp-go answers). Limiter refusals keep upstream's JSON, as its outer router sends them.
   */
  bareErrors?: string;
  /** The error a refused authentication is answered with (OpAMP: 401 for every client mistake). */
  authError?(refusal: unknown): unknown;
  /**
   * Upgrade requests on this route (`Upgrade:` header) are handed here after the limiter and the
   * authentication, with the socket; resolves when the session ends (its route counts it active until then).
   */
  upgrade?(ctx: UpgradeContext<A>): Promise<void>;
  /**
   * A refusal may come before the body is read — as part of the protocol (a chunk for a stopped upload)
   * or because its declared length is over the route's limit (an OpAMP message): an authenticated
   * client's body is then read to its end before the refusal (bounded), so it sees the answer rather than
   * a reset while it is still sending.
   */
  drainRefused?: boolean;
  /** Given the authentication's refusal, answers the request instead (true) or lets the refusal stand. */
  authRefused?(ctx: BaseContext, refusal: unknown): boolean;
  handler(ctx: RequestContext<A, B>): Promise<void>;
}

/** Declares a route, keeping its handler's context typed by its auth kind and body. */
export function route<A extends AuthKind, B = undefined>(spec: RouteSpec<A, B>): RouteSpec {
  return spec as unknown as RouteSpec;
}
