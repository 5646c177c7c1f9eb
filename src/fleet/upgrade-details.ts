// upgrade_details reported at check-in (agents ≥ 8.11): validated by state and stored on the agent.
import type { AgentDoc, JsonObject } from '../store/documents';
import type { Store } from '../store/port';
import { rfc3339 } from '../util/time';
import { jsonEqual } from '../util/json-equal';
import { badRequest, FleetError } from './errors';
import { upgradeDetailsValidator, type UpgradeDetails } from './messages';

/** docker/go-units' decimal map, which FromHumanSize reads units with. */
const UNITS: Record<string, number> = { k: 1e3, m: 1e6, g: 1e9, t: 1e12, p: 1e15 };
/** What Go's strconv.ParseFloat takes (hexadecimal forms aside). */
const GO_FLOAT = /^[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?|inf(?:inity)?|nan)$/i;

/**
 * A download rate as upstream reads it (parseDownloadRate): a number as sent; a string such as
 * "1.5MBps" in bytes per second — a trailing "ps" cut, then go-units' FromHumanSize: the number ends at
 * the last digit, dot or space, then nothing, "b", or a decimal unit alone or with "b" or "ib" (any
 * case), counted in whole bytes. "" is no rate (null), as is "+Inf bps" (elastic-agent's rate of a
 * download that took no time): neither JSON nor a double field holds infinity, where upstream stores
 * whatever Go's int64 conversion makes of it. Undefined when it is not a rate.
 */
export function parseRate(v: number | string): number | null | undefined {
  if (typeof v === 'number') return v;
  if (v === '') return null;
  const s = v.endsWith('ps') ? v.slice(0, -2) : v;
  let sep = -1;
  for (let i = s.length - 1; i >= 0 && sep < 0; i--) if ('0123456789. '.includes(s[i]!)) sep = i;
  if (sep < 0) return undefined;
  const num = s[sep] === ' ' ? s.slice(0, sep) : s.slice(0, sep + 1);
  const unit = s.slice(sep + 1).toLowerCase();
  if (!GO_FLOAT.test(num)) return undefined;
  const special = /inf|nan/i.exec(num)?.[0].toLowerCase();
  let size = special === 'nan' ? NaN : special === 'inf' ? (num.startsWith('-') ? -Infinity : Infinity) : Number(num);
  // ParseFloat's range error ("1e400"), and go-units' refusal of negative sizes.
  if ((special === undefined && !Number.isFinite(size)) || size < 0) return undefined;
  if (unit !== '' && unit !== 'b') {
    const mul = UNITS[unit[0]!];
    if (mul === undefined || !(unit.length === 1 || unit.slice(1) === 'b' || unit.slice(1) === 'ib')) return undefined;
    size *= mul;
  }
  return Number.isFinite(size) ? Math.trunc(size) : null;
}

function invalid(msg: string): FleetError {
  return new FleetError('Internal', `failed to update upgrade_details: invalid upgrade metadata: ${msg}`);
}

export function normalizeUpgradeDetails(d: UpgradeDetails): JsonObject {
  // Types first, in every state: a value `.fleet-agents` cannot take is the request's mistake, as a
  // decoding error is upstream's, not a 500 when the store refuses it. The HTTP edge checks the same
  // schema; this holds for callers that did not come through it.
  if (!upgradeDetailsValidator.check(d)) {
    throw badRequest('unable to decode checkin request', upgradeDetailsValidator.explain(d, '/upgrade_details'));
  }
  const out = structuredClone(d) as unknown as JsonObject;
  const meta = d.metadata ?? undefined;
  if (d.state === 'UPG_FAILED') {
    if (!meta || typeof meta.error_msg !== 'string' || meta.error_msg === '') throw invalid('error_msg is required');
    // Repacked to the failed state's fields, as upstream (the agent may still send the download's).
    out['metadata'] = { error_msg: meta.error_msg, ...(meta.failed_state !== undefined ? { failed_state: meta.failed_state } : {}) };
    return out;
  }
  if (d.state === 'UPG_SCHEDULED' && (!meta || !meta.scheduled_at || meta.scheduled_at.startsWith('0001-01-01'))) throw invalid('scheduled_at is required');
  // elastic-agent keeps the download's metadata, its rate a human-readable string, through the states
  // after it (UPG_EXTRACTING, UPG_REPLACING, …). Upstream converts the rate in UPG_DOWNLOADING only and
  // Elasticsearch refuses the string in a double field in the others: every such check-in was a 500.
  const outMeta = out['metadata'] as JsonObject | null | undefined;
  if (outMeta && typeof outMeta['download_rate'] === 'string') {
    const rate = parseRate(outMeta['download_rate']);
    if (rate === undefined) throw invalid('download_rate');
    if (rate === null) delete outMeta['download_rate'];
    else outMeta['download_rate'] = rate;
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
