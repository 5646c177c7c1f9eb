// The one error model of the HTTP edge (upstream's api/error.go, fastify's errors.js): every error is
// classified once into status, error name, message, log level and Retry-After, and rendered as
// {"statusCode","error","message"}. Fleet logic raises FleetErrors and store errors; the edge raises
// HttpErrors for what only HTTP knows (routing, capacity, timeouts).
import { randomUUID } from 'node:crypto';
import { STATUS_CODES, type ServerResponse } from 'node:http';
import { FleetError, type FleetErrorCode } from '../fleet/errors';
import { StoreBusyError, StoreUnavailableError } from '../store/port';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export type HttpErrorCode =
  | 'RouteNotFound' | 'MethodNotAllowed' | 'MalformedUrl' | 'MaxConnections' | 'RequestTimeout'
  | 'HeaderTooLarge' | 'MalformedRequest' | 'BodyTooComplex' | 'BodyBudget'
  | 'TlsRequired' | 'PgpKeyMissing' | 'PgpKeyUnsafe' | 'RangeNotSatisfiable';

/** An error only the HTTP edge can raise; `headers` go out with the answer (Allow, …). */
export class HttpError extends Error {
  override readonly name = 'HttpError';
  constructor(readonly code: HttpErrorCode, message?: string, readonly headers?: Record<string, string>, readonly retryAfterSeconds?: number) {
    super(message ?? code);
  }
}

export interface ErrorClass {
  status: number;
  error: string;
  /** Omitted from the body when empty, as upstream. */
  message: string;
  level: LogLevel;
  /** Seconds; sent as Retry-After. */
  retryAfter?: number;
}

interface Entry {
  status: number;
  error: string;
  /** Fixed message; when absent the error's own message is shown. */
  message?: string;
  level?: LogLevel;
  retryAfter?: number;
}

const RETRY_SECONDS = 5;

