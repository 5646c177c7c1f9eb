// Clients for the Elasticsearch output as upstream configures them: hosts/protocol/path, the service
// token as Bearer, product-origin and User-Agent headers, TLS verification modes, proxy, timeout.
// One client serves requests (with retries); another, without retries, holds the monitors' long polls.
import { Client, errors } from '@elastic/elasticsearch';

type ClientOptions = ConstructorParameters<typeof Client>[0];
import { readFileSync } from 'node:fs';
import { arch, platform } from 'node:os';
import type { ElasticsearchOutputConfig } from '../../config/config';
import { pemOrFile } from '../../config/config';
import { Backoff, sleep } from '../../util/backoff';
import { BUILD_TIME, COMMIT, VERSION } from '../../version';
import { StoreBusyError, StoreUnavailableError } from '../port';
import { EsItemError } from './item-error';
import { storeConnection } from './http-connection';
import { pinOf, pinnedChainError } from './pinned-ca';
import { proxyFor } from './proxy';

export const USER_AGENT = `Elastic-Fleet-Server/${VERSION} (${platform()}; ${arch()}; ${COMMIT}; ${BUILD_TIME})`;

function nodeUrls(c: ElasticsearchOutputConfig): string[] {
  return c.hosts.map((h) => {
    const withScheme = /^https?:\/\//.test(h) ? h : `${c.protocol}://${h}`;
    const u = new URL(withScheme);
    if (!u.port && !/^https?:\/\/[^/]+:\d+/.test(withScheme)) u.port = '9200';
    if (c.path) u.pathname = c.path;
    return u.toString().replace(/\/$/, '');
  });
}

export function serviceToken(c: ElasticsearchOutputConfig): string | undefined {
  if (c.serviceToken) return c.serviceToken;
  if (c.serviceTokenPath) return readFileSync(c.serviceTokenPath, 'utf8').trim();
  return undefined;
}

/** `pin`: the output's pinned CA fingerprint (pinOf), if any. */
function tlsOptions(c: ElasticsearchOutputConfig, pin: string | undefined): ClientOptions['tls'] {
  const ca = c.ssl.certificateAuthorities.map((x) => pemOrFile(x)!);
  const mode = c.ssl.verificationMode;
  return {
    ...(ca.length ? { ca } : {}),
    ...(c.ssl.certificate ? { cert: pemOrFile(c.ssl.certificate) } : {}),
    ...(c.ssl.key ? { key: pemOrFile(c.ssl.key) } : {}),
    ...(c.ssl.keyPassphrase ? { passphrase: c.ssl.keyPassphrase } : {}),
    // With a pinned CA, OpenSSL only reports (socket.authorized) and pinnedChainError decides.
    rejectUnauthorized: mode !== 'none' && pin === undefined,
    // "certificate" verifies the chain but not the host name, as upstream's verification modes do.
    ...(checksHostName(c) ? {} : { checkServerIdentity: () => undefined }),
  };
}

/** Whether the output's verification_mode checks the server's host name (full and strict; not certificate or none). */
function checksHostName(c: ElasticsearchOutputConfig): boolean {
  return c.ssl.verificationMode === 'full' || c.ssl.verificationMode === 'strict';
}

export function createClient(c: ElasticsearchOutputConfig, opts: { maxRetries: number; requestTimeoutMs: number }): Client {
  const token = serviceToken(c);
  const pin = pinOf(c);
  return new Client({
    nodes: nodeUrls(c),
    ...(token ? { auth: { bearer: token } } : {}),
    headers: { ...c.headers, 'X-elastic-product-origin': 'fleet', 'user-agent': USER_AGENT },
    tls: tlsOptions(c, pin),
    maxRetries: opts.maxRetries,
    requestTimeout: opts.requestTimeoutMs,
    compression: false,
    // node:http rather than the client's default undici: the parser built into Node instead of undici's
    // WebAssembly one, and 0.7 MB less source in every process (scripts/build.mjs leaves undici out).
    // Measured idle on the double: see docs/workers.md (Cost).
    Connection: storeConnection({
      check: pin === undefined ? undefined : (socket, host) => pinnedChainError(socket, host, pin, checksHostName(c)),
      // Per node, as Go's transport decides per request (NO_PROXY may except some nodes).
      proxy: (node) => proxyFor(node, { url: c.proxyUrl, disable: c.proxyDisable }),
      proxyHeaders: c.proxyHeaders,
    }),
    agent: {
      keepAlive: true, maxSockets: c.maxConnPerHost, maxFreeSockets: c.maxConnPerHost,
      // Under a pin every handshake is checked in full: a resumed session would skip the chain.
      ...(pin === undefined ? {} : { maxCachedSessions: 0 }),
    },
  });
}

