// The Elasticsearch output through a proxy as upstream's (libbeat httpcommon): proxy_url for every node,
// else the environment's HTTP(S)_PROXY and NO_PROXY as Go reads them, proxy_disable to ignore both. Http
// nodes are reached in absolute form, https ones through a CONNECT tunnel carrying proxy_headers.
import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { buildConfig, type ElasticsearchOutputConfig } from '../../src/config/config';
import { proxyFor } from '../../src/store/elasticsearch/proxy';
import { Authority } from '../support/certs';
import { esOutput, nodeName } from '../support/es-output';

const ROOT = JSON.stringify({ name: 'behind-proxy', cluster_name: 'c', cluster_uuid: 'u', version: { number: '9.6.0' }, tagline: 't' });
const answer = (_req: http.IncomingMessage, res: http.ServerResponse): void => {
  res.writeHead(200, { 'content-type': 'application/json', 'x-elastic-product': 'Elasticsearch' });
  res.end(ROOT);
};

const authority = new Authority('Proxy test CA');
const leaf = authority.leaf('localhost');
let plainEs: http.Server;
let tlsEs: https.Server;
let tlsEs6: https.Server;
let proxy: http.Server;
let proxy6: http.Server;
/** What the proxy was asked: request lines and the headers it cares about. */
let seen: { method: string; url: string; host?: string; auth?: string; custom?: string }[] = [];

const listen = async <S extends net.Server>(s: S, host = '127.0.0.1'): Promise<S> => {
  await new Promise<void>((r) => s.listen(0, host, () => r()));
  return s;
};
const portOf = (s: net.Server): number => (s.address() as AddressInfo).port;

