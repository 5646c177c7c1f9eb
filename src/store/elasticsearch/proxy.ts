// Which proxy, if any, a connection to an Elasticsearch node goes through: as upstream's output
// (libbeat transport/httpcommon): `proxy_url` for every node; else, unless `proxy_disable`, the
// environment as Go's http.ProxyFromEnvironment reads it (golang.org/x/net/http/httpproxy) — HTTPS_PROXY
// for https nodes, HTTP_PROXY for http ones, NO_PROXY's exceptions, and never for localhost or a loopback
// address.
import { isIP } from 'node:net';

export interface ProxySettings {
  url?: string;
  disable: boolean;
}

/**
 * The proxy for `node`, or undefined to connect directly. Throws when the proxy named is not one this
 * client can use (the message never includes the URL, which may hold credentials).
 */
export function proxyFor(node: URL, settings: ProxySettings, env: NodeJS.ProcessEnv = process.env): URL | undefined {
  if (settings.disable) return undefined;
  if (settings.url) return proxyUrl(settings.url, 'output.elasticsearch.proxy_url');
  const https = node.protocol === 'https:';
  const name = https ? (env.HTTPS_PROXY ? 'HTTPS_PROXY' : 'https_proxy') : (env.HTTP_PROXY ? 'HTTP_PROXY' : 'http_proxy');
  const value = env[name] ?? '';
  if (!value) return undefined;
  const host = bareHost(node.hostname);
  if (host === 'localhost' || isLoopback(host)) return undefined;
  const port = node.port || (https ? '443' : '80');
  if (excepted(host, port, env.NO_PROXY || env.no_proxy || '')) return undefined;
  // Go reads a value without a scheme as http://.
  return proxyUrl(/^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`, `the environment's ${name}`);
}

function proxyUrl(value: string, where: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error(`${where} is not a valid URL`);
  }
  // Go also takes socks5://; this client tunnels through http and https proxies only.
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`${where}: ${url.protocol.slice(0, -1)} proxies are not supported (http and https are)`);
  return url;
}

export function bareHost(hostname: string): string {
  return hostname.replace(/^\[(.*)\]$/, '$1').toLowerCase();
}

/** 127.0.0.0/8 and ::1, also written as IPv4-mapped IPv6 (Go's IP.IsLoopback). */
function isLoopback(host: string): boolean {
  const family = isIP(host);
  if (family === 0) return false;
  const b = ipBytes(host);
  if (family === 4) return b[0] === 127;
  const mapped = b.slice(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
  if (mapped) return b[12] === 127;
  return b.slice(0, 15).every((x) => x === 0) && b[15] === 1;
}

/**
 * NO_PROXY: `*`, or comma-separated IPs, CIDR ranges and host names, each with an optional port; a name
 * covers itself and its subdomains, `.name` and `*.name` its subdomains only (httpproxy's domainMatch).
 */
function excepted(host: string, port: string, noProxy: string): boolean {
  for (const raw of noProxy.split(',')) {
    const entry = raw.trim().toLowerCase();
    if (!entry) continue;
    if (entry === '*') return true;
    if (entry.includes('/')) {
      if (inCidr(host, entry)) return true;
      continue;
    }
    const { name, port: want } = splitPort(entry);
    if (want && want !== port) continue;
    if (isIP(name)) {
      if (isIP(host) === isIP(name) && ipBytes(host).every((x, i) => x === ipBytes(name)[i])) return true;
      continue;
    }
    const subdomainsOnly = /^\*?\./.test(name);
    const domain = name.replace(/^\*?\./, '');
    if (host.endsWith(`.${domain}`) || (!subdomainsOnly && host === domain)) return true;
  }
  return false;
}

function splitPort(entry: string): { name: string; port?: string } {
  const bracketed = /^\[(.*)\](?::(\d+))?$/.exec(entry);
  if (bracketed) return { name: bracketed[1]!, port: bracketed[2] };
  const m = /^([^:]+):(\d+)$/.exec(entry);
  return m ? { name: m[1]!, port: m[2] } : { name: entry };
}

function inCidr(host: string, cidr: string): boolean {
  const [base, bitsText] = cidr.split('/');
  const bits = Number(bitsText);
  const family = isIP(host);
  if (!base || family === 0 || isIP(base) !== family || !Number.isInteger(bits)) return false;
  const a = ipBytes(host);
  const b = ipBytes(base);
  if (bits < 0 || bits > a.length * 8) return false;
  for (let i = 0; i < bits; i++) {
    const byte = i >> 3;
    const mask = 0x80 >> (i & 7);
    if ((a[byte]! & mask) !== (b[byte]! & mask)) return false;
  }
  return true;
}

function ipBytes(ip: string): number[] {
  if (isIP(ip) === 4) return ip.split('.').map(Number);
  // IPv6: a dotted IPv4 tail as two groups, "::" expanded, eight 16-bit groups read.
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(ip);
  const text = v4 ? ip.slice(0, v4.index) + [((+v4[1]! << 8) | +v4[2]!).toString(16), ((+v4[3]! << 8) | +v4[4]!).toString(16)].join(':') : ip;
  const [head = '', tail = ''] = text.split('::');
  const h = head ? head.split(':') : [];
  const t = text.includes('::') ? (tail ? tail.split(':') : []) : [];
  const groups = [...h, ...new Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return groups.flatMap((g) => {
    const n = parseInt(g, 16);
    return [n >> 8, n & 0xff];
  });
}
