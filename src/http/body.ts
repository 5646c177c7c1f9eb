// Reading a request body as a hostile client may send it: the raw size and the decompressed size are
// bounded per route (upstream's max_body_byte_size and max_body_decompressed), the bytes all bodies
// hold in memory at once are bounded for the whole server, inflating a large body runs on the thread
// pool (a small one inline: inflate()), and the JSON's shape (nesting depth, number of values) is measured as the bytes arrive, so JSON.parse only
// ever sees bodies it parses in milliseconds and a bomb is refused after its first few kilobytes.
import type { IncomingMessage } from 'node:http';
import { createGunzip, gunzipSync } from 'node:zlib';
import { badRequest, FleetError, type FleetErrorCode } from '../fleet/errors';
import type { Validator } from '../fleet/messages';
import { HttpError } from './errors';

export interface BodyRules {
  /** Raw bytes on the wire; 0 = unlimited. */
  maxBytes: number;
  /** Bytes after gzip; 0 = unlimited. */
  maxDecompressed: number;
  allowGzip: boolean;
  /** The error for a body over a limit (default: upstream's 400 "request body too large"). */
  tooLarge?: FleetErrorCode;
  /** Not JSON (OpAMP's protobuf): no JSON shape check while it arrives. */
  binary?: boolean;
}

/**
 * Gzip bodies up to INLINE_WIRE_MAX bytes are inflated on the event loop, up to INLINE_INFLATED_MAX
 * bytes out (~0.1 ms); a larger result is inflated again on the thread pool. An agent's check-in body
 * (~0.5 KB gzip'd) cost ~5× more CPU through a stream: the stream objects, the hand-off to a pool
 * thread and back, and the thread's wake-up each cost more than inflating it.
 */
const INLINE_WIRE_MAX = 32 * 1024;
const INLINE_INFLATED_MAX = 128 * 1024;

/** Shape limits that keep JSON.parse cheap; Go's decoder allows depth 10,000, no agent message nears these. */
export const JSON_LIMITS = { maxDepth: 100, maxValues: 100_000 };

/**
 * Bytes of request bodies held in memory across all requests. Without it, every connection sending a
 * small gzip bomb would hold max_body_decompressed (20 MiB) at once.
 */
export class BodyBudget {
  private used = 0;

  constructor(readonly limitBytes: number) {}

  take(n: number): boolean {
    if (this.used + n > this.limitBytes) return false;
    this.used += n;
    return true;
  }

  give(n: number): void {
    this.used -= n;
  }

  get inUse(): number {
    return this.used;
  }
}

/** A body read into memory; `release` returns its bytes to the budget once it has been parsed. */
export interface RawBody {
  chunks: Buffer[];
  size: number;
  /** Bytes as they came on the wire (before gzip). */
  wireBytes: number;
  release(): void;
}

function clientClosed(): FleetError {
  return new FleetError('ClientClosed', 'client closed the request');
}

function tooLarge(what: string, code?: FleetErrorCode): FleetError {
  return code ? new FleetError(code) : badRequest(`unable to read ${what} request`, 'http: request body too large');
}

/** Why a read stopped: the client went away, or a limit refused it. */
function readFailure(req: IncomingMessage, err: unknown): unknown {
  if (err instanceof FleetError || err instanceof HttpError) return err;
  if (req.destroyed || (err as NodeJS.ErrnoException | undefined)?.code === 'ECONNRESET') return clientClosed();
  return err;
}

class Holder {
  size = 0;
  held = 0;
  readonly chunks: Buffer[] = [];

  /** `shape`: the JSON check for the body's final bytes (not for gzip input). */
  constructor(private readonly budget: BodyBudget, private readonly shape?: JsonShape) {}

  add(chunk: Buffer, max: number, what: string, code?: FleetErrorCode): void {
    this.size += chunk.length;
    if (max > 0 && this.size > max) throw tooLarge(what, code);
    const problem = this.shape?.feed(chunk);
    if (problem) throw new HttpError('BodyTooComplex', `Bad request: unable to decode ${what} request: ${problem}`);
    if (!this.budget.take(chunk.length)) throw new HttpError('BodyBudget');
    this.held += chunk.length;
    this.chunks.push(chunk);
  }

