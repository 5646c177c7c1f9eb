// Writing JSON answers, gzip-compressed for check-in when the agent asked for exactly "gzip".
import type { IncomingMessage, ServerResponse } from 'node:http';
import { gzipSync } from 'node:zlib';
import { renderFilled, type FilledTemplate } from '../util/text-template';
import { headerValues } from './request';
import { filledLength, splicedGzip } from './spliced-gzip';

export interface CompressionOptions {
  level: number;
  threshold: number;
}

export function writeJson(res: ServerResponse, status: number, body: unknown): void {
  writeJsonText(res, status, JSON.stringify(body));
}

export function writeJsonText(res: ServerResponse, status: number, text: string, headers?: Record<string, string>): void {
  if (res.destroyed || res.headersSent) return;
  res.writeHead(status, { ...headers, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

/** Upstream matches whole header values, so "gzip, deflate" does not count (kept for parity). */
export function acceptsGzip(req: IncomingMessage): boolean {
  return headerValues(req, 'accept-encoding').includes('gzip');
}

/**
 * A window no larger than the payload compresses identically and needs a fraction of the memory
 * (zlib's default state is ~300 KB, counted by V8 as external memory and so driving GC). It runs on
 * the main thread: for answers of a few KB that is cheaper than the thread pool hand-off, and keeps
 * freed deflate state out of per-thread malloc arenas.
 */
function deflateOptions(level: number, length: number): { level: number; windowBits: number; memLevel: number } {
  const windowBits = Math.min(15, Math.max(9, Math.ceil(Math.log2(length + 1))));
  return { level, windowBits, memLevel: windowBits >= 14 ? 8 : 6 };
}

/** A 200 answer made of a filled template: gzip splices the values into the template's cached deflate. */
export function writeFilledMaybeGzip(res: ServerResponse, gzip: boolean, f: FilledTemplate, c: CompressionOptions): void {
  if (c.level === 0 || filledLength(f) <= c.threshold || !gzip) {
    writeJsonText(res, 200, renderFilled(f));
    return;
  }
  writeGzipped(res, 200, splicedGzip(f, c.level));
}

/** `gzip`: the client asked for it (acceptsGzip, read before the request's headers were released). */
export function writeJsonMaybeGzip(res: ServerResponse, gzip: boolean, status: number, text: string,
  c: CompressionOptions): void {
  if (c.level === 0 || text.length <= c.threshold || !gzip) {
    writeJsonText(res, status, text);
    return;
  }
  writeGzipped(res, status, gzipSync(text, deflateOptions(c.level, text.length)));
}

function writeGzipped(res: ServerResponse, status: number, body: Buffer): void {
  if (res.destroyed || res.headersSent) return;
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Encoding': 'gzip', 'Content-Length': body.length });
  res.end(body);
}
