import { auditUnenroll, checkAuditAllowed } from '../../fleet/audit';
import { validators } from '../../fleet/messages';
import type { RequestContext } from '../context';
import { apiKeyFromHeader, decodeJson, readBody } from '../request';

/** POST /api/fleet/agents/{id}/audit/unenroll */
export async function handleAuditUnenroll(ctx: RequestContext): Promise<void> {
  const agent = await ctx.fleet.auth.authenticateAgent(apiKeyFromHeader(ctx.req), ctx.params[0]);
  checkAuditAllowed(agent);
  const body = await readBody(ctx.req, 'audit unenroll', { maxBytes: ctx.config.server.limits.routes.audit_unenroll.maxBody });
  await auditUnenroll(ctx.fleet.store, agent, decodeJson(body, 'audit unenroll', validators.auditUnenroll));
  ctx.res.writeHead(200, { 'Content-Length': 0 });
  ctx.res.end();
}
