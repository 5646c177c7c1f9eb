// Held polls' check-in refreshes, kept in a narrow table beside the agent documents. Every held poll
// refreshes its agent's last_checkin each checkin_timestamp (30 s, as upstream's handleCheckin ticker);
// at 100,000 agents that is 3,300 updates a second, all by the store's owner. As a json_patch of the
// whole document each one parsed and rewrote ~2–3 KB and dirtied a page of its own (one agent row per
// page), which the WAL, its flush and the checkpoint then carried: a profile of the primary holding
// 100,000 polls had it 100 % busy for 5–7 s of every 15, and a worker crash meant 48 s of it. A refresh
// now replaces one ~230-byte row here (~16 of them per 4 KiB page), and every read of an agent lays the
// row over the document, so readers see what they saw before.
//
// A check-in that reports a new policy revision (the implicit policy ack, upstream's checkin §3.5) is kept
// here too: after a rollout every agent's next check-in carries one, and as a rewrite of each document
// those 100,000 records were the heaviest write the server makes — a restart straight after a rollout had
// workers overrun their drain deadline writing them. The row holds the reported agent_policy_id and
// policy_revision_idx in columns of their own, so a later refresh keeps them.
//
// The rules (store.ts applies them):
//   - a refresh (the check-in fields and updated_at, and perhaps the reported policy, nothing else)
//     replaces the agent's row here; a reported policy stays in the row until a later one replaces it;
//   - an update that sets every check-in field and updated_at (a check-in with news) goes to the
//     document with the row's reported policy under it, and drops the row, which it supersedes;
//   - an update of the policy fields and updated_at, nothing else (a policy ack), goes to the row too: its
//     policy replaces the reported one, its updated_at the row's if later (a row made for it holds only
//     those);
//   - any other update that sets the policy fields and no check-in field goes to the document with the
//     row's reported policy under it, and clears the reported policy from the row;
//   - any other update that sets or removes a check-in or policy field is merged in JS;
//   - an update merged in JS (that one, or one SQL cannot make: a column field, a replace) reads the
//     document with the row laid over it and writes it whole, dropping the row;
//   - other updates (json_patch in SQL) leave the row: it still holds the newest check-in.
// updated_at is also set by other updates (acks, audits): a read takes the later of the two.
import type { AgentDoc, Hit } from '../documents';
import type { DocUpdate } from '../port';

/** What a refresh carries besides updated_at (bookkeeping.ts writes all of them on every flush). */
export const CHECKIN_FIELDS: readonly string[] = ['last_checkin', 'last_checkin_status', 'last_checkin_message', 'unhealthy_reason', 'sequence_num'];
const REFRESH_FIELDS = new Set([...CHECKIN_FIELDS, 'updated_at']);
/** The policy a check-in reports; a refresh may carry it (then kept in the row's columns of those names). */
export const POLICY_FIELDS: readonly string[] = ['agent_policy_id', 'policy_revision_idx'];

/** An agent's columns with its kept refresh (`checkin`, null when none) and reported policy: use with agentHit. */
export const AGENT_SELECT = `SELECT a.id, a.doc, c.fields AS checkin, c.agent_policy_id AS kept_policy_id, c.policy_revision_idx AS kept_revision
  FROM agents a LEFT JOIN agent_checkins c ON c.id = a.id`;
export const AGENT_BY_ID = `${AGENT_SELECT} WHERE a.id = ?`;
/**
 * Replaces the agent's kept refresh, if the agent exists (?1 id, ?2 fields, ?3 agent_policy_id, ?4
 * policy_revision_idx; null: the policy kept stays). A later updated_at kept (a policy ack's, which only
 * the row holds) stays: a check-in batch takes its time when its flush starts and may be applied after.
 */
