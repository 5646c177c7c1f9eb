// The two ways a request reaches an Elasticsearch node through a proxy, as Go's transport does it: an
// http node through an http proxy in absolute form (the proxy's credentials on each request), anything
// else through a CONNECT tunnel (the credentials and proxy_headers — Go's ProxyConnectHeader — on the
// CONNECT), TLS to an https node inside it. Our own tunnel rather than the transport's proxy agent:
// that one cannot reach an IPv6 proxy, nor name an IPv6 node in its CONNECT, nor send headers.
import http from 'node:http';
import https from 'node:https';
import { isIP, type Socket } from 'node:net';
import { bareHost } from './proxy';

/** The request options the transport builds (buildRequestObject), as far as a proxy changes them. */
export interface RequestParams {
  hostname: string;
  port?: string;
  path: string;
  headers: Record<string, unknown>;
}

function proxyAuthorization(proxy: URL): Record<string, string> {
  if (!proxy.username && !proxy.password) return {};
  const basic = Buffer.from(`${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`).toString('base64');
  return { 'proxy-authorization': `Basic ${basic}` };
}

/** Rewrites a request to `node` so that it goes to `proxy` in absolute form. */
export function forwardingTo(node: URL, proxy: URL): (params: RequestParams) => RequestParams {
  const auth = proxyAuthorization(proxy);
  const hostname = bareHost(proxy.hostname);
  return (params) => ({
    ...params, hostname, port: proxy.port || '80', path: `${node.origin}${params.path}`,
    headers: { ...params.headers, host: node.host, ...auth },
  });
}

type Created = (err: Error | null, socket?: Socket) => void;

/**
 * Makes `agent` open each connection through a CONNECT tunnel of `proxy`; `tls`: the agent is an
 * https.Agent, and its TLS (with its options: CAs, client certificate, checks) runs inside the tunnel.
 */
export function tunnelThrough(agent: http.Agent, proxy: URL, headers: Record<string, string>, tls: boolean): void {
  const auth = proxyAuthorization(proxy);
  const proxyHost = bareHost(proxy.hostname);
  const secureProxy = proxy.protocol === 'https:';
  // An https proxy is verified with the output's CAs (and shown its client certificate), as Go's
  // transport uses one TLS configuration for both.
  const { ca, cert, key } = (agent as unknown as { options: https.RequestOptions }).options;
  const proxyTls: https.RequestOptions = secureProxy ? { ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}) } : {};
  (agent as unknown as { createConnection: (options: Record<string, unknown>, done: Created) => undefined }).createConnection = (options, done) => {
    const host = String(options.host);
    const target = `${isIP(host) === 6 ? `[${host}]` : host}:${String(options.port)}`;
    const req = (secureProxy ? https : http).request({
      host: proxyHost, port: proxy.port || (secureProxy ? 443 : 80), method: 'CONNECT', path: target, setHost: false, agent: false,
      headers: { ...headers, host: target, ...auth }, timeout: Number(options.timeout) || 0,
      ...proxyTls, ...(secureProxy && isIP(proxyHost) === 0 ? { servername: proxyHost } : {}),
    });
    // Once: a later error of the finished CONNECT request must find a listener, and change nothing.
    let settled = false;
    const settle = (err: Error | null, socket?: Socket): void => {
      if (settled) return;
      settled = true;
      done(err, socket);
    };
    req.once('connect', (res, socket, head) => {
      if (res.statusCode !== 200) {
        socket.destroy();
        settle(new Error(`the proxy refused to connect to ${target} (${res.statusCode})`));
        return;
      }
      if (head.length > 0) socket.unshift(head);
      settle(null, tls ? (https.Agent.prototype as unknown as { createConnection: (o: object) => Socket }).createConnection.call(agent, { ...options, socket }) : socket);
    });
    req.once('timeout', () => req.destroy(new Error('proxy timeout')));
    req.on('error', (err) => settle(err));
    req.end();
    return undefined;
  };
}
