// Check-in bookkeeping: the latest status per agent, coalesced in memory and written as one batch per
// flush interval (upstream's checkin bulk, 10 s). Last write per agent and field within a window wins.
import type { Logger } from 'pino';
import type { AgentDoc, Json } from '../store/documents';
import type { DocUpdate, Store } from '../store/port';
import { systemClock, type Clock } from '../util/clock';
import { rfc3339 } from '../util/time';

export interface CheckinRecord {
  status: string;
  message: string;
  unhealthyReason?: string[];
  version?: string;
  localMetadata?: Json;
  components?: Json;
  seqNo?: number;
  agentPolicyId?: string;
  policyRevisionIdx?: number;
  rollbacks?: Json;
  clearAudit?: boolean;
  // OpAMP agents (upstream writes these for them only).
  /** The last message's sequence_num (Elastic Agents: 0). */
  sequenceNum?: number;
  health?: Json;
  capabilities?: string[];
  /** Replaces the stored effective_config whole: a merge would keep sections the agent no longer runs. */
  effectiveConfig?: Json;
  /** The remote configuration's state the agent reported (beyond upstream). */
  remoteConfigStatus?: Json;
}

interface Pending extends CheckinRecord {
  at: number;
  /** Something beyond a held poll's timestamp refresh (touch) is in it. */
  news?: boolean;
}

const AUDIT_FIELDS = ['audit_unenrolled_reason', 'audit_unenrolled_time', 'unenrolled_at'];

export class Bookkeeper {
  private pending = new Map<string, Pending>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();
  /** The server is stopping: timestamp refreshes are no longer written (release). */
  private releasing = false;

  constructor(private readonly store: Store, private readonly intervalMs: number, private readonly log: Logger,
    private readonly clock: Clock = systemClock) {}

  start(): void {
    this.timer = setInterval(() => void this.flush(), this.intervalMs);
    this.timer.unref();
  }

  enqueue(agentId: string, rec: CheckinRecord): void {
    const next = overlay(this.pending.get(agentId), rec, this.clock.now());
    next.news = true;
    this.pending.set(agentId, next);
  }

  /**
   * Refreshes last_checkin for a held long poll (every checkin_timestamp), or a connected Collector. A
   * flush writes every check-in field, so the refresh carries what the check-in reported besides its
   * status: its unhealthy_reason, and a Collector's sequence_num (else written as null and 0).
   */
  touch(agentId: string, status: string, message: string, also: Pick<CheckinRecord, 'unhealthyReason' | 'sequenceNum'> = {}): void {
    if (this.releasing) return;
    const rec: CheckinRecord = { status, message };
    if (also.unhealthyReason !== undefined) rec.unhealthyReason = also.unhealthyReason;
    if (also.sequenceNum !== undefined) rec.sequenceNum = also.sequenceNum;
    this.pending.set(agentId, overlay(this.pending.get(agentId), rec, this.clock.now()));
  }

  /**
   * The server is stopping and lets its held polls go: from now on only records with news are written —
   * a held poll's timestamp refresh is left out, as its agent, answered, checks in again within seconds
   * wherever it reconnects. At 60,000 agents on six workers a sweep's refreshes, written as the server
   * stopped, made every worker overrun its drain deadline.
   */
  release(): void {
    this.releasing = true;
    this.dropRefreshes();
  }

  private dropRefreshes(): void {
    for (const [id, p] of this.pending) if (!p.news) this.pending.delete(id);
  }

  get size(): number {
    return this.pending.size;
  }

  flush(): Promise<void> {
    this.flushing = this.flushing.then(() => this.flushNow());
    return this.flushing;
  }

