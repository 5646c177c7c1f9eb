// Which proxy, if any, a connection to an Elasticsearch node goes through: as upstream's output
// (libbeat transport/httpcommon): `proxy_url` for every node; else, unless `proxy_disable`, the
// environment as Go's http.ProxyFromEnvironment reads it (golang.org/x/net/http/httpproxy) — HTTPS_PROXY
// for https nodes, HTTP_PROXY for http ones, NO_PROXY's exceptions, and never for localhost or a loopback
// address.
import { BlockList, isIP } from 'node:net';

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

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** 127.0.0.0/8 and ::1, also written as IPv4-mapped IPv6 (Go's IP.IsLoopback). */
function isLoopback(host: string): boolean {
  const family = isIP(host);
  return family !== 0 && LOOPBACK.check(host, family === 4 ? 'ipv4' : 'ipv6');
}

/**
 * Whether the IP `host` is `ip`, or in `ip`/`bits`, compared as addresses as Go's net.IP does (an
 * IPv4-mapped IPv6 address is its IPv4 address).
 */
function ipMatches(host: string, ip: string, bits?: number): boolean {
  const family = isIP(ip);
  const hostFamily = isIP(host);
  if (family === 0 || hostFamily === 0) return false;
  const list = new BlockList();
  try {
    if (bits === undefined) list.addAddress(ip, family === 4 ? 'ipv4' : 'ipv6');
    else list.addSubnet(ip, bits, family === 4 ? 'ipv4' : 'ipv6');
  } catch {
    return false; // a prefix length out of range
  }
  return list.check(host, hostFamily === 4 ? 'ipv4' : 'ipv6');
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
      const [base = '', bits = ''] = entry.split('/');
      if (/^\d+$/.test(bits) && ipMatches(host, base, Number(bits))) return true;
      continue;
    }
    const { name, port: want } = splitPort(entry);
    if (want && want !== port) continue;
    if (isIP(name)) {
      if (ipMatches(host, name)) return true;
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
