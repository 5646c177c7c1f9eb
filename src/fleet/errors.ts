// Errors fleet logic raises. Each carries a code from one catalogue; the protocol edges decide how a
// code is shown (http/errors.ts classifies it into upstream's status, body, log level and Retry-After).
export type FleetErrorCode =
  | 'AgentNotFound' | 'ApiKeyDisabled' | 'ClientClosed' | 'AgentNotReplaceable' | 'InvalidUserAgent'
  | 'UnsupportedVersion' | 'RateLimit' | 'MaxLimit' | 'EnrollDuplicate'
  | 'AgentIdentity' | 'AgentCorrupted' | 'AgentInactive' | 'NoAuthHeader'
  | 'MalformedHeader' | 'Unauthorized' | 'MalformedToken' | 'InvalidToken'
  | 'PolicyNotFound' | 'AuditReasonConflict' | 'BadRequest' | 'InvalidApiVersionFormat'
  | 'UnsupportedApiVersion' | 'Internal'
  // Artifacts (upstream's handleArtifacts.go, dl/artifact.go).
  | 'NotFound' | 'NoPolicyId' | 'ArtifactNotAuthorized' | 'ArtifactThrottled' | 'ArtifactCorrupted' | 'MalformedSha256'
  // Uploads (handleUpload.go, file/uploader).
  | 'FileInfoBodyRequired' | 'AgentIdMissing' | 'FileFeatureDisabled' | 'FileSizeTooLarge' | 'FileSizeRequired'
  | 'InvalidFileSize' | 'FieldRequired' | 'UploadExists' | 'InvalidFileId' | 'UploadExpired' | 'UploadStopped'
  | 'InvalidChunkNum' | 'ChunkHashRequired' | 'HashMismatch' | 'TransitHashRequired' | 'StatusNoUploads'
  | 'MissingChunks' | 'FailValidation' | 'PayloadTooLarge' | 'TooManyUploads'
  // File delivery (handleFileDelivery.go).
  | 'NoFile' | 'ClientFileForbidden';

export class FleetError extends Error {
  override readonly name = 'FleetError';
  /** For refusals that say when to come back (rate limits): seconds, as Retry-After carries them. */
  readonly retryAfterSeconds: number | undefined;

  constructor(readonly code: FleetErrorCode, message?: string, options?: { cause?: unknown; retryAfterSeconds?: number }) {
    super(message ?? code, options);
    this.retryAfterSeconds = options?.retryAfterSeconds;
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
