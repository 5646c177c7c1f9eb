// Reading what an agent sent in its headers: the ApiKey credentials, header values by name.
import type { IncomingMessage } from 'node:http';
import type { ApiKeyCredentials } from '../fleet/auth';
import { FleetError } from '../fleet/errors';

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Every value of a header, one per header line, read from the raw list: `headersDistinct` would build
 * (and keep, for as long as a long poll is held) a second map of every header.
 */
export function headerValues(req: IncomingMessage, lowerName: string): string[] {
  const raw = req.rawHeaders;
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === lowerName.length && name.toLowerCase() === lowerName) out.push(raw[i + 1]!);
  }
  return out;
}

/** A held long poll keeps its request object; the header strings it no longer needs can go. */
export function releaseHeaders(req: IncomingMessage): void {
  req.rawHeaders.length = 0;
  (req as { headers: IncomingMessage['headers'] }).headers = {};
}

/** `Authorization: ApiKey <base64(id:key)>`, with upstream's error for each way it can be wrong. */
export function apiKeyFromHeader(req: IncomingMessage): ApiKeyCredentials {
  const values = headerValues(req, 'authorization');
  if (values.length === 0) throw new FleetError('NoAuthHeader');
  if (values.length > 1 || !values[0]!.startsWith('ApiKey ')) throw new FleetError('MalformedHeader');
  const token = values[0]!.slice(7).trim();
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(token) || token.length % 4 !== 0) throw new FleetError('InvalidToken');
  const raw = Buffer.from(token, 'base64');
  try {
    utf8.decode(raw);
  } catch {
    throw new FleetError('InvalidToken');
  }
  const colon = raw.indexOf(0x3a);
  if (colon < 0 || raw.indexOf(0x3a, colon + 1) >= 0) throw new FleetError('MalformedToken');
  // Two independent strings: a substring of "id:key" would keep the secret alive for as long as the
  // id is used as a cache key.
  return { id: raw.toString('utf8', 0, colon), key: raw.toString('utf8', colon + 1) };
}
