// Agent-reported audit/unenroll (uninstall, orphaned, …), shown by Kibana until the next check-in.
import type { AgentDoc, Hit } from '../store/documents';
import type { Store } from '../store/port';
import { rfc3339 } from '../util/time';
import { badRequest, FleetError } from './errors';
import type { AuditUnenrollRequest } from './messages';

const REASONS = new Set(['uninstall', 'orphaned', 'key_revoked', 'migrated']);

export function checkAuditAllowed(agent: Hit<AgentDoc>): void {
  if (agent._source.audit_unenrolled_reason === 'orphaned') throw new FleetError('AuditReasonConflict');
}

export async function auditUnenroll(store: Store, agent: Hit<AgentDoc>, req: AuditUnenrollRequest): Promise<void> {
  // Upstream's words; the client's text is not repeated into the message (and the log).
  if (!REASONS.has(req.reason)) throw badRequest('audit/unenroll request invalid reason');
  await store.updateAgent({
    id: agent._id,
    doc: { updated_at: rfc3339(), audit_unenrolled_time: req.timestamp, audit_unenrolled_reason: req.reason },
  });
}
