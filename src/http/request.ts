// Reading what an agent sent: the ApiKey header, the body (size-limited, optionally gzip), JSON.
import type { IncomingMessage } from 'node:http';
import { gunzip } from 'node:zlib';
import { promisify } from 'node:util';
import type { ApiKeyCredentials } from '../fleet/auth';
import { badRequest, FleetError } from '../fleet/errors';
import type { Validator } from '../fleet/messages';

const gunzipAsync = promisify(gunzip);
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

export interface BodyLimits {
  maxBytes: number;
  maxDecompressed?: number;
  allowGzip?: boolean;
}

/** The raw body; over the limit answers upstream's 400 "request body too large". */
export async function readBody(req: IncomingMessage, what: string, limits: BodyLimits): Promise<Buffer> {
  const max = limits.maxBytes > 0 ? limits.maxBytes : Infinity;
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > max) throw tooLarge(what);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) throw tooLarge(what);
    chunks.push(chunk);
  }
  let body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
  const encoding = req.headers['content-encoding'];
  if (encoding !== undefined && encoding !== 'identity') {
    if (encoding !== 'gzip' || !limits.allowGzip) throw badRequest(`unable to read ${what} request`, `unsupported content encoding ${encoding}`);
    try {
      body = await gunzipAsync(body, { maxOutputLength: limits.maxDecompressed && limits.maxDecompressed > 0 ? limits.maxDecompressed : undefined });
    } catch (err) {
      if (err instanceof RangeError || (err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw tooLarge(what);
      throw badRequest(`unable to read ${what} request`, `gzip: ${(err as Error).message}`);
    }
  }
  return body;
}

function tooLarge(what: string): FleetError {
  return badRequest(`unable to read ${what} request`, 'http: request body too large');
}

/** Decodes and validates a JSON body; every failure is a 400 in upstream's words. */
export function decodeJson<T>(body: Buffer, what: string, validator: Validator<T>): T {
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw badRequest(`unable to decode ${what} request`, err);
  }
  if (!validator.check(value)) throw badRequest(`unable to decode ${what} request`, validator.explain(value));
  return value;
}
