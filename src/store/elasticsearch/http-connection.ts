// The Elasticsearch client's connection: the transport's HttpConnection (node:http, Node's own parser;
// undici is left out of the bundle, scripts/build.mjs), with what it lacks for a store that must not hang.
import { errors, HttpConnection } from '@elastic/elasticsearch';
import type { Agent, ClientRequest, IncomingMessage } from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import { forwardingTo, tunnelThrough, type RequestParams } from './proxy-tunnel';

type ConnectionOptions = ConstructorParameters<typeof HttpConnection>[0];

/** Decides, once a TLS handshake is done, whether the server must be refused (pinned-ca.ts). */
export type TlsCheck = (socket: TLSSocket, host: string) => Error | undefined;

export interface StoreConnectionOptions {
  check?: TlsCheck;
  /** The proxy for a node, or undefined to connect directly. */
  proxy?: (node: URL) => URL | undefined;
  /** Headers for the proxy's CONNECT requests. */
  proxyHeaders?: Record<string, string>;
  /** The settings of this output, as messages name them (`output.elasticsearch`). */
  settings?: string;
}

/** OpenSSL's verification failures that mean the chain leads to no CA this client trusts. */
const UNTRUSTED = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_UNTRUSTED', 'CERT_SIGNATURE_FAILURE',
]);

/** What Node adds to a verification failure; advice for Node's users, not for an operator of this server. */
const NODE_ADVICE = /; if the root CA is installed locally, try running Node\.js with --use-system-ca$/;

/**
 * A TLS verification failure in an operator's words, naming the setting to look at (Go's "x509:
 * certificate signed by unknown authority"); undefined for any other failure.
 */
export function tlsFailureText(err: NodeJS.ErrnoException, settings = 'output.elasticsearch'): string | undefined {
  const code = err.code ?? '';
  const reason = err.message.replace(NODE_ADVICE, '');
  if (UNTRUSTED.has(code)) return `certificate signed by unknown authority (${reason}; check ${settings}.ssl.certificate_authorities)`;
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') return `${reason} (the certificate Elasticsearch presented)`;
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return `${reason.replace(/:\s*$/, '')} (check the host in ${settings}.hosts, or ${settings}.ssl.verification_mode)`;
  return reason !== err.message ? reason : undefined;
}

/**
 * HttpConnection stops watching a request's timeout and abort signal once the response headers arrive,
 * then reads the body with neither: a body that stalls (a proxy, a node in trouble) would hang the store
 * call for good, where undici's connection had a body timeout. Here the socket's inactivity timeout, which
 * the request keeps armed, and the signal end it; the transport then fails the call with "Connection closed
 * while reading the body".
 * `check`: run on each TLS socket once its handshake is done ('secureConnect', before the request waiting
 * for it is written); a socket it returns an error for is destroyed with it (a ConnectionError).
 * A certificate the client does not trust is told as such, naming `settings`' CA setting (tlsFailureText).
 */
export function storeConnection({ check, proxy, proxyHeaders = {}, settings }: StoreConnectionOptions = {}): typeof HttpConnection {
  return class StoreConnection extends HttpConnection {
    /** The signal of the call being started: makeRequest runs synchronously inside request(). */
    private starting: AbortSignal | undefined;

    constructor(opts: ConnectionOptions) {
      const via = proxy?.(opts.url);
      // An http node through an http proxy: requests in absolute form, as Go's transport sends them (a
      // proxy's default rules commonly refuse CONNECT to ports other than 443); else a CONNECT tunnel.
      const forward = via !== undefined && opts.url.protocol === 'http:' && via.protocol === 'http:' ? forwardingTo(opts.url, via) : undefined;
      super({ ...opts, proxy: undefined });
      if (via && !forward) tunnelThrough(this.agent as Agent, via, proxyHeaders, opts.url.protocol === 'https:');
      const make = this.makeRequest;
      this.makeRequest = ((params: RequestParams) => {
        const req = (make as (p: RequestParams) => ClientRequest)(forward ? forward(params) : params);
        // Before HttpConnection's own listener, which makes the client's error of this one's message.
        req.prependListener('error', (err: NodeJS.ErrnoException) => {
          const text = tlsFailureText(err, settings);
          if (text !== undefined) err.message = text;
        });
        const signal = this.starting;
        /** Ends the call while its body is arriving (before the head, HttpConnection's own listeners do it). */
        const endBody = (err: () => Error): void => {
          // null until the head arrives
          const res = (req as ClientRequest & { res: IncomingMessage | null }).res;
          if (res !== null && !res.complete) req.destroy(err());
        };
        req.on('timeout', () => endBody(() => new errors.TimeoutError('Elasticsearch response body stalled')));
        if (signal) {
          const abort = (): void => endBody(() => new errors.RequestAbortedError('Request aborted'));
          signal.addEventListener('abort', abort, { once: true });
          req.once('close', () => signal.removeEventListener('abort', abort));
        }
        return req;
      }) as typeof this.makeRequest;
      if (check && this.agent instanceof https.Agent) checkHandshakes(this.agent, check);
      const request = this.request.bind(this) as (params: unknown, options?: { signal?: AbortSignal }) => Promise<unknown>;
      this.request = ((params: unknown, options?: { signal?: AbortSignal }) => {
        this.starting = options?.signal;
        try {
          return request(params, options);
        } finally {
          this.starting = undefined;
        }
      }) as typeof this.request;
    }
  } as unknown as typeof HttpConnection;
}

/** Runs `check` on every TLS socket the agent makes (through a proxy tunnel too: proxy-tunnel.ts). */
function checkHandshakes(agent: https.Agent, check: TlsCheck): void {
  const create = agent.createConnection.bind(agent);
  agent.createConnection = (options, callback) => {
    const { servername, host } = options as { servername?: string; host?: string };
    const guard = <S extends Duplex | null | undefined>(socket: S): S => {
      if (socket instanceof TLSSocket) {
        socket.once('secureConnect', () => {
          const err = check(socket, servername || host || 'localhost');
          if (err) socket.destroy(err);
        });
      }
      return socket;
    };
    // https.Agent returns its socket; through a proxy it comes to the callback once tunnelled.
    return guard(create(options, callback && ((err, socket) => callback(err, guard(socket)))));
  };
}
