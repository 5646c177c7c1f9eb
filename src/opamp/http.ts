// POST /v1/opamp, OpAMP's plain-HTTP transport: one AgentToServer in (protobuf, maybe gzip), one
// ServerToAgent out, gzip-compressed when the request's Accept-Encoding is exactly "gzip" (opamp-go).
import { gzipSync } from 'node:zlib';
import type { OpampMessage } from '../fleet/opamp';
import { acceptsGzip } from '../http/respond';
import type { RequestContext } from '../http/route';
import { encodeServerToAgent } from './codec';

export const PROTOBUF = 'application/x-protobuf';

export async function handleOpampHttp(ctx: RequestContext<'enrollment', OpampMessage>): Promise<void> {
  const { req, res } = ctx;
  const reply = await ctx.fleet.opamp.handle(ctx.enrollment, ctx.body);
  let body: Uint8Array = encodeServerToAgent(ctx.body.instanceUid, reply, { customCapabilities: true });
  const headers: Record<string, string | number> = { 'Content-Type': PROTOBUF };
  if (acceptsGzip(req)) {
    body = gzipSync(body, { level: ctx.config.server.compressionLevel || 1 });
    headers['Content-Encoding'] = 'gzip';
  }
  headers['Content-Length'] = body.length;
  if (res.destroyed || res.headersSent) return;
  res.writeHead(200, headers);
  res.end(body);
}
