import type { CheckinResult, HeldPoll } from '../../fleet/checkin';
import { validators } from '../../fleet/messages';
import type { RequestContext } from '../context';
import { apiKeyFromHeader, decodeJson, readBody } from '../request';
import { writeFilledMaybeGzip, writeJsonMaybeGzip } from '../respond';

/** Authentication, body and set-up; returns the held poll. Nothing of the request outlives it. */
async function begin(ctx: RequestContext): Promise<HeldPoll> {
  const { fleet, config } = ctx;
  const agent = await fleet.auth.authenticateAgent(apiKeyFromHeader(ctx.req), ctx.params[0]);
  const version = fleet.versions.check(ctx.req.headers['user-agent']);
  const limit = config.server.limits.routes.checkin;
  const body = await readBody(ctx.req, 'checkin', { maxBytes: limit.maxBody, maxDecompressed: limit.maxBodyDecompressed, allowGzip: true });
  const req = decodeJson(body, 'checkin', validators.checkin);
  return fleet.checkins.begin(agent, version, req, fleet.checkins.pollDuration(req.poll_timeout));
}

/** POST /api/fleet/agents/{id}/checkin: the long poll. */
export async function handleCheckin(ctx: RequestContext): Promise<void> {
  const { config } = ctx;
  const poll = await begin(ctx);
  // A client that goes away ends its poll; shutdown answers every poll through fleet.stop().
  ctx.res.once('close', poll.cancel);
  let result: CheckinResult;
  try {
    result = await poll.result;
  } finally {
    ctx.res.off('close', poll.cancel);
  }
  const compression = { level: config.server.compressionLevel, threshold: config.server.compressionThreshold };
  const head = `{"ack_token":${JSON.stringify(result.ackToken)},"action":"checkin"`;
  if (result.policy) {
    writeFilledMaybeGzip(ctx.req, ctx.res, { head: `${head},"actions":[`, ...result.policy, tail: ']}' }, compression);
    return;
  }
  const text = result.actionsJson === undefined ? `${head}}` : `${head},"actions":${result.actionsJson}}`;
  writeJsonMaybeGzip(ctx.req, ctx.res, 200, text, compression);
}
