// What logs never carry. An error is logged as its type, message (with its causes'), stack and a few named
// fields, not everything it holds: pino's standard serializer copies every enumerable field, and the
// Elasticsearch client's errors hold the request under `meta` (headers with an agent's API key when its
// key is checked, a body with a Fleet secret's plaintext when one is created) and the whole response.
import pino from 'pino';

/** Fields of an error worth a log line: what node:net/fs and our own errors say about the fault. */
const ERROR_FIELDS = ['code', 'errno', 'syscall', 'address', 'port', 'statusCode', 'status', 'clientMessage'];

interface EsMeta {
  statusCode?: unknown;
  body?: { error?: { type?: unknown } };
}

export function logError(err: unknown): unknown {
  const full = pino.stdSerializers.err(err as Error) as unknown as Record<string, unknown>;
  if (full === err || typeof full !== 'object' || full === null) return full;
  const out: Record<string, unknown> = { type: full['type'], message: err instanceof Error ? messageWithCauses(err) : full['message'], stack: full['stack'] };
  for (const k of ERROR_FIELDS) {
    const v = full[k];
    if (v !== undefined && (typeof v === 'string' || typeof v === 'number')) out[k] = v;
  }
  // The Elasticsearch client's: its status and error type (the reason may quote a document's values).
  const meta = (err as { meta?: EsMeta }).meta;
  if (typeof meta?.statusCode === 'number') out['statusCode'] = meta.statusCode;
  if (typeof meta?.body?.error?.type === 'string') out['elasticsearch.error.type'] = meta.body.error.type;
  if (Array.isArray(full['aggregateErrors'])) out['aggregateErrors'] = ((err as AggregateError).errors ?? []).map(logError);
  return out;
}

/**
 * The message and its causes', each cause once: pino joins every cause's message to its own, and a
 * wrapped error usually repeats its cause's text already ("connecting to Elasticsearch: connect
 * ECONNREFUSED …" over the client's error over its cause gave the address three times in one line).
 */
function messageWithCauses(err: Error): string {
  let text = err.message;
  const seen = new Set<unknown>([err]);
  for (let cause = err.cause; cause instanceof Error && !seen.has(cause) && seen.size < 8; cause = cause.cause) {
    seen.add(cause);
    const m = cause.message;
    if (m !== '' && !text.includes(m)) text += `: ${m}`;
  }
  return text;
}

/**
 * Fields never written, at the top of a log line's object or one level down, whatever a call site passes.
 * Few on purpose: pino's redaction parses every path again at each line it writes (@pinojs/redact
 * redactPaths), so each one is paid on every logged request; call sites log ids, never credentials.
 */
export const REDACTED_PATHS = ['service_token', '*.service_token', 'api_key', '*.api_key'];
