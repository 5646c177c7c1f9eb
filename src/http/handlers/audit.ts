import { auditUnenroll, checkAuditAllowed } from '../../fleet/audit';
import type { AuditUnenrollRequest } from '../../fleet/messages';
import type { RequestContext } from '../route';

/** POST /api/fleet/agents/{id}/audit/unenroll */
export async function handleAuditUnenroll(ctx: RequestContext<'agent', AuditUnenrollRequest>): Promise<void> {
  checkAuditAllowed(ctx.agent);
  await auditUnenroll(ctx.fleet.store, ctx.agent, ctx.body);
  ctx.res.writeHead(200, { 'Content-Length': 0 });
  ctx.res.end();
}
