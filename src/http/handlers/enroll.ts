import { validators } from '../../fleet/messages';
import type { RequestContext } from '../context';
import { apiKeyFromHeader, decodeJson, readBody } from '../request';
import { writeJson } from '../respond';

/** POST /api/fleet/agents/enroll. The body is read only after the token is authenticated. */
export async function handleEnroll(ctx: RequestContext): Promise<void> {
  const { fleet } = ctx;
  const record = await fleet.enrollment.authenticate(apiKeyFromHeader(ctx.req));
  const version = fleet.versions.check(ctx.req.headers['user-agent']);
  const body = await readBody(ctx.req, 'enroll', { maxBytes: ctx.config.server.limits.routes.enroll.maxBody });
  const req = decodeJson(body, 'enroll', validators.enroll);
  const item = await fleet.enrollment.enroll(record, version, req);
  writeJson(ctx.res, 200, { action: 'created', item });
}