  release = (): void => {
    this.budget.give(this.held);
    this.held = 0;
    this.chunks.length = 0;
  };
}

/** The body as sent (gzip inflated when the route allows it), or the upstream error for why not. */
export async function readBody(req: IncomingMessage, what: string, rules: BodyRules, budget: BodyBudget): Promise<RawBody> {
  const declared = Number(req.headers['content-length']);
  if (rules.maxBytes > 0 && Number.isFinite(declared) && declared > rules.maxBytes) throw tooLarge(what, rules.tooLarge);
  const encoding = req.headers['content-encoding'];
  const gzip = encoding !== undefined && encoding !== 'identity';
  if (gzip && (encoding !== 'gzip' || !rules.allowGzip)) throw badRequest(`unable to read ${what} request`, `unsupported content encoding ${encoding}`);
  const raw = new Holder(budget, gzip || rules.binary ? undefined : new JsonShape());
  try {
    await collect(req, (chunk) => raw.add(chunk, rules.maxBytes, what, rules.tooLarge));
  } catch (err) {
    raw.release();
    throw err;
  }
  if (!gzip) return { chunks: raw.chunks, size: raw.size, wireBytes: raw.size, release: raw.release };
  const out = new Holder(budget, rules.binary ? undefined : new JsonShape());
  try {
    await inflate(raw.chunks, raw.size, (c) => out.add(c, rules.maxDecompressed, what, rules.tooLarge), what);
  } catch (err) {
    out.release();
    throw err;
  } finally {
    raw.release();
  }
  return { chunks: out.chunks, size: out.size, wireBytes: raw.size, release: out.release };
}

/**
 * A body handed on as it arrives, never held (upload chunks): refused before reading when its declared
 * length is over `maxBytes`, and as soon as more arrives. `counted` hears each piece's length.
 */
export async function* streamBody(req: IncomingMessage, what: string, maxBytes: number, counted: (n: number) => void): AsyncIterable<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes) throw tooLarge(what);
  const encoding = req.headers['content-encoding'];
  if (encoding !== undefined && encoding !== 'identity') throw badRequest(`unable to read ${what} request`, `unsupported content encoding ${encoding}`);
  if (req.destroyed) throw clientClosed();
  let size = 0;
  try {
    // Stopping early must not destroy the request: its 4xx is still to be written.
    for await (const piece of req.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
      size += piece.length;
      counted(piece.length);
      if (size > maxBytes) throw tooLarge(what);
      yield piece;
    }
  } catch (err) {
    throw readFailure(req, err);
  }
  // An aborted request can end its iteration quietly; what arrived is then not the body.
  if (!req.complete) throw clientClosed();
}

/**
 * Hands each chunk on until the body ends. A refusal stops reading without destroying the request, so
 * the 4xx can still be written (with Connection: close); a client that goes away is ClientClosed.
 */
function collect(req: IncomingMessage, onChunk: (c: Buffer) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    if (req.destroyed) {
      reject(clientClosed());
      return;
    }
    const cleanup = (): void => {
      req.off('data', data);
      req.off('end', end);
      req.off('error', error);
      req.off('close', close);
    };
    const data = (c: Buffer): void => {
      try {
        onChunk(c);
      } catch (err) {
        cleanup();
        req.pause();
        reject(err);
      }
    };
    const end = (): void => {
      cleanup();
      resolve();
    };
    const error = (err: Error): void => {
      cleanup();
      reject(readFailure(req, err));
    };
    const close = (): void => {
      cleanup();
      reject(clientClosed());
    };
    req.on('data', data);
    req.on('end', end);
    req.on('error', error);
    req.on('close', close);
  });
}

/**
 * Inflates the gzip body, handing the result on: a small body at once (INLINE_WIRE_MAX), else, or when
 * it inflates past INLINE_INFLATED_MAX, streamed through zlib on the thread pool, chunk by chunk, so a
 * refusal stops it early. Both ways fail with the same zlib messages.
 */