beforeAll(async () => {
  plainEs = await listen(http.createServer(answer));
  tlsEs = await listen(https.createServer({ cert: leaf.cert, key: leaf.key }, answer));
  tlsEs6 = await listen(https.createServer({ cert: leaf.cert, key: leaf.key }, answer), '::1');
  // A forward proxy: absolute-form requests are relayed, CONNECT opens a tunnel.
  proxy = http.createServer((req, res) => {
    seen.push({ method: req.method!, url: req.url!, host: req.headers.host, auth: req.headers['proxy-authorization'], custom: req.headers['x-proxy-team'] as string | undefined });
    const target = new URL(req.url!);
    const headers = { ...req.headers };
    delete headers['proxy-authorization'];
    const upstream = http.request({ hostname: target.hostname, port: target.port, path: target.pathname + target.search, method: req.method, headers }, (r) => {
      res.writeHead(r.statusCode!, r.headers);
      r.pipe(res);
    });
    req.pipe(upstream);
  });
  proxy.on('connect', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    seen.push({ method: req.method!, url: req.url!, host: req.headers.host, auth: req.headers['proxy-authorization'], custom: req.headers['x-proxy-team'] as string | undefined });
    const [, host, port] = /^\[?(.*?)\]?:(\d+)$/.exec(req.url!) ?? [];
    const upstream = net.connect(Number(port), host === 'localhost' ? '127.0.0.1' : host!, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
  });
  await listen(proxy);
  // The same proxy on IPv6 loopback too.
  proxy6 = http.createServer((req, res) => proxy.emit('request', req, res));
  proxy6.on('connect', (...args) => proxy.emit('connect', ...args));
  await listen(proxy6, '::1');
});
afterAll(async () => {
  for (const s of [plainEs, tlsEs, tlsEs6, proxy, proxy6]) {
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
});
beforeEach(() => {
  seen = [];
});

const output = (host: string, extra: Partial<ElasticsearchOutputConfig> = {}): ElasticsearchOutputConfig =>
  esOutput(host, { ssl: { verificationMode: 'full', certificateAuthorities: [authority.ca.cert] }, ...extra });
const info = nodeName;

describe('Elasticsearch through proxy_url', () => {
  it('reaches an http node in absolute form, with the credentials of the proxy URL', async () => {
    const node = `http://127.0.0.1:${portOf(plainEs)}`;
    expect(await info(output(node, { proxyUrl: `http://fleet:s%40cret@127.0.0.1:${portOf(proxy)}` }))).toBe('behind-proxy');
    expect(seen).toEqual([{ method: 'GET', url: `${node}/`, host: `127.0.0.1:${portOf(plainEs)}`, auth: `Basic ${Buffer.from('fleet:s@cret').toString('base64')}`, custom: undefined }]);
  });

  it('tunnels to an https node with CONNECT, sending proxy_headers, and verifies the node through the tunnel', async () => {
    const node = `https://localhost:${portOf(tlsEs)}`;
    const via = { proxyUrl: `http://127.0.0.1:${portOf(proxy)}`, proxyHeaders: { 'X-Proxy-Team': 'fleet' } };
    expect(await info(output(node, via))).toBe('behind-proxy');
    expect(seen).toEqual([{ method: 'CONNECT', url: `localhost:${portOf(tlsEs)}`, host: `localhost:${portOf(tlsEs)}`, auth: undefined, custom: 'fleet' }]);
    // The tunnel does not stand in for verification: a CA that did not sign the node is refused.
    const stranger = new Authority('Stranger CA');
    await expect(info(output(node, { ...via, ssl: { verificationMode: 'full', certificateAuthorities: [stranger.ca.cert] } }))).rejects.toThrow(/certificate/i);
  });

  it('reaches an IPv6 proxy, and names an IPv6 node in brackets in its CONNECT', async () => {
    const node = `https://[::1]:${portOf(tlsEs6)}`;
    const c = output(node, { proxyUrl: `http://[::1]:${portOf(proxy6)}`, ssl: { verificationMode: 'certificate', certificateAuthorities: [authority.ca.cert] } });
    expect(await info(c)).toBe('behind-proxy');
    expect(seen.map((r) => [r.method, r.url, r.host])).toEqual([['CONNECT', `[::1]:${portOf(tlsEs6)}`, `[::1]:${portOf(tlsEs6)}`]]);
  });

  it('reaches an https proxy verified with the output\'s CAs', async () => {
    const secureProxy = await listen(https.createServer({ cert: leaf.cert, key: leaf.key }));
    secureProxy.on('connect', (...args) => proxy.emit('connect', ...args));
    try {
      expect(await info(output(`https://localhost:${portOf(tlsEs)}`, { proxyUrl: `https://localhost:${portOf(secureProxy)}` }))).toBe('behind-proxy');
      expect(seen.map((r) => r.method)).toEqual(['CONNECT']);
    } finally {
      secureProxy.closeAllConnections();
      secureProxy.close();
    }
  });

  it('a proxy that refuses the CONNECT fails the call, and says which node', async () => {
    const refusing = await listen(http.createServer());
    refusing.on('connect', (_req: http.IncomingMessage, client: net.Socket) => client.end('HTTP/1.1 403 Forbidden\r\n\r\n'));
    try {
      await expect(info(output(`https://localhost:${portOf(tlsEs)}`, { proxyUrl: `http://127.0.0.1:${portOf(refusing)}` })))
        .rejects.toThrow(`the proxy refused to connect to localhost:${portOf(tlsEs)} (403)`);
    } finally {
      refusing.close();
    }
  });

  it('proxy_disable connects directly', async () => {
    expect(await info(output(`http://127.0.0.1:${portOf(plainEs)}`, { proxyUrl: `http://127.0.0.1:${portOf(proxy)}`, proxyDisable: true }))).toBe('behind-proxy');
    expect(seen).toEqual([]);
  });
});

describe('the proxy chosen for a node (as Go reads the environment)', () => {
  const env = { HTTP_PROXY: 'proxy.corp:3128', HTTPS_PROXY: 'https://secure.corp:3129', NO_PROXY: 'es.internal, .svc.local, *.cluster.lan, 10.0.0.0/8, search.example.com:9243, [fd00:0:0:0:0:0:0:1]' };
  const of = (node: string, settings = { disable: false } as { url?: string; disable: boolean }, e: NodeJS.ProcessEnv = env): string | undefined => proxyFor(new URL(node), settings, e)?.href;

  it('uses proxy_url for every node, unless proxy_disable', () => {
    expect(of('http://127.0.0.1:9200', { url: 'http://p:1', disable: false })).toBe('http://p:1/');
    expect(of('https://es.internal:9200', { url: 'http://p:1', disable: false })).toBe('http://p:1/');
    expect(of('https://es.example.com:9200', { url: 'http://p:1', disable: true })).toBeUndefined();
    expect(of('https://es.example.com:9200', { disable: true })).toBeUndefined();
  });

  it('takes HTTPS_PROXY for https nodes and HTTP_PROXY for http ones, reading a bare host as http://', () => {
    expect(of('https://es.example.com:9200')).toBe('https://secure.corp:3129/');
    expect(of('http://es.example.com:9200')).toBe('http://proxy.corp:3128/');
    expect(of('http://es.example.com:9200', undefined, { http_proxy: 'http://lower:1' })).toBe('http://lower:1/');
    expect(of('https://es.example.com:9200', undefined, { HTTP_PROXY: 'http://only-http:1' })).toBeUndefined();
  });

  it('never proxies localhost or loopback, and honours NO_PROXY names, subdomains, ports, CIDR ranges and *', () => {
    for (const direct of ['https://localhost:9200', 'https://127.0.0.1:9200', 'https://127.8.9.1:9200', 'https://[::1]:9200', 'https://[::ffff:127.0.0.1]:9200',
      'https://es.internal:9200', 'https://a.es.internal:9200', 'https://node1.svc.local:9200', 'https://a.cluster.lan:9200', 'https://10.1.2.3:9200',
      'https://search.example.com:9243', 'https://[fd00::1]:9200',
      // An IPv4-mapped address is its IPv4 address, as Go's IPNet.Contains reads it.
      'https://[::ffff:10.0.0.1]:9200']) {
      expect([direct, of(direct)]).toEqual([direct, undefined]);
    }
    // A leading dot or *. covers subdomains only, as in Go.
    for (const proxied of ['https://11.1.2.3:9200', 'https://search.example.com:9200', 'https://notes.internal:9200', 'https://svc.local.evil.com:9200',
      'https://svc.local:9200', 'https://cluster.lan:9200', 'https://[fd00::2]:9200', 'https://[::ffff:11.0.0.1]:9200']) {
      expect([proxied, of(proxied)]).toEqual([proxied, 'https://secure.corp:3129/']);
    }
    expect(of('https://es.example.com:9200', undefined, { ...env, NO_PROXY: '*' })).toBeUndefined();
  });

  it('refuses a proxy it cannot use, without repeating its URL (it may hold credentials)', () => {
    expect(() => of('https://es.example.com:9200', { url: 'socks5://u:hunter2@p:1080', disable: false })).toThrow('output.elasticsearch.proxy_url: socks5 proxies are not supported (http and https are)');
    let message = '';
    try {
      of('https://es.example.com:9200', undefined, { HTTPS_PROXY: 'http://u:hunter2@[bad' });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toBe("the environment's HTTPS_PROXY is not a valid URL");
  });
});

test('fleet-server.yml keys: proxy_url, proxy_disable and proxy_headers', () => {
  const es = (o: Record<string, unknown>): ElasticsearchOutputConfig => buildConfig({ output: { elasticsearch: { hosts: ['es:9200'], ...o } } }).elasticsearch!;
  expect(es({ proxy_url: 'http://p:3128', proxy_headers: { 'Proxy-Authorization': 'Bearer t' } })).toMatchObject({ proxyUrl: 'http://p:3128', proxyDisable: false, proxyHeaders: { 'Proxy-Authorization': 'Bearer t' } });
  expect(es({ proxy_url: 'http://p:3128', proxy_disable: true })).toMatchObject({ proxyDisable: true, proxyHeaders: {} });
});
