// Errors fleet logic raises. Each carries a code from one catalogue; the protocol edges decide how a
// code is shown (http/errors.ts maps it to upstream's status and body).
export type FleetErrorCode =
  | 'AgentNotFound' | 'ApiKeyDisabled' | 'ClientClosed' | 'AgentNotReplaceable' | 'InvalidUserAgent'
  | 'UnsupportedVersion' | 'NotFound' | 'RateLimit' | 'MaxLimit' | 'EnrollDuplicate' | 'RequestTimeout'
  | 'AgentNotActive' | 'AgentIdentity' | 'AgentCorrupted' | 'AgentInactive' | 'NoAuthHeader'
  | 'MalformedHeader' | 'Unauthorized' | 'MalformedToken' | 'InvalidToken' | 'ApiKeyNotFound'
  | 'PolicyNotFound' | 'AuditReasonConflict' | 'BadRequest' | 'InvalidApiVersionFormat'
  | 'UnsupportedApiVersion' | 'ServiceUnavailable' | 'TooManyBulkDispatches' | 'PayloadTooLarge' | 'Internal';

export class FleetError extends Error {
  override readonly name = 'FleetError';
  constructor(readonly code: FleetErrorCode, message?: string, options?: { cause?: unknown }) {
    super(message ?? code, options);
  }
}

/** Upstream's BadRequestErr: the message is shown as "Bad request: <msg>[: <cause>]". */
export function badRequest(message: string, cause?: unknown): FleetError {
  const detail = cause instanceof Error ? `: ${cause.message}` : cause !== undefined ? `: ${String(cause)}` : '';
  return new FleetError('BadRequest', `Bad request: ${message}${detail}`, { cause });
}

export function isFleetError(err: unknown, code?: FleetErrorCode): err is FleetError {
  return err instanceof FleetError && (code === undefined || err.code === code);
}
