// The address a listener named `localhost` binds. Go's net.Listen takes the name's IPv4 address
// (127.0.0.1); Node takes whichever the resolver answers first, ::1 on some hosts, and a scraper or agent
// pointed at 127.0.0.1 would be refused.
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { causeText } from '../util/error-text';

export function listenHost(host: string): string {
  return host === 'localhost' ? '127.0.0.1' : host;
}

/** The setting that names the API listener's host. */
export const SERVER_HOST_KEY = 'inputs.0.server.host';

/**
 * Why `host` (the setting `key`) cannot be a listener's host, or undefined. Node would look a host with
 * a port in it up as a name and answer "unknown node or service"; Go's Listen says "too many colons".
 * `portKey`: the setting the port belongs in.
 */
export function listenHostProblem(host: string, key = SERVER_HOST_KEY, portKey = 'inputs.0.server.port'): string | undefined {
  if (host === '' || isIP(host) !== 0) return undefined;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(host)) return `${key} ${host}: a host name or address, not a URL`;
  if (/^(\[[^\]]*\]|[^:]+):\d*$/.test(host)) return `${key} ${host}: a host name or address without a port (give the port in ${portKey})`;
  if (host.includes(':') || host.includes('/')) return `${key} ${host}: not a host name or address`;
  return undefined;
}

/**
 * A listener's failure to find its host, naming the setting: "inputs.0.server.host x: no such host
 * (ENOTFOUND)". Other failures (the port taken, not permitted) are returned as they are.
 */
export function listenError(err: unknown, host: string, key = SERVER_HOST_KEY, portKey?: string): unknown {
  if ((err as NodeJS.ErrnoException | undefined)?.syscall !== 'getaddrinfo') return err;
  return new Error(listenHostProblem(host, key, portKey) ?? `${key} ${host}: ${causeText(err)}`, { cause: err });
}

/**
 * Checks a listener's host before anything is opened: its form, and that it resolves (Go's Listen looks
 * it up the same way). A start that cannot listen then creates no store and prints no first-start help.
 */
export async function checkListenHost(host: string, key = SERVER_HOST_KEY, portKey?: string): Promise<void> {
  const problem = listenHostProblem(host, key, portKey);
  if (problem) throw new Error(problem);
  if (host === '' || isIP(listenHost(host)) !== 0) return;
  try {
    await lookup(host);
  } catch (err) {
    throw listenError(err, host, key, portKey);
  }
}
