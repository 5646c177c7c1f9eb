import type { RequestContext } from '../route';

/** GET /api/fleet/artifacts/{id}/{sha256}: the artifact's encoded bytes, as stored (upstream sets no type). */
export async function handleArtifact(ctx: RequestContext<'agentKey'>): Promise<void> {
  const bytes = await ctx.fleet.artifacts.get(ctx.agent, ctx.params['id']!, ctx.params['sha2']!);
  ctx.res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': bytes.length });
  ctx.res.end(bytes);
}
