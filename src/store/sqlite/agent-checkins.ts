// Held polls' check-in refreshes, kept in a narrow table beside the agent documents. Every held poll
// refreshes its agent's last_checkin each checkin_timestamp (30 s, as upstream's handleCheckin ticker);
// at 100,000 agents that is 3,300 updates a second, all by the store's owner. As a json_patch of the
// whole document each one parsed and rewrote ~2–3 KB and dirtied a page of its own (one agent row per
// page), which the WAL, its flush and the checkpoint then carried: a profile of the primary holding
// 100,000 polls had it 100 % busy for 5–7 s of every 15, and a worker crash meant 48 s of it. A refresh
// now replaces one ~230-byte row here (~16 of them per 4 KiB page), and every read of an agent lays the
// row over the document, so readers see what they saw before.
//
// The rules (store.ts applies them):
//   - a refresh (the check-in fields and updated_at, nothing else) replaces the agent's row here;
//   - an update that sets every check-in field and updated_at (a check-in with news) goes to the
//     document and drops the row, which it supersedes;
//   - any other update that sets or removes a check-in field is merged in JS;
//   - an update merged in JS (that one, or one SQL cannot make: a column field, a replace) reads the
//     document with the row laid over it and writes it whole, dropping the row;
//   - other updates (json_patch in SQL) leave the row: it still holds the newest check-in.
// updated_at is also set by other updates (acks, audits): a read takes the later of the two.
import type { AgentDoc, Hit } from '../documents';
import type { DocUpdate } from '../port';

/** What a refresh carries besides updated_at (bookkeeping.ts writes all of them on every flush). */
export const CHECKIN_FIELDS: readonly string[] = ['last_checkin', 'last_checkin_status', 'last_checkin_message', 'unhealthy_reason', 'sequence_num'];
const REFRESH_FIELDS = new Set([...CHECKIN_FIELDS, 'updated_at']);

/** An agent's columns with its kept refresh (`checkin`, null when none): use with agentHit. */
export const AGENT_SELECT = 'SELECT a.id, a.doc, c.fields AS checkin FROM agents a LEFT JOIN agent_checkins c ON c.id = a.id';
export const AGENT_BY_ID = `${AGENT_SELECT} WHERE a.id = ?`;
/** Replaces the agent's kept refresh, if the agent exists (?1 id, ?2 fields). */
export const PUT_REFRESH = `INSERT INTO agent_checkins (id, fields) SELECT ?1, ?2 WHERE EXISTS (SELECT 1 FROM agents WHERE id = ?1)
  ON CONFLICT (id) DO UPDATE SET fields = excluded.fields`;
export const DROP_REFRESH = 'DELETE FROM agent_checkins WHERE id = ?';

type Row = Record<string, unknown>;

/** An agent as stored: its document with the kept refresh laid over it. */
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
  return { _id: row['id'] as string, _source: doc as unknown as AgentDoc };
}

/** The row to keep when `u` is a refresh and nothing else, else undefined. */
export function refreshOf(u: DocUpdate<AgentDoc>): string | undefined {
  if (u.unset?.length || u.replace?.length) return undefined;
  const doc = u.doc as Record<string, unknown>;
  const keys = Object.keys(doc).filter((k) => doc[k] !== undefined);
  if (keys.length !== REFRESH_FIELDS.size || !keys.every((k) => REFRESH_FIELDS.has(k))) return undefined;
  return JSON.stringify(Object.fromEntries(keys.map((k) => [k, doc[k]])));
}

/** How `u` meets the kept refresh: it supersedes it, must be merged over it, or leaves it be. */
export function checkinEffect(u: DocUpdate<AgentDoc>): 'supersedes' | 'merge' | 'none' {
  const doc = u.doc as Record<string, unknown>;
  const removed = [...(u.unset ?? []), ...(u.replace ?? [])].map((f) => f.split('.')[0]!);
  if (removed.some((k) => CHECKIN_FIELDS.includes(k))) return 'merge';
  const set = CHECKIN_FIELDS.filter((k) => doc[k] !== undefined);
  if (set.length === 0) return 'none';
  return set.length === CHECKIN_FIELDS.length && doc['updated_at'] !== undefined ? 'supersedes' : 'merge';
}