async function inflate(input: Buffer[], size: number, onChunk: (c: Buffer) => void, what: string): Promise<void> {
  if (size <= INLINE_WIRE_MAX) {
    const whole = input.length === 1 ? input[0]! : Buffer.concat(input, size);
    let out: Buffer | undefined;
    try {
      // An output buffer near the expected size (JSON inflates ~4×): zlib's 16 KiB default is most of the cost.
      out = gunzipSync(whole, { maxOutputLength: INLINE_INFLATED_MAX, chunkSize: Math.min(16 * 1024, Math.max(1024, size * 4)) });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ERR_BUFFER_TOO_LARGE') throw badRequest(`unable to read ${what} request`, `gzip: ${(err as Error).message}`);
    }
    if (out) {
      if (out.length > 0) onChunk(out);
      return;
    }
  }
  return inflateStream(input, onChunk, what);
}

/** Streams the gzip body through zlib (thread pool), handing each inflated chunk on; a refusal stops it. */
function inflateStream(input: Buffer[], onChunk: (c: Buffer) => void, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const gunzip = createGunzip();
    let failed = false;
    const fail = (err: unknown): void => {
      if (failed) return;
      failed = true;
      gunzip.destroy();
      reject(err);
    };
    gunzip.on('data', (c: Buffer) => {
      if (failed) return;
      try {
        onChunk(c);
      } catch (err) {
        fail(err);
      }
    });
    gunzip.on('error', (err) => fail(badRequest(`unable to read ${what} request`, `gzip: ${err.message}`)));
    gunzip.on('end', () => {
      if (!failed) resolve();
    });
    for (const c of input) gunzip.write(c);
    gunzip.end();
  });
}

/**
 * Measures JSON text as it arrives (strings skipped): nesting depth and number of values. Fed chunk by
 * chunk while the body is read or inflated, so a bomb is refused after its first few kilobytes.
 */
export class JsonShape {
  private depth = 0;
  private values = 0;
  private inString = false;
  private escaped = false;

  constructor(private readonly limits = JSON_LIMITS) {}

  /** The first limit exceeded, or undefined. */
  feed(chunk: Buffer): string | undefined {
    const { maxDepth, maxValues } = this.limits;
    let { depth, values, inString, escaped } = this;
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i]!;
      if (inString) {
        if (escaped) escaped = false;
        else if (c === 0x5c) escaped = true;
        else if (c === 0x22) inString = false;
      } else if (c === 0x22) {
        inString = true;
      } else if (c === 0x5b || c === 0x7b) {
        if (++depth > maxDepth) return `nesting deeper than ${maxDepth}`;
        if (++values > maxValues) return `more than ${maxValues} values`;
      } else if (c === 0x5d || c === 0x7d) {
        depth--;
      } else if (c === 0x2c) {
        if (++values > maxValues) return `more than ${maxValues} values`;
      }
    }
    this.depth = depth;
    this.values = values;
    this.inString = inString;
    this.escaped = escaped;
    return undefined;
  }
}

/** Decodes and validates a JSON body; every failure is a 400 in upstream's words. */
export function decodeJson<T>(body: RawBody, what: string, validator: Validator<T>): T {
  try {
    const text = body.chunks.length === 1 ? body.chunks[0]!.toString('utf8') : Buffer.concat(body.chunks, body.size).toString('utf8');
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      throw badRequest(`unable to decode ${what} request`, err);
    }
    if (!validator.check(value)) throw badRequest(`unable to decode ${what} request`, validator.explain(value));
    return value;
  } finally {
    body.release();
  }
}

/** Decodes a binary body (protobuf); every failure is a 400. */
export function decodeBinary<T>(body: RawBody, what: string, decode: (bytes: Buffer) => T): T {
  try {
    const bytes = body.chunks.length === 1 ? body.chunks[0]! : Buffer.concat(body.chunks, body.size);
    try {
      return decode(bytes);
    } catch (err) {
      throw badRequest(`unable to decode ${what} request`, err);
    }
  } finally {
    body.release();
  }
}
