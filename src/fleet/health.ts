// What an agent's check-in says about its health: upstream's unhealthy_reason rules.
import type { AgentDoc } from '../store/documents';
import type { Component } from './messages';

const UNHEALTHY = new Set(['FAILED', 'DEGRADED']);

export function unhealthyReason(doc: AgentDoc, components: Component[] | undefined, changed: boolean): string[] | undefined {
  // Upstream compares the stored status with upper-case names, which agents rarely send.
  let reason = doc.unhealthy_reason ?? (UNHEALTHY.has(doc.last_checkin_status ?? '') ? ['other'] : undefined);
  if (!changed || !components) return reason ?? undefined;
  const found = new Set<string>();
  let anyComponent = false;
  for (const c of components) {
    if (!UNHEALTHY.has((c.status ?? '').toUpperCase())) continue;
    anyComponent = true;
    for (const u of c.units ?? []) {
      if (UNHEALTHY.has((u.status ?? '').toUpperCase()) && (u.type === 'input' || u.type === 'output')) found.add(u.type);
    }
  }
  const next = found.size > 0 ? [...found].sort() : anyComponent ? ['other'] : [];
  // A recovered agent keeps its previous reason (upstream replaces only with a non-empty list).
  if (next.length > 0) reason = next;
  return reason ?? undefined;
}
