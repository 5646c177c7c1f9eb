import type { ServerResponse } from 'node:http';
import type { FleetServerConfig } from '../../config/config';
import type { CheckinResult, HeldPoll } from '../../fleet/checkin';
import type { CheckinRequest } from '../../fleet/messages';
import { releaseHeaders } from '../request';
import type { BaseContext, RequestContext } from '../route';
import { acceptsGzip, writeFilledMaybeGzip, writeJsonMaybeGzip, type CompressionOptions } from '../respond';

/** Set-up; returns the held poll. Nothing of the request outlives it. */
function begin(ctx: RequestContext<'agent', CheckinRequest>): Promise<HeldPoll> {
  const { fleet, body } = ctx;
  return fleet.checkins.begin(ctx.agent, ctx.agentVersion, body, fleet.checkins.pollDuration(body.poll_timeout));
}

/**
 * POST /api/fleet/agents/{id}/checkin: the long poll. Once set up, the held poll keeps no suspended
 * frame and no header strings: only the response, the gzip choice and the poll's own state.
 */
export async function handleCheckin(ctx: RequestContext<'agent', CheckinRequest>): Promise<void> {
  const poll = await begin(ctx);
  const { res, config } = ctx;
  const gzip = acceptsGzip(ctx.req);
  releaseHeaders(ctx.req);
  // A client that goes away ends its poll (also one gone while the poll was being set up); shutdown
  // answers every poll through fleet.stop().
  if (ctx.req.socket.destroyed) poll.cancel();
  else res.once('close', poll.cancel);
  return poll.result.then((result) => {
    res.off('close', poll.cancel);
    writeResult(res, gzip, result, config);
  }, (err: unknown) => {
    res.off('close', poll.cancel);
    throw err;
  });
}

function compressionOf(config: FleetServerConfig): CompressionOptions {
  return { level: config.server.compressionLevel, threshold: config.server.compressionThreshold };
}

function writeResult(res: ServerResponse, gzip: boolean, result: CheckinResult, config: FleetServerConfig): void {
  const compression = compressionOf(config);
  const head = `{"ack_token":${JSON.stringify(result.ackToken)},"action":"checkin"`;
  if (result.policy) {
    writeFilledMaybeGzip(res, gzip, { head: `${head},"actions":[`, ...result.policy, tail: ']}' }, compression);
    return;
  }
  const text = result.actionsJson === undefined ? `${head}}` : `${head},"actions":${result.actionsJson}}`;
  writeJsonMaybeGzip(res, gzip, 200, text, compression);
}

/**
 * A check-in whose key was refused, answered as graceful force-unenroll says (fleet/graceful-unenroll.ts):
 * an empty policy, then an UNENROLL; false lets the refusal (401) stand.
 */
export function answerRefusedCheckin(ctx: BaseContext, refusal: unknown): boolean {
  const actions = ctx.fleet.gracefulUnenroll.answer(ctx.params['id'] ?? '', refusal);
  if (!actions) return false;
  // The body was not read: the connection closes after this answer rather than parse it as a request.
  if (!ctx.req.complete) ctx.res.shouldKeepAlive = false;
  writeJsonMaybeGzip(ctx.res, acceptsGzip(ctx.req), 200, JSON.stringify({ ack_token: '', action: 'checkin', actions }), compressionOf(ctx.config));
  return true;
}