export const PUT_REFRESH = `INSERT INTO agent_checkins (id, fields, agent_policy_id, policy_revision_idx) SELECT ?1, ?2, ?3, ?4
  WHERE EXISTS (SELECT 1 FROM agents WHERE id = ?1)
  ON CONFLICT (id) DO UPDATE SET agent_policy_id = coalesce(excluded.agent_policy_id, agent_policy_id),
  policy_revision_idx = coalesce(excluded.policy_revision_idx, policy_revision_idx),
  fields = CASE WHEN json_extract(fields, '$.updated_at') > json_extract(excluded.fields, '$.updated_at')
    THEN json_set(excluded.fields, '$.updated_at', json_extract(fields, '$.updated_at')) ELSE excluded.fields END`;
/**
 * Keeps a policy ack in the row, if the agent exists (?1 id, ?2 updated_at or null, ?3 agent_policy_id, ?4
 * policy_revision_idx; null: the one kept stays). Timestamps are RFC 3339 to the second, so they compare as text.
 */
export const PUT_POLICY = `INSERT INTO agent_checkins (id, fields, agent_policy_id, policy_revision_idx)
  SELECT ?1, CASE WHEN ?2 IS NULL THEN '{}' ELSE json_object('updated_at', ?2) END, ?3, ?4 WHERE EXISTS (SELECT 1 FROM agents WHERE id = ?1)
  ON CONFLICT (id) DO UPDATE SET agent_policy_id = coalesce(excluded.agent_policy_id, agent_policy_id),
  policy_revision_idx = coalesce(excluded.policy_revision_idx, policy_revision_idx),
  fields = CASE WHEN ?2 IS NULL OR json_extract(fields, '$.updated_at') >= ?2 THEN fields ELSE json_set(fields, '$.updated_at', ?2) END`;
export const DROP_REFRESH = 'DELETE FROM agent_checkins WHERE id = ?';
export const KEPT_POLICY = 'SELECT agent_policy_id, policy_revision_idx FROM agent_checkins WHERE id = ?';
export const CLEAR_KEPT_POLICY = 'UPDATE agent_checkins SET agent_policy_id = NULL, policy_revision_idx = NULL WHERE id = ?';

type Row = Record<string, unknown>;

/** An agent as stored: its document with the kept refresh and reported policy laid over it. */
export function agentHit(row: Row | undefined): Hit<AgentDoc> | undefined {
  if (!row) return undefined;
  const doc = JSON.parse(row['doc'] as string) as Record<string, unknown>;
  const kept = row['checkin'];
  if (typeof kept === 'string') {
    const f = JSON.parse(kept) as Record<string, unknown>;
    for (const k of CHECKIN_FIELDS) if (k in f) doc[k] = f[k];
    if (typeof f['updated_at'] === 'string' && !(Date.parse(String(doc['updated_at'])) >= Date.parse(f['updated_at']))) {
      doc['updated_at'] = f['updated_at'];
    }
  }
  layPolicy(doc, row['kept_policy_id'], row['kept_revision']);
  return { _id: row['id'] as string, _source: doc as unknown as AgentDoc };
}

/** The reported policy a row keeps (the columns' values; null: none) over `doc`. */
export function layPolicy(doc: Record<string, unknown>, policyId: unknown, revision: unknown): void {
  if (policyId != null) doc['agent_policy_id'] = policyId;
  if (revision != null) doc['policy_revision_idx'] = revision;
}

/** A reported policy as the row's columns take it (null: not given). */
export interface PolicyColumns {
  policyId: string | null;
  revision: number | null;
}

/** The policy fields `doc` sets, as columns; undefined when one is not of its column's type. */
function policyColumns(doc: Record<string, unknown>): PolicyColumns | undefined {
  const { agent_policy_id: policyId, policy_revision_idx: revision } = doc;
  if (policyId !== undefined && typeof policyId !== 'string') return undefined;
  if (revision !== undefined && !Number.isSafeInteger(revision)) return undefined;
  return { policyId: policyId ?? null, revision: (revision as number | undefined) ?? null };
}

export interface KeptRefresh extends PolicyColumns {
  fields: string;
}

