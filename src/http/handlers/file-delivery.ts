import { parseRange } from '../range';
import { headerValues } from '../request';
import type { RequestContext } from '../route';
import { streamOut } from '../stream-out';

/** GET /api/fleet/file/{id}[?source=<library>]: the file, or one range of it, streamed chunk by chunk. */
export async function handleFileDelivery(ctx: RequestContext<'agentKey'>): Promise<void> {
  const url = new URL(ctx.req.url ?? '/', 'http://x');
  const source = url.searchParams.get('source') ?? undefined;
  const origin = headerValues(ctx.req, 'x-elastic-product-origin')[0];
  const file = await ctx.fleet.deliveries.open(ctx.agent, ctx.params['id']!, source, origin);
  const ranges = headerValues(ctx.req, 'range');
  const range = parseRange(ranges.length > 1 ? ranges.join(',') : ranges[0], file.size);
  const headers: Record<string, string | number> = {
    'Accept-Ranges': 'bytes',
    'Content-Type': file.mimeType || 'application/octet-stream',
    'X-Content-Type-Options': 'nosniff',
  };
  if (file.sha256) headers['X-File-SHA2'] = file.sha256;
  if (range) {
    headers['Content-Range'] = `bytes ${range.start}-${range.end}/${file.size}`;
    headers['Content-Length'] = range.end - range.start + 1;
  } else {
    headers['Content-Length'] = file.size;
  }
  ctx.res.writeHead(range ? 206 : 200, headers);
  // HEAD: the headers say what a GET would send; no chunk is read.
  if (ctx.req.method === 'HEAD') {
    ctx.res.end();
    return;
  }
  await streamOut(ctx.res, ctx.fleet.deliveries.read(file, range), ctx.config.server.timeouts.writeMs);
}
