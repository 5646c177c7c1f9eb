// Action documents as agents receive them. `data` goes through the per-type shape upstream uses,
// so unknown keys are dropped the same way; types agents must not get from the index are filtered.
import type { Logger } from 'pino';
import type { ActionDoc, Hit, Json, JsonObject } from '../store/documents';
import type { Store } from '../store/port';
import { readSecrets, resolveInline } from './secrets';
import { isoTime } from '../util/time';

export const ACTION_TYPES = [
  'UPGRADE', 'UNENROLL', 'POLICY_REASSIGN', 'SETTINGS', 'INPUT_ACTION', 'CANCEL', 'REQUEST_DIAGNOSTICS',
  'MIGRATE', 'PRIVILEGE_LEVEL_CHANGE',
] as const;
const DELIVERABLE = new Set<string>(ACTION_TYPES);

/** Keys kept in `data` per type; `null` keeps the object as it is. */
const DATA_KEYS: Record<string, readonly string[] | null> = {
  UPGRADE: ['version', 'source_uri', 'rollback'],
  SETTINGS: ['log_level'],
  CANCEL: ['target_id'],
  POLICY_REASSIGN: ['policy_id'],
  REQUEST_DIAGNOSTICS: ['additional_metrics', 'exclude_events_log'],
  INPUT_ACTION: null,
  MIGRATE: ['target_uri', 'enrollment_token', 'settings'],
  PRIVILEGE_LEVEL_CHANGE: ['unprivileged', 'user_info'],
};

export interface WireAction {
  id: string;
  agent_id: string;
  type: string;
  created_at: string;
  input_type: string;
  data: Json;
  start_time?: string;
  expiration?: string;
  traceparent?: string;
  timeout?: number;
  signed?: { data: string; signature: string };
}

export function isDeliverable(type: string): boolean {
  return DELIVERABLE.has(type);
}

function shapeData(type: string, data: Json | undefined): Json {
  if (type === 'UNENROLL') return null;
  if (data === undefined || data === null) return null;
  const keys = DATA_KEYS[type];
  if (keys === null || keys === undefined || typeof data !== 'object' || Array.isArray(data)) return data;
  const out: JsonObject = {};
  for (const k of keys) if (data[k] !== undefined && data[k] !== null) out[k] = data[k]!;
  return out;
}

/** rollout_duration_seconds spreads start times across the action's agents by their position. */
export function rolloutStart(doc: ActionDoc, index: number, count: number): string | undefined {
  const rollout = doc.rollout_duration_seconds ?? 0;
  if (rollout <= 0 || count <= 0) return doc.start_time;
  const base = Date.parse(doc.start_time ?? doc['@timestamp']);
  if (Number.isNaN(base)) return doc.start_time;
  return isoTime(base + Math.floor((rollout * 1000 * index) / count)).replace(/\.\d{3}Z$/, 'Z');
}

/**
 * Fills `$co.elastic.secret{<id>}` placeholders in `data` from the action's secret_references
 * (upstream pkg/action/dispatcher.go); the references themselves never reach the agent.
 */
export async function withSecrets<H extends Hit<ActionDoc>>(hit: H, store: Pick<Store, 'getSecret'>, log: Logger): Promise<H> {
  const refs = hit._source.secret_references;
  const data = hit._source.data;
  if (!refs || refs.length === 0 || data === undefined || data === null) return hit;
  const lookup = await readSecrets(store, refs, log);
  return { ...hit, _source: { ...hit._source, data: resolveInline(data, lookup, '', new Set(), false) } };
}

export function toWireAction(hit: Hit<ActionDoc>, agentId: string, startTime?: string): WireAction {
  const d = hit._source;
  const a: WireAction = {
    id: d.action_id,
    agent_id: agentId,
    type: d.type,
    created_at: d['@timestamp'],
    input_type: d.input_type ?? '',
    data: shapeData(d.type, d.data),
  };
  const start = startTime ?? d.start_time;
  if (start) a.start_time = start;
  if (d.expiration) a.expiration = d.expiration;
  if (d.traceparent) a.traceparent = d.traceparent;
  if (d.timeout) a.timeout = d.timeout;
  if (d.signed) a.signed = d.signed;
  return a;
}