/** The row to keep when `u` is a refresh and nothing else (perhaps with the reported policy), else undefined. */
export function refreshOf(u: DocUpdate<AgentDoc>): KeptRefresh | undefined {
  if (u.unset?.length || u.replace?.length) return undefined;
  const doc = u.doc as Record<string, unknown>;
  const fields: Record<string, unknown> = {};
  let n = 0;
  for (const k of Object.keys(doc)) {
    const v = doc[k];
    if (v === undefined || POLICY_FIELDS.includes(k)) continue;
    if (!REFRESH_FIELDS.has(k)) return undefined;
    fields[k] = v;
    n++;
  }
  if (n !== REFRESH_FIELDS.size) return undefined;
  const policy = policyColumns(doc);
  return policy && { fields: JSON.stringify(fields), ...policy };
}

/**
 * refreshOf for the updates of one batch: a document its updates share (the check-in bookkeeping shares
 * one among its plain refreshes) is examined and stringified once, not per agent.
 */
export function batchRefreshes(): (u: DocUpdate<AgentDoc>) => KeptRefresh | undefined {
  const seen = new Map<object, KeptRefresh | undefined>();
  return (u) => {
    if (u.unset?.length || u.replace?.length) return undefined;
    if (seen.has(u.doc)) return seen.get(u.doc);
    const refresh = refreshOf(u);
    seen.set(u.doc, refresh);
    return refresh;
  };
}

export interface KeptPolicy extends PolicyColumns {
  updatedAt: string | null;
}

/** The row's part when `u` sets the policy fields (at least one) and perhaps updated_at, nothing else; else undefined. */
export function policyOnlyOf(u: DocUpdate<AgentDoc>): KeptPolicy | undefined {
  if (u.unset?.length || u.replace?.length) return undefined;
  const doc = u.doc as Record<string, unknown>;
  let policy = 0;
  for (const k of Object.keys(doc)) {
    if (doc[k] === undefined) continue;
    if (POLICY_FIELDS.includes(k)) policy++;
    else if (k !== 'updated_at') return undefined;
  }
  const updatedAt = doc['updated_at'];
  const columns = policyColumns(doc);
  if (policy === 0 || !columns || (updatedAt !== undefined && !isRfc3339Seconds(updatedAt))) return undefined;
  return { updatedAt: updatedAt ?? null, ...columns };
}

/** What rfc3339() writes (util/time.ts): the form PUT_POLICY compares as text. */
function isRfc3339Seconds(v: unknown): v is string {
  return typeof v === 'string' && /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/.test(v);
}

/**
 * How `u` meets the kept row: it supersedes it, takes over its reported policy (`policy`), must be merged
 * over it, or leaves it be.
 */
export function checkinEffect(u: DocUpdate<AgentDoc>): 'supersedes' | 'policy' | 'merge' | 'none' {
  const doc = u.doc as Record<string, unknown>;
  const removed = [...(u.unset ?? []), ...(u.replace ?? [])].map((f) => f.split('.')[0]!);
  if (removed.some((k) => CHECKIN_FIELDS.includes(k) || POLICY_FIELDS.includes(k))) return 'merge';
  const set = CHECKIN_FIELDS.filter((k) => doc[k] !== undefined);
  const policySet = POLICY_FIELDS.some((k) => doc[k] !== undefined);
  if (set.length === 0) return policySet ? 'policy' : 'none';
  return set.length === CHECKIN_FIELDS.length && doc['updated_at'] !== undefined ? 'supersedes' : 'merge';
}

/** `u` with the row's reported policy (`kept`, from KEPT_POLICY) under its own fields. */
export function withKeptPolicy(u: DocUpdate<AgentDoc>, kept: Row | undefined): DocUpdate<AgentDoc> {
  if (!kept || (kept['agent_policy_id'] == null && kept['policy_revision_idx'] == null)) return u;
  const doc: Record<string, unknown> = { ...u.doc };
  const under: Record<string, unknown> = {};
  layPolicy(under, kept['agent_policy_id'], kept['policy_revision_idx']);
  for (const [k, v] of Object.entries(under)) if (doc[k] === undefined) doc[k] = v;
  return { ...u, doc };
}
