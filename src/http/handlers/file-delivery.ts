import { fileLength } from '../../fleet/file-delivery';
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
  // A range is found by the chunks' size; where the metadata does not give it (or the chunks are
  // compressed), the Range header is ignored and the whole file sent, as HTTP allows: upstream would
  // locate the range by a size the chunks may not have, and send other bytes than those asked for.
  const ranges = file.sizedChunks ? headerValues(ctx.req, 'range') : [];
  const range = parseRange(ranges.length > 1 ? ranges.join(',') : ranges[0], file.size);
  const headers: Record<string, string | number> = {
    'Accept-Ranges': file.sizedChunks ? 'bytes' : 'none',
    'Content-Type': file.mimeType || 'application/octet-stream',
    'X-Content-Type-Options': 'nosniff',
  };
  if (file.sha256) headers['X-File-SHA2'] = file.sha256;
  if (range) {
    headers['Content-Range'] = `bytes ${range.start}-${range.end}/${file.size}`;
    headers['Content-Length'] = range.end - range.start + 1;
  } else {
    // As upstream (handleFileDelivery.go): a file whose metadata says size 0, or none, goes out without
    // a length, as many bytes as its chunks hold; so does one whose chunks' size is not known.
    const length = fileLength(file);
    if (length !== undefined) headers['Content-Length'] = length;
  }
  // HEAD: the headers say what a GET would send; no chunk is read.
  if (ctx.req.method === 'HEAD') {
    ctx.res.writeHead(range ? 206 : 200, headers);
    ctx.res.end();
    return;
  }
  // The first piece is read before the head goes out, as upstream writes nothing before its first
  // chunk: a store fault there is still an error answer (503), not a 200 cut short.
  const bytes = ctx.fleet.deliveries.read(file, range)[Symbol.asyncIterator]();
  let first: IteratorResult<Uint8Array>;
  try {
    first = await bytes.next();
  } catch (err) {
    await bytes.return?.();
    throw err;
  }
  ctx.res.writeHead(range ? 206 : 200, headers);
  await streamOut(ctx.res, resumed(first, bytes), ctx.config.server.timeouts.writeMs);
}

/** The rest of `it` after `first` was taken from it; ended early, `it` is ended too. */
async function* resumed(first: IteratorResult<Uint8Array>, it: AsyncIterator<Uint8Array>): AsyncIterable<Uint8Array> {
  let done = first.done === true;
  try {
    if (!done) yield first.value;
    while (!done) {
      const next = await it.next();
      done = next.done === true;
      if (!done) yield next.value;
    }
  } finally {
    if (!done) await it.return?.();
  }
}
