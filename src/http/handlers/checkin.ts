import { validators } from '../../fleet/messages';
import type { RequestContext } from '../context';
import { apiKeyFromHeader, decodeJson, readBody } from '../request';
import { writeJsonMaybeGzip } from '../respond';

/** POST /api/fleet/agents/{id}/checkin: the long poll. */
export async function handleCheckin(ctx: RequestContext): Promise<void> {
  const { fleet, config } = ctx;
  const agent = await fleet.auth.authenticateAgent(apiKeyFromHeader(ctx.req), ctx.params[0]);
  const version = fleet.versions.check(ctx.req.headers['user-agent']);
  const limit = config.server.limits.routes.checkin;
  const body = await readBody(ctx.req, 'checkin', { maxBytes: limit.maxBody, maxDecompressed: limit.maxBodyDecompressed, allowGzip: true });
  const req = decodeJson(body, 'checkin', validators.checkin);
  const pollMs = fleet.checkins.pollDuration(req.poll_timeout);
  const result = await fleet.checkins.checkin(agent, version, req, pollMs, ctx.signal);
  const text = result.actionsJson === undefined
    ? `{"ack_token":${JSON.stringify(result.ackToken)},"action":"checkin"}`
    : `{"ack_token":${JSON.stringify(result.ackToken)},"action":"checkin","actions":${result.actionsJson}}`;
  await writeJsonMaybeGzip(ctx.req, ctx.res, 200, text, {
    level: config.server.compressionLevel, threshold: config.server.compressionThreshold,
  });
}
