// upgrade_details reported at check-in (agents ≥ 8.11): validated by state and stored on the agent.
import type { AgentDoc, Json, JsonObject } from '../store/documents';
import type { Store } from '../store/port';
import { rfc3339 } from '../util/time';
import { jsonEqual } from '../util/json-equal';
import { FleetError } from './errors';
import type { UpgradeDetails } from './messages';

const RATE_UNITS: Record<string, number> = { '': 1, k: 1e3, m: 1e6, g: 1e9, t: 1e12 };

/** "1.5MBps" → 1500000 (decimal units, trailing "ps" stripped). */
function parseRate(v: unknown): number | undefined {
  if (typeof v === 'number') return v;
  if (typeof v !== 'string') return undefined;
  const m = /^\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)b?(?:ps)?\s*$/i.exec(v);
  if (!m) return undefined;
  return Number(m[1]) * RATE_UNITS[m[2]!.toLowerCase()]!;
}

function invalid(msg: string): FleetError {
  return new FleetError('Internal', `failed to update upgrade_details: invalid upgrade metadata: ${msg}`);
}

export function normalizeUpgradeDetails(d: UpgradeDetails): JsonObject {
  const out = structuredClone(d) as unknown as JsonObject;
  const meta = (d.metadata ?? undefined) as Record<string, unknown> | undefined;
  switch (d.state) {
    case 'UPG_DOWNLOADING':
      if (meta && meta['download_rate'] !== undefined) {
        const rate = parseRate(meta['download_rate']);
        if (rate === undefined) throw invalid('download_rate');
        (out['metadata'] as JsonObject)['download_rate'] = rate;
      }
      break;
    case 'UPG_FAILED':
      if (!meta || typeof meta['error_msg'] !== 'string' || meta['error_msg'] === '') throw invalid('error_msg is required');
      out['metadata'] = { error_msg: meta['error_msg'] as string, ...(meta['failed_state'] !== undefined ? { failed_state: meta['failed_state'] as Json } : {}) };
      break;
    case 'UPG_SCHEDULED':
      if (!meta || !meta['scheduled_at'] || String(meta['scheduled_at']).startsWith('0001-01-01')) throw invalid('scheduled_at is required');
      break;
    default:
      break;
  }
  return out;
}

/**
 * `actionExists` is asked only when the details differ from the stored ones: an agent repeats the same
 * details on every check-in while an upgrade waits (UPG_SCHEDULED, UPG_WATCHING, UPG_FAILED), and a
 * lookup per check-in would be a search per agent per poll (upstream answers most from its action cache).
 */
export async function applyUpgradeDetails(store: Store, agentId: string, doc: AgentDoc,
  details: UpgradeDetails | null | undefined, actionExists: (actionId: string) => Promise<boolean>): Promise<void> {
  if (!details) {
    if (doc.upgrade_details) {
      // The agent stopped reporting details: the upgrade finished (upstream's markUpgradeComplete).
      await store.updateAgent({ id: agentId, doc: { upgrade_details: null, upgrade_started_at: null, upgrade_status: null, upgraded_at: rfc3339() } });
    }
    return;
  }
  let normalized: JsonObject | undefined;
  let invalid: unknown;
  try {
    normalized = normalizeUpgradeDetails(details);
  } catch (err) {
    invalid = err;
  }
  if (normalized !== undefined && jsonEqual(normalized, doc.upgrade_details)) return;
  // Details for an action that does not exist are not stored, even invalid ones (upstream looks the action up first).
  if (!(await actionExists(details.action_id))) return;
  if (normalized === undefined) throw invalid;
  const update: Record<string, unknown> = { upgrade_details: normalized };
  if (details.state === 'UPG_WATCHING' && doc.upgrade_attempts) update['upgrade_attempts'] = null;
  await store.updateAgent({ id: agentId, doc: update });
}