export function statusOf(err: unknown): number | undefined {
  if (err instanceof errors.ResponseError) return err.meta.statusCode;
  return err instanceof EsItemError ? err.status : undefined;
}

/** The HTTP status behind a failure, whether raw or translated to a store error (which keeps it as `cause`). */
export function statusIn(err: unknown): number | undefined {
  return statusOf(err) ?? statusOf((err as { cause?: unknown } | undefined)?.cause);
}

/**
 * What an Elasticsearch failure means to fleet logic: unreachable, refusing our token, or failing
 * inside → unavailable (503 to agents); rejecting work (429) → busy. Other errors are the caller's.
 * `update`: the failure is an update's, whose 409 is a version conflict that outlasted
 * retry_on_conflict — contention on the document, told to agents as back-pressure (429), not a 500.
 * `apiKeyAuth`: the failure is an agent's key being authenticated, whose 429 upstream names in its own words.
 */
export function toStoreError(err: unknown, what: string, opts: { update?: boolean; apiKeyAuth?: boolean } = {}): unknown {
  if (err instanceof StoreUnavailableError || err instanceof StoreBusyError) return err;
  const status = statusOf(err);
  const unavailable = (message: string): StoreUnavailableError => new StoreUnavailableError(message, { cause: err, clientMessage: UNREACHABLE });
  if (status === 429) {
    return new StoreBusyError(`${what}: Elasticsearch is rejecting requests (429)`,
      opts.apiKeyAuth ? { cause: err, clientMessage: AUTH_LIMIT, clientError: 'ElasticsearchAPIKeyAuthLimit' } : { cause: err, clientMessage: REJECTING });
  }
  if (status === 409 && opts.update) return new StoreBusyError(`${what}: version conflict after retries (409)`, { cause: err, clientMessage: REJECTING });
  if (status === 401) return unavailable(`${what}: Elasticsearch refused the service token (401)`);
  if (status === 403) return unavailable(`${what}: the service token lacks a privilege (403): ${(err as Error).message}`);
  if (status !== undefined && status >= 500) return unavailable(`${what}: Elasticsearch error ${status}: ${(err as Error).message}`);
  // Retried statuses still failing when the retries ran out (408 timeout, 425 too early), and a request
  // refused as too large (413: http.max_content_length, or a proxy's lower limit): the cluster's or the
  // path's fault, not the agent's.
  if (status === 408 || status === 425 || status === 413) return unavailable(`${what}: Elasticsearch error ${status}: ${(err as Error).message}`);
  // Unreachable, timed out, not Elasticsearch, or an answer that is not JSON (DeserializationError: a
  // proxy's HTML page under a JSON content type): the cluster cannot be used from here.
  if (err instanceof errors.ConnectionError || err instanceof errors.TimeoutError || err instanceof errors.NoLivingConnectionsError
    || err instanceof errors.ProductNotSupportedError || err instanceof errors.RequestAbortedError || err instanceof errors.DeserializationError) {
    return unavailable(`${what}: ${err.message}`);
  }
  return err;
}

const REJECTING = 'Elasticsearch is rejecting requests (429); retry later';

/** Upstream's ErrElasticsearchAuthLimit (api/error.go): `_security/_authenticate` answered 429. */
export const AUTH_LIMIT = 'exceeded the elasticsearch api key auth limit';

/** Upstream's words to agents for any Elasticsearch outage (api/error.go). */
export const UNREACHABLE = 'Fleet server unable to communicate with Elasticsearch';

/** Statuses retried with backoff, as upstream's client does (the JS client retries 502–504 itself, at once). */
const RETRIED = new Set([408, 425, 429, 502, 503, 504]);

/**
 * Runs an Elasticsearch call, retrying rejections and gateway errors with exponential backoff
 * (0.5 s → 10 s, ±50 %, 5 retries) and translating what is left into store errors.
 */
export async function withRetries<T>(what: string, fn: () => Promise<T>, retries = 5): Promise<T> {
  const backoff = new Backoff();
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      const status = statusOf(err);
      if (status !== undefined && RETRIED.has(status) && backoff.attempts < retries) {
        await sleep(backoff.next());
        continue;
      }
      throw toStoreError(err, what);
    }
  }
}

/** One `GET /` against an output, with no retries: can this output be used right now? */
export async function probe(c: ElasticsearchOutputConfig, timeoutMs = 5000): Promise<string> {
  const client = createClient(c, { maxRetries: 0, requestTimeoutMs: timeoutMs });
  try {
    return (await client.info()).version.number;
  } finally {
    await client.close();
  }
}
