import { validators } from '../../fleet/messages';
import type { RequestContext } from '../context';
import { apiKeyFromHeader, decodeJson, readBody } from '../request';
import { writeJson } from '../respond';

/** POST /api/fleet/agents/{id}/acks: HTTP status is the highest item status; the body is always AckResponse. */
export async function handleAcks(ctx: RequestContext): Promise<void> {
  const { fleet } = ctx;
  const agent = await fleet.auth.authenticateAgent(apiKeyFromHeader(ctx.req), ctx.params[0]);
  const body = await readBody(ctx.req, 'ack', { maxBytes: ctx.config.server.limits.routes.ack.maxBody });
  const req = decodeJson(body, 'ack', validators.ack);
  const result = await fleet.acks.ack(agent, req.events ?? []);
  const out: Record<string, unknown> = { action: 'acks' };
  if (result.errors) out['errors'] = true;
  if (result.items.length > 0) out['items'] = result.items;
  writeJson(ctx.res, result.status, out);
}
