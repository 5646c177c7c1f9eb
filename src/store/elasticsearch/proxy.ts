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

/** The proxy for `node`, or undefined to connect directly. */
export function proxyFor(node: URL, settings: ProxySettings, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (settings.disable) return undefined;
  if (settings.url) return settings.url;
  const https = node.protocol === 'https:';
  const value = (https ? env.HTTPS_PROXY || env.https_proxy : env.HTTP_PROXY || env.http_proxy) ?? '';
  if (!value) return undefined;
  const host = bareHost(node.hostname);
  if (host === 'localhost' || isLoopback(host)) return undefined;
  const port = node.port || (https ? '443' : '80');
  if (excepted(host, port, env.NO_PROXY || env.no_proxy || '')) return undefined;
  // Go reads a value without a scheme as http://.
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`;
}

function bareHost(hostname: string): string {
  return hostname.replace(/^\[(.*)\]$/, '$1').toLowerCase();
}

function isLoopback(host: string): boolean {
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}

/** NO_PROXY: `*`, or comma-separated host names (each covering its subdomains), IPs and CIDR ranges, each with an optional port. */
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
      if (name === host) return true;
      continue;
    }
    const domain = name.replace(/^\*?\./, '');
    if (host === domain || host.endsWith(`.${domain}`)) return true;
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
  // IPv6: expand "::" and read eight 16-bit groups.
  const [head = '', tail = ''] = ip.split('::');
  const h = head ? head.split(':') : [];
  const t = ip.includes('::') ? (tail ? tail.split(':') : []) : [];
  const groups = [...h, ...new Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return groups.flatMap((g) => {
    const n = parseInt(g, 16);
    return [n >> 8, n & 0xff];
  });
}