const CATALOGUE: Record<FleetErrorCode | HttpErrorCode, Entry> = {
  AgentNotFound: { status: 404, error: 'AgentNotFound', message: 'agent could not be found' },
  ApiKeyDisabled: { status: 401, error: 'Unauthorized', message: 'ApiKey not enabled' },
  // The client went away (or the server is stopping): nothing to answer, nothing worth more than debug.
  ClientClosed: { status: 499, error: 'StatusClientClosedRequest', message: 'server is stopping', level: 'debug' },
  AgentNotReplaceable: { status: 403, error: 'AgentNotReplaceable', message: 'existing agent cannot be replaced' },
  InvalidUserAgent: { status: 400, error: 'InvalidUserAgent', message: 'user-agent is invalid' },
  UnsupportedVersion: { status: 400, error: 'UnsupportedVersion', message: 'version is not supported' },
  RateLimit: { status: 429, error: 'RateLimit', message: 'exceeded the rate limit', retryAfter: RETRY_SECONDS },
  MaxLimit: { status: 429, error: 'MaxLimit', message: 'exceeded the max limit', retryAfter: RETRY_SECONDS },
  EnrollDuplicate: { status: 429, error: 'EnrollDuplicate', message: 'concurrent enrollment for same id: retry', retryAfter: RETRY_SECONDS },
  AgentIdentity: { status: 403, error: 'ErrAgentIdentity', message: 'Agent header contains wrong identifier' },
  AgentCorrupted: { status: 400, error: 'ErrAgentCorrupted', message: 'Agent record corrupted' },
  AgentInactive: { status: 401, error: 'ErrAgentInactive', message: 'Agent inactive' },
  NoAuthHeader: { status: 401, error: 'ErrNoAuthHeader', message: 'no authorization header' },
  MalformedHeader: { status: 400, error: 'ErrMalformedHeader', message: 'malformed authorization header' },
  Unauthorized: { status: 401, error: 'ErrUnauthorized', message: 'unauthorized' },
  MalformedToken: { status: 400, error: 'ErrMalformedToken', message: 'malformed token' },
  InvalidToken: { status: 401, error: 'ErrInvalidToken', message: 'token not valid utf8' },
  PolicyNotFound: { status: 400, error: 'ErrPolicyNotFound', message: 'ErrPolicyNotFound' },
  AuditReasonConflict: { status: 409, error: 'ErrAuditReasonConflict', message: 'agent document contains audit_unenroll_reason' },
  BadRequest: { status: 400, error: 'BadRequest' },
  InvalidApiVersionFormat: { status: 400, error: 'ErrInvalidAPIVersionFormat' },
  UnsupportedApiVersion: { status: 400, error: 'ErrUnsupportedAPIVersion' },
  // Upstream answers unexpected errors with 500 and error "BadRequest" (its catch-all); the detail is
  // logged, not shown to a client that may be hostile.
  Internal: { status: 500, error: 'BadRequest', message: 'internal server error', level: 'error' },

  // Artifacts. Upstream answers a malformed sha256 with 500 (its catch-all); it is the client's mistake.
  NotFound: { status: 404, error: 'NotFound', message: 'not found' },
  NoPolicyId: { status: 403, error: 'Forbidden', message: 'agent has no policy ID' },
  ArtifactNotAuthorized: { status: 403, error: 'Forbidden', message: 'agent not authorized for artifact' },
  ArtifactThrottled: { status: 429, error: 'TooManyRequests', message: 'too many requests', retryAfter: RETRY_SECONDS },
  ArtifactCorrupted: { status: 500, error: 'BadRequest', message: 'artifact does not match its hash', level: 'error' },
  MalformedSha256: { status: 400, error: 'BadRequest', message: 'malformed sha256' },
  // Uploads.
  FileInfoBodyRequired: { status: 400, error: 'ErrFileInfoBodyRequired', message: 'file info body is required' },
  AgentIdMissing: { status: 400, error: 'ErrAgentIDMissing', message: 'required field agent_id is missing' },
  FileFeatureDisabled: { status: 403, error: 'ErrFileFeatureDisable', message: 'File Transfer is disabled in Fleet Server configuration' },
  FileSizeTooLarge: { status: 400, error: 'ErrFileSizeTooLarge', message: 'this file exceeds the maximum allowed file size' },
  FileSizeRequired: { status: 400, error: 'ErrFileSizeRequired', message: 'file.size is required' },
  InvalidFileSize: { status: 400, error: 'ErrInvalidFileSize' },
  FieldRequired: { status: 400, error: 'ErrFieldRequired' },
  // Upstream's create conflict surfaces as a 500; a second begin for the same action is the client's.
  UploadExists: { status: 409, error: 'ErrUploadExists', message: 'an upload for this action and agent exists already' },
  // Not upstream's (it sets no bound): the agent's uploads in progress are at fleet/uploads.ts's bound.
  TooManyUploads: { status: 429, error: 'ErrTooManyUploads', retryAfter: RETRY_SECONDS },
  InvalidFileId: { status: 400, error: 'ErrInvalidFileID', message: 'ErrInvalidID' },
  UploadExpired: { status: 400, error: 'ErrUploadExpired', message: 'upload has expired' },
  UploadStopped: { status: 400, error: 'ErrUploadStopped', message: 'upload has stopped' },
  InvalidChunkNum: { status: 400, error: 'ErrInvalidChunkNum', message: 'invalid chunk number' },
  ChunkHashRequired: { status: 400, error: 'BadRequest', message: 'Bad request: header X-Chunk-SHA2 must be a hex SHA-256' },
  HashMismatch: { status: 400, error: 'ErrHashMismatch', message: 'hash does not match' },
  TransitHashRequired: { status: 400, error: 'TransitHashRequired', message: 'Transit hash required' },
  StatusNoUploads: { status: 400, error: 'ErrStatusNoUploads', message: 'file closed, not accepting uploads' },
  MissingChunks: { status: 400, error: 'ErrMissingChunks', message: 'file data incomplete, not all chunks were uploaded' },
  FailValidation: { status: 400, error: 'ErrFailValidation', message: 'file contents failed validation' },
  PayloadTooLarge: { status: 413, error: 'ErrPayloadSizeTooLarge', message: 'the request body exceeds the maximum allowed size' },
  // File delivery.
  NoFile: { status: 404, error: 'ErrNoFile', message: 'file not found' },
  ClientFileForbidden: { status: 403, error: 'ErrClientFileForbidden', message: 'client forbidden' },

  // The edge's own.
  RouteNotFound: { status: 404, error: 'NotFound', message: '404 page not found' },
  MethodNotAllowed: { status: 405, error: 'MethodNotAllowed', message: 'method not allowed' },
  MalformedUrl: { status: 400, error: 'BadRequest' },
  MaxConnections: { status: 429, error: 'MaxConnections', message: 'Server capacity exceeded.', retryAfter: RETRY_SECONDS },
  RequestTimeout: { status: 408, error: 'RequestTimeout', message: 'timeout on request', level: 'info' },
  HeaderTooLarge: { status: 431, error: 'RequestHeaderFieldsTooLarge', message: 'request header fields too large' },
  MalformedRequest: { status: 400, error: 'BadRequest', message: 'Bad request: malformed HTTP request' },
  BodyTooComplex: { status: 400, error: 'BadRequest' },
  BodyBudget: { status: 429, error: 'TooManyRequests', message: 'too many large request bodies in flight', retryAfter: RETRY_SECONDS, level: 'warn' },
  // The PGP key route (pgp-key.ts). The two key faults are the operator's to fix: logged at error with
  // the file and the cause; the client sees only a fixed message.
  // A client's request on a server without TLS: the request log line (info) is enough.
  TlsRequired: { status: 501, error: 'ErrTLSRequired', message: 'server must run with tls to use this endpoint', level: 'info' },
  PgpKeyMissing: { status: 500, error: 'ErrPGPKeyNotInstalled', message: 'no PGP key is installed on this server', level: 'error' },
  PgpKeyUnsafe: { status: 500, error: 'ErrPGPPermissions', message: 'pgp key permissions are incorrect', level: 'error' },
  RangeNotSatisfiable: { status: 416, error: 'ErrRangeNotSatisfiable' },
};

