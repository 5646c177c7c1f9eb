// Clients for the Elasticsearch output as upstream configures them: hosts/protocol/path, the service
// token as Bearer, product-origin and User-Agent headers, TLS verification modes, proxy, timeout.
// One client serves requests (with retries); another, without retries, holds the monitors' long polls.
import { Client, errors } from '@elastic/elasticsearch';

type ClientOptions = ConstructorParameters<typeof Client>[0];
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { arch, platform } from 'node:os';
import type { ElasticsearchOutputConfig } from '../../config/config';
import { pemOrFile } from '../../config/config';
import { Backoff, sleep } from '../../util/backoff';
import { withContext } from '../../util/error-text';
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

/** The settings an output's messages name when no other is given: the server's own output. */
const OUTPUT_SETTINGS = 'output.elasticsearch';

export function serviceToken(c: ElasticsearchOutputConfig, settings = OUTPUT_SETTINGS): string | undefined {
  if (c.serviceToken) return c.serviceToken;
  if (!c.serviceTokenPath) return undefined;
  try {
    return readFileSync(c.serviceTokenPath, 'utf8').trim();
  } catch (err) {
    throw withContext(`config key ${settings}.service_token_path: cannot read ${c.serviceTokenPath}`, err);
  }
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[^-]*-----END CERTIFICATE-----/g;

/**
 * ssl.certificate_authorities, each read and checked: Node takes a file with no certificate in it as an
 * empty list of CAs (the system's are then not used either), and the server started only to log
 * "self-signed certificate" at every connection. A file that is not a bundle of PEM certificates is
 * refused here, at the start, by its setting and path, as the listener's CAs are (cli/tls-check.ts).
 */
function certificateAuthorities(c: ElasticsearchOutputConfig, settings: string): string[] {
  const key = `${settings}.ssl.certificate_authorities`;
  return c.ssl.certificateAuthorities.map((value) => {
    const inline = value.includes('-----BEGIN');
    const where = inline ? key : `${value} (${key})`;
    let pem: string;
    try {
      pem = pemOrFile(value)!;
    } catch (err) {
      throw withContext(`cannot read CA file ${where}`, err);
    }
    const blocks = pem.match(PEM_CERTIFICATE) ?? [];
    if (blocks.length === 0) throw new Error(`invalid CA file ${where}: no PEM certificate in it (-----BEGIN CERTIFICATE----- expected)`);
    for (const block of blocks) {
      try {
        new X509Certificate(block);
      } catch (err) {
        throw withContext(`invalid CA file ${where}: a certificate in it cannot be parsed`, err);
      }
    }
    return pem;
  });
}

/** `pin`: the output's pinned CA fingerprint (pinOf), if any. */
function tlsOptions(c: ElasticsearchOutputConfig, pin: string | undefined, settings: string): ClientOptions['tls'] {
  const ca = certificateAuthorities(c, settings);
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

/**
 * `settings`: where the output is configured, as messages name its keys (`output.elasticsearch`, the
 * default). A certificate_authorities file with no certificate, or a service_token_path that cannot be
 * read, fails here (at the start) naming its setting.
 */
export function createClient(c: ElasticsearchOutputConfig, opts: { maxRetries: number; requestTimeoutMs: number; settings?: string }): Client {
  const settings = opts.settings ?? OUTPUT_SETTINGS;
  let token: string | undefined;
  let tls: ClientOptions['tls'];
  const pin = pinOf(c);
  try {
    token = serviceToken(c, settings);
    tls = tlsOptions(c, pin, settings);
  } catch (err) {
    // A store fault, as the connection's failure would have been: a remote output's (a policy's) is 503 to the agent.
    throw new StoreUnavailableError((err as Error).message, { cause: err, clientMessage: UNREACHABLE });
  }
  return new Client({
    nodes: nodeUrls(c),
    ...(token ? { auth: { bearer: token } } : {}),
    headers: { ...c.headers, 'X-elastic-product-origin': 'fleet', 'user-agent': USER_AGENT },
    tls,
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
      settings,
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
export function toStoreError(err: unknown, step: string, opts: { update?: boolean; apiKeyAuth?: boolean } = {}): unknown {
  if (err instanceof StoreUnavailableError || err instanceof StoreBusyError) return err;
  const what = operatorWords(step);
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
  // They are told with the node's URL (the client tries each of the hosts): which one failed matters more
  // than the client's internal step.
  if (err instanceof errors.ConnectionError || err instanceof errors.TimeoutError || err instanceof errors.NoLivingConnectionsError
    || err instanceof errors.ProductNotSupportedError || err instanceof errors.RequestAbortedError || err instanceof errors.DeserializationError) {
    const node = nodeOf(err);
    const cause = err instanceof errors.ProductNotSupportedError
      ? 'the server is not Elasticsearch (its answer has no X-Elastic-Product: Elasticsearch header)' : err.message;
    return unavailable(`${what}${node ? ` (${node})` : ''}: ${cause}`);
  }
  return err;
}

/** The internal steps some callers name (the bulker's batched calls), in an operator's words. */
const STEP_WORDS: Record<string, string> = {
  msearch: 'reading from Elasticsearch', 'fleet msearch': 'reading from Elasticsearch', mget: 'reading from Elasticsearch',
  bulk: 'writing to Elasticsearch',
};

function operatorWords(what: string): string {
  return STEP_WORDS[what] ?? what;
}

/** The URL of the node a client error came from (credentials left out), if the client says. */
function nodeOf(err: object): string | undefined {
  const url = (err as { meta?: { meta?: { connection?: { url?: unknown } | null } } }).meta?.meta?.connection?.url;
  // A URL, or its text where the client kept the connection's description.
  const href = typeof url === 'string' ? url : (url as { href?: unknown } | undefined)?.href;
  if (typeof href !== 'string' || !URL.canParse(href)) return undefined;
  const u = new URL(href);
  u.username = '';
  u.password = '';
  return u.href.replace(/\/$/, '');
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