  private async flushNow(): Promise<void> {
    // Also what a failed batch put back.
    if (this.releasing) this.dropRefreshes();
    if (this.pending.size === 0) return;
    const batch = this.pending;
    this.pending = new Map();
    const now = rfc3339(this.clock.now());
    const updates: DocUpdate<AgentDoc>[] = [];
    // Plain refreshes with the same second, status and message share one document, as upstream's
    // checkin bulk shares one body for them (its simpleCache): a sweep's 16,000 refreshes then cross to
    // the store's owner as ids beside a few documents (V8's serializer writes a shared object once), and
    // the owner parses and holds those instead of 16,000 of each.
    const plainDocs = new Map<string, DocUpdate<AgentDoc>['doc']>();
    for (const [id, r] of batch) {
      const lastCheckin = rfc3339(r.at);
      if (isPlainRefresh(r)) {
        // Status, message and reason are the agent's own text: as JSON, no two of them make one key.
        // The reason is kept once an agent recovers (health.ts), so many held polls carry one.
        const key = JSON.stringify([lastCheckin, r.status, r.message, r.unhealthyReason ?? null]);
        let shared = plainDocs.get(key);
        // Frozen: an update that changed it in place would change every agent's.
        if (shared === undefined) plainDocs.set(key, shared = Object.freeze(checkinDoc(now, lastCheckin, r)));
        updates.push({ id, doc: shared });
        continue;
      }
      const doc = checkinDoc(now, lastCheckin, r);
      if (r.version !== undefined) doc['agent'] = { version: r.version };
      if (r.localMetadata !== undefined) doc['local_metadata'] = r.localMetadata;
      if (r.components !== undefined) doc['components'] = r.components;
      if (r.seqNo !== undefined) doc['action_seq_no'] = [r.seqNo];
      if (r.agentPolicyId !== undefined) doc['agent_policy_id'] = r.agentPolicyId;
      if (r.policyRevisionIdx !== undefined) doc['policy_revision_idx'] = r.policyRevisionIdx;
      if (r.rollbacks !== undefined) doc['upgrade'] = { rollbacks: r.rollbacks };
      if (r.health !== undefined) doc['health'] = r.health;
      if (r.capabilities !== undefined) doc['capabilities'] = r.capabilities;
      const u: DocUpdate<AgentDoc> = { id, doc };
      const replace: string[] = [];
      if (r.effectiveConfig !== undefined) {
        doc['effective_config'] = r.effectiveConfig;
        replace.push('effective_config');
      }
      if (r.remoteConfigStatus !== undefined) {
        doc['remote_config_status'] = r.remoteConfigStatus;
        replace.push('remote_config_status');
      }
      if (replace.length > 0) u.replace = replace;
      if (r.clearAudit) u.unset = AUDIT_FIELDS;
      updates.push(u);
    }
    try {
      await this.store.bulkUpdateAgents(updates);
      this.log.debug({ count: updates.length }, 'flushed check-in bookkeeping');
    } catch (err) {
      this.log.error({ err, count: updates.length }, 'check-in bookkeeping flush failed; will retry');
      // Check-ins that came in meanwhile win field by field; what only the failed batch carried is kept.
      for (const [id, r] of batch) {
        const newer = this.pending.get(id);
        this.pending.set(id, newer ? overlay(r, newer, newer.at) : r);
      }
    }
  }

  /** The last flush (of records with news only, after release). */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.flush();
  }
}

/** The fields every flush writes for an agent. */
function checkinDoc(now: string, lastCheckin: string, r: Pending): Record<string, unknown> {
  return {
    updated_at: now,
    last_checkin: lastCheckin,
    last_checkin_status: r.status,
    last_checkin_message: r.message,
    unhealthy_reason: r.unhealthyReason ?? null,
    sequence_num: r.sequenceNum ?? 0,
  };
}

/**
 * A record of a status, message and unhealthy reason only (a held poll's refresh, or a check-in that
 * reported nothing else).
 */
function isPlainRefresh(r: Pending): boolean {
  for (const k in r) {
    if (!PLAIN_KEYS.has(k) && (r as unknown as Record<string, unknown>)[k] !== undefined) return false;
  }
  return true;
}

const PLAIN_KEYS = new Set(['status', 'message', 'unhealthyReason', 'at', 'news']);

/** `rec`'s defined fields over `prev`'s; a field rec leaves undefined keeps prev's value. */
function overlay(prev: Pending | undefined, rec: CheckinRecord, at: number): Pending {
  if (!prev) return { ...rec, at };
  const next: Pending = { ...prev, at };
  for (const [k, v] of Object.entries(rec)) if (v !== undefined && k !== 'at' && k !== 'news') (next as unknown as Record<string, unknown>)[k] = v;
  if ((rec as Pending).news) next.news = true;
  return next;
}
