// The error → HTTP catalogue, as upstream's api/error.go answers: {"statusCode","error","message"}.
import type { ServerResponse } from 'node:http';
import { FleetError, type FleetErrorCode } from '../fleet/errors';
import { StoreBusyError, StoreUnavailableError } from '../store/port';

interface ErrorEntry {
  status: number;
  error: string;
  /** Fixed message; when absent the error's own message is shown. */
  message?: string;
}

const CATALOGUE: Record<FleetErrorCode, ErrorEntry> = {
  AgentNotFound: { status: 404, error: 'AgentNotFound', message: 'agent could not be found' },
  ApiKeyDisabled: { status: 401, error: 'Unauthorized', message: 'ApiKey not enabled' },
  ClientClosed: { status: 499, error: 'StatusClientClosedRequest', message: 'server is stopping' },
  AgentNotReplaceable: { status: 403, error: 'AgentNotReplaceable', message: 'existing agent cannot be replaced' },
  InvalidUserAgent: { status: 400, error: 'InvalidUserAgent', message: 'user-agent is invalid' },
  UnsupportedVersion: { status: 400, error: 'UnsupportedVersion', message: 'version is not supported' },
  NotFound: { status: 404, error: 'NotFound', message: 'not found' },
  RateLimit: { status: 429, error: 'RateLimit', message: 'exceeded the rate limit' },
  MaxLimit: { status: 429, error: 'MaxLimit', message: 'exceeded the max limit' },
  EnrollDuplicate: { status: 429, error: 'EnrollDuplicate', message: 'concurrent enrollment for same id: retry' },
  RequestTimeout: { status: 408, error: 'RequestTimeout', message: 'timeout on request' },
  AgentNotActive: { status: 401, error: 'Unauthorized', message: 'Agent not active' },
  AgentIdentity: { status: 403, error: 'ErrAgentIdentity', message: 'Agent header contains wrong identifier' },
  AgentCorrupted: { status: 400, error: 'ErrAgentCorrupted', message: 'Agent record corrupted' },
  AgentInactive: { status: 401, error: 'ErrAgentInactive', message: 'Agent inactive' },
  NoAuthHeader: { status: 401, error: 'ErrNoAuthHeader', message: 'no authorization header' },
  MalformedHeader: { status: 400, error: 'ErrMalformedHeader', message: 'malformed authorization header' },
  Unauthorized: { status: 401, error: 'ErrUnauthorized', message: 'unauthorized' },
  MalformedToken: { status: 400, error: 'ErrMalformedToken', message: 'malformed token' },
  InvalidToken: { status: 401, error: 'ErrInvalidToken', message: 'token not valid utf8' },
  ApiKeyNotFound: { status: 401, error: 'ErrAPIKeyNotFound', message: 'api key not found' },
  PolicyNotFound: { status: 400, error: 'ErrPolicyNotFound', message: 'ErrPolicyNotFound' },
  AuditReasonConflict: { status: 409, error: 'ErrAuditReasonConflict', message: 'agent document contains audit_unenroll_reason' },
  BadRequest: { status: 400, error: 'BadRequest' },
  InvalidApiVersionFormat: { status: 400, error: 'ErrInvalidAPIVersionFormat' },
  UnsupportedApiVersion: { status: 400, error: 'ErrUnsupportedAPIVersion' },
  ServiceUnavailable: { status: 503, error: 'ServiceUnavailable', message: 'Fleet server unable to communicate with Elasticsearch' },
  TooManyBulkDispatches: { status: 429, error: 'TooManyBulkDispatches', message: 'too many pending bulk dispatches' },
  PayloadTooLarge: { status: 413, error: 'ErrPayloadSizeTooLarge', message: 'the request body exceeds the maximum allowed size' },
  // Upstream answers unexpected errors with 500 and error "BadRequest" (its catch-all).
  Internal: { status: 500, error: 'BadRequest' },
};

export interface ErrorBody {
  statusCode: number;
  error: string;
  message?: string;
}

/** Store failures reach agents as upstream shows Elasticsearch's: unavailable → 503, back-pressure → 429. */
function storeErrorCode(err: unknown): FleetErrorCode | undefined {
  if (err instanceof StoreUnavailableError) return 'ServiceUnavailable';
  if (err instanceof StoreBusyError) return 'TooManyBulkDispatches';
  return undefined;
}

export function errorBody(err: unknown): ErrorBody {
  const storeCode = storeErrorCode(err);
  if (storeCode) return errorBody(new FleetError(storeCode));
  if (err instanceof FleetError) {
    const e = CATALOGUE[err.code];
    const message = e.message ?? err.message;
    return message ? { statusCode: e.status, error: e.error, message } : { statusCode: e.status, error: e.error };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { statusCode: 500, error: 'BadRequest', message };
}

export function writeError(res: ServerResponse, err: unknown, extraHeaders?: Record<string, string>): ErrorBody {
  const body = errorBody(err);
  if (res.headersSent) {
    res.destroy();
    return body;
  }
  const text = JSON.stringify(body);
  res.writeHead(body.statusCode, {
    // Every 429 says when to come back, including back-pressure from the store.
    ...(body.statusCode === 429 ? { 'Retry-After': '5' } : {}),
    ...extraHeaders,
    'Content-Type': 'application/json; charset=utf-8',
    'X-Content-Type-Options': 'nosniff',
    'Content-Length': Buffer.byteLength(text),
  });
  res.end(text);
  return body;
}
