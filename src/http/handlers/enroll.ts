import type { EnrollRequest } from '../../fleet/messages';
import type { RequestContext } from '../route';
import { writeJson } from '../respond';

/** POST /api/fleet/agents/enroll. The body is read only after the token is authenticated. */
export async function handleEnroll(ctx: RequestContext<'enrollment', EnrollRequest>): Promise<void> {
  const item = await ctx.fleet.enrollment.enroll(ctx.enrollment, ctx.agentVersion, ctx.body);
  writeJson(ctx.res, 200, { action: 'created', item });
}
