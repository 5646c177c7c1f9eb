// Elasticsearch's error envelope: {"error":{"root_cause":[...],"type","reason",...},"status"}.
// Bulk and mget items carry the bare error object (no root_cause), built by `cause`.

export type Meta = Record<string, unknown>;

/** Exceptions of the JDK (and painless's own Error), as opposed to ElasticsearchException subclasses. */
const JAVA_EXCEPTIONS = new Set(['illegal_argument_exception', 'illegal_state_exception', 'null_pointer_exception',
  'class_cast_exception', 'index_out_of_bounds_exception', 'string_index_out_of_bounds_exception', 'arithmetic_exception',
  'painless_error', 'stack_overflow_error', 'array_index_out_of_bounds_exception']);

export class EsError extends Error {
  constructor(readonly status: number, readonly type: string, readonly reason: string,
    readonly meta: Meta = {}, readonly causedBy?: EsError, readonly headers: Record<string, string | string[]> = {}) {
    super(reason);
  }

  /** The bare error object of bulk items and msearch entries' causes. */
  item(): Meta {
    const out: Meta = { type: this.type, reason: this.reason, ...this.meta };
    if (this.causedBy) out['caused_by'] = this.causedBy.item();
    return out;
  }

  /** The full envelope of a failed request. */
  envelope(): { error: Meta; status: number } {
    // root_cause is the deepest *Elasticsearch* exception of the chain (ElasticsearchException.guessRootCauses):
    // a plain Java cause such as painless's null_pointer_exception stays in caused_by only, and a Java
    // exception at the top (update's "failed to execute script") is its own root cause.
    const rootErr = rootCause(this);
    const root = { type: rootErr.type, reason: rootErr.reason, ...rootErr.meta };
    return { error: { root_cause: [root], ...this.item() }, status: this.status };
  }
}

function rootCause(e: EsError): EsError {
  // A search whose shards all failed names the shards' causes (SearchPhaseExecutionException.guessRootCauses).
  if (e.type === 'search_phase_execution_exception' && e.causedBy) return rootCause(e.causedBy);
  let at = e;
  if (!JAVA_EXCEPTIONS.has(e.type)) {
    while (at.causedBy && !JAVA_EXCEPTIONS.has(at.causedBy.type)) at = at.causedBy;
  }
  return at;
}

/**
 * A search refused on its (single) shard: `search_phase_execution_exception` "all shards failed" with
 * the shard's cause in failed_shards and caused_by, and the cause's status (400 for a bad request).
 */
export function allShardsFailed(cause: EsError, index?: string): EsError {
  const failed = [{ shard: 0, index: index ?? null, node: 'es-double-node', reason: cause.item() }];
  return new EsError(cause.status, 'search_phase_execution_exception', 'all shards failed', { phase: 'query', grouped: true, failed_shards: failed }, cause);
}

export const indexNotFound = (index: string): EsError => new EsError(404, 'index_not_found_exception', `no such index [${index}]`,
  { 'resource.type': 'index_or_alias', 'resource.id': index, index_uuid: '_na_', index });

export const illegalArgument = (reason: string): EsError => new EsError(400, 'illegal_argument_exception', reason);

export const validationFailed = (msg: string): EsError =>
  new EsError(400, 'action_request_validation_exception', `Validation Failed: 1: ${msg};`);

export const parsingException = (reason: string): EsError => new EsError(400, 'parsing_exception', reason, { line: 1, col: 1 });

export const resourceNotFound = (reason: string): EsError => new EsError(404, 'resource_not_found_exception', reason);

const WWW_AUTHENTICATE = ['Basic realm="security", charset="UTF-8"', 'Bearer realm="security"', 'ApiKey'];

export function unauthenticated(detail?: string): EsError {
  const meta: Meta = detail ? { additional_unsuccessful_credentials: detail } : {};
  meta['header'] = { 'WWW-Authenticate': WWW_AUTHENTICATE };
  return new EsError(401, 'security_exception',
    'unable to authenticate with provided credentials and anonymous access is not allowed for this request',
    meta, undefined, { 'WWW-Authenticate': WWW_AUTHENTICATE });
}

export const unauthorized = (action: string, principal: string): EsError => new EsError(403, 'security_exception',
  `action [${action}] is unauthorized for ${principal}, this action is granted by the cluster privileges [manage_security,all]`);

export const rejected = (what = 'coordinating operation'): EsError => new EsError(429, 'es_rejected_execution_exception',
  `rejected execution of ${what} [double fault injection]`);