function fromEntry(e: Entry, ownMessage: string, retryAfter?: number): ErrorClass {
  const level = e.level ?? (e.status >= 500 ? 'error' : 'debug');
  const out: ErrorClass = { status: e.status, error: e.error, message: e.message ?? ownMessage, level };
  const retry = retryAfter ?? e.retryAfter;
  if (retry !== undefined) out.retryAfter = retry;
  return out;
}

/** Classifies any error raised while answering a request. */
export function classify(err: unknown): ErrorClass {
  if (err instanceof FleetError) return fromEntry(CATALOGUE[err.code], err.message, err.retryAfterSeconds);
  if (err instanceof HttpError) return fromEntry(CATALOGUE[err.code], err.message, err.retryAfterSeconds);
  // Store faults: unavailable → 503 (the server's health shows it too), back-pressure → 429.
  if (err instanceof StoreUnavailableError) {
    const message = err.clientMessage ?? 'Fleet Server cannot use its store right now';
    return { status: 503, error: 'ServiceUnavailable', message, level: 'warn', retryAfter: RETRY_SECONDS };
  }
  if (err instanceof StoreBusyError) {
    const message = err.clientMessage ?? 'too many pending bulk dispatches';
    return { status: 429, error: err.clientError ?? 'TooManyBulkDispatches', message, level: 'warn', retryAfter: RETRY_SECONDS };
  }
  return fromEntry(CATALOGUE.Internal, '');
}

export interface ErrorBody {
  statusCode: number;
  error: string;
  message?: string;
}

export function errorBody(c: ErrorClass): ErrorBody {
  return c.message ? { statusCode: c.status, error: c.error, message: c.message } : { statusCode: c.status, error: c.error };
}

/** Writes the error answer (or drops the connection when an answer had already started). */
export function writeError(res: ServerResponse, c: ErrorClass, headers?: Record<string, string>): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const text = JSON.stringify(errorBody(c));
  res.writeHead(c.status, {
    ...(c.retryAfter !== undefined ? { 'Retry-After': String(c.retryAfter) } : {}),
    ...headers,
    'Content-Type': 'application/json; charset=utf-8',
    'X-Content-Type-Options': 'nosniff',
    'Content-Length': Buffer.byteLength(text),
  });
  res.end(text);
}

/** An error answered by its status alone, with the route's Content-Type and no body (OpAMP, as opamp-go). */
export function writeBareError(res: ServerResponse, c: ErrorClass, contentType: string): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  res.writeHead(c.status, {
    ...(c.retryAfter !== undefined ? { 'Retry-After': String(c.retryAfter) } : {}),
    'Content-Type': contentType,
    'Content-Length': 0,
  });
  res.end();
}

/** A bare error (status, Content-Type, no body) written straight to a socket (a refused upgrade). */
export function rawBareResponse(c: ErrorClass, contentType: string, requestId: string): string {
  return `HTTP/1.1 ${c.status} ${STATUS_CODES[c.status] ?? ''}\r\nConnection: close\r\nX-Request-Id: ${requestId}\r\nContent-Type: ${contentType}\r\n`
    + `${c.retryAfter !== undefined ? `Retry-After: ${c.retryAfter}\r\n` : ''}Content-Length: 0\r\n\r\n`;
}

/** The same answer written straight to a socket, for errors Node raises before a request exists. */
export function rawErrorResponse(c: ErrorClass): string {
  const text = JSON.stringify(errorBody(c));
  return `HTTP/1.1 ${c.status} ${STATUS_CODES[c.status] ?? ''}\r\nConnection: close\r\nX-Request-Id: ${randomUUID()}\r\nContent-Type: application/json; charset=utf-8\r\n`
    + `X-Content-Type-Options: nosniff\r\n${c.retryAfter !== undefined ? `Retry-After: ${c.retryAfter}\r\n` : ''}`
    + `Content-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`;
}
