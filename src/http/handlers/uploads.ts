import type { JsonObject } from '../../store/documents';
import { FleetError } from '../../fleet/errors';
import { UploadService } from '../../fleet/uploads';
import { streamBody } from '../body';
import { headerValues } from '../request';
import { writeJson } from '../respond';
import type { RequestContext } from '../route';

/** POST /api/fleet/uploads: the body names the agent, which must be the key's. */
export async function handleUploadBegin(ctx: RequestContext<'agentKey', JsonObject>): Promise<void> {
  if (UploadService.agentIdOf(ctx.body) !== ctx.agent._id) throw new FleetError('AgentIdentity');
  writeJson(ctx.res, 200, await ctx.fleet.uploads.begin(ctx.agent, ctx.body));
}

/** PUT /api/fleet/uploads/{id}/{n}: the body streams into the store. */
export async function handleUploadChunk(ctx: RequestContext<'agentKey'>): Promise<void> {
  const n = ctx.params['n']!;
  if (!/^\d{1,9}$/.test(n)) throw new FleetError('InvalidChunkNum');
  const sha2 = headerValues(ctx.req, 'x-chunk-sha2');
  await ctx.fleet.uploads.chunk(ctx.agent, ctx.params['id']!, Number(n), sha2.length === 1 ? sha2[0]!.trim() : undefined,
    (max) => streamBody(ctx.req, 'upload chunk', max, (bytes) => { ctx.counters.body_in += bytes; }));
  ctx.res.writeHead(200, { 'Content-Length': 0 });
  ctx.res.end();
}

/** POST /api/fleet/uploads/{id}: the transit hash closes the upload. */
export async function handleUploadComplete(ctx: RequestContext<'agentKey', JsonObject>): Promise<void> {
  await ctx.fleet.uploads.complete(ctx.agent, ctx.params['id']!, ctx.body);
  writeJson(ctx.res, 200, { status: 'ok' });
}
