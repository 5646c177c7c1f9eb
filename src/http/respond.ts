// Writing JSON answers, gzip-compressed for check-in when the agent asked for exactly "gzip".
import type { IncomingMessage, ServerResponse } from 'node:http';
import { gzip } from 'node:zlib';
import { promisify } from 'node:util';

const gzipAsync = promisify(gzip);

export interface CompressionOptions {
  level: number;
  threshold: number;
}

export function writeJson(res: ServerResponse, status: number, body: unknown): void {
  writeJsonText(res, status, JSON.stringify(body));
}

export function writeJsonText(res: ServerResponse, status: number, text: string): void {
  if (res.destroyed || res.headersSent) return;
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

/** Upstream matches whole header values, so "gzip, deflate" does not count (kept for parity). */
function acceptsGzip(req: IncomingMessage): boolean {
  return req.headersDistinct['accept-encoding']?.some((v) => v === 'gzip') ?? false;
}

export async function writeJsonMaybeGzip(req: IncomingMessage, res: ServerResponse, status: number, text: string,
  c: CompressionOptions): Promise<void> {
  if (c.level === 0 || text.length <= c.threshold || !acceptsGzip(req)) {
    writeJsonText(res, status, text);
    return;
  }
  const body = await gzipAsync(text, { level: c.level });
  if (res.destroyed || res.headersSent) return;
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Encoding': 'gzip', 'Content-Length': body.length });
  res.end(body);
}
