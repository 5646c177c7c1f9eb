// Acknowledgements: one result per event, stored in .fleet-actions-results, with per-type effects
// (policy revision, unenroll, upgrade bookkeeping). Each event gets a domain outcome; the protocol edge
// renders them (HTTP: upstream's AckResponse, item statuses from the one error classification).
import type { Logger } from 'pino';
import type { ActionResultDoc, AgentDoc, Hit, Json } from '../store/documents';
import type { ApiKeyService, DocUpdate, Store } from '../store/port';
import { isPlainObject } from '../util/is-object';
import { isoTime, rfc3339 } from '../util/time';
import type { ActionCache, KnownAction } from './action-cache';
import type { Authenticator } from './auth';
import { FleetError, isFleetError } from './errors';
import { isRfc3339, type AckEvent } from './messages';
import { outputSecretIds, type OutputKeys } from './output-keys';

/** What became of one acknowledged event. */
export type AckOutcome =
  | { kind: 'ok' }
  | { kind: 'wrongAgent' }
  /** A field the event must carry well formed is not (a date that is not RFC 3339). */
  | { kind: 'invalid'; reason: string }
  | { kind: 'unknownAction' }
  | { kind: 'failed'; error: unknown };

const OK: AckOutcome = { kind: 'ok' };
const UNKNOWN: AckOutcome = { kind: 'unknownAction' };
const failed = (error: unknown): AckOutcome => ({ kind: 'failed', error });

export class AckService {
  constructor(
    private readonly store: Store,
    private readonly auth: Authenticator,
    private readonly outputKeys: OutputKeys,
    private readonly actions: ActionCache,
    private readonly log: Logger,
  ) {}

  async ack(agent: Hit<AgentDoc>, events: AckEvent[]): Promise<AckOutcome[]> {
    const agentId = agent._id;
    const items: AckOutcome[] = [];
    const policyAcks: { index: number; actionId: string }[] = [];
    /** One result per document id, and the events it answers: an action acknowledged twice is stored once (the store would keep the first). */
    const results = new Map<string, { doc: ActionResultDoc; events: number[] }>();
    /**
     * Each action id looked up once per request, its absence or failure too: one request can carry tens
     * of thousands of events naming the same id, and a store fault is not remembered across requests.
     */
    const lookedUp = new Map<string, KnownAction | AckOutcome>();
    /** The UNENROLL / MIGRATE events acknowledged without error: their items carry the unenroll's outcome. */
    const unenrolls: number[] = [];
    let upgrade: { index: number; doc: Record<string, unknown> } | undefined;

    for (const [i, ev] of events.entries()) {
      if (ev.agent_id && ev.agent_id !== agentId) {
        items.push({ kind: 'wrongAgent' });
        continue;
      }
      if (ev.action_id.startsWith('policy:')) {
        items.push(OK);
        if (!ev.error) policyAcks.push({ index: i, actionId: ev.action_id });
        continue;
      }
      // Upstream decodes the date into a time.Time; stored as sent, a malformed one would be refused by
      // Elasticsearch's date mapping (failing the request's other results with it) or kept as garbage.
      if (!isTimestamp(ev.timestamp)) {
        items.push({ kind: 'invalid', reason: 'timestamp is not an RFC 3339 time' });
        continue;
      }
      let found = lookedUp.get(ev.action_id);
      if (found === undefined) {
        try {
          found = (await this.actions.find(ev.action_id)) ?? UNKNOWN;
        } catch (err) {
          found = failed(err);
        }
        lookedUp.set(ev.action_id, found);
      }
      if ('kind' in found) {
        items.push(found);
        continue;
      }
      const action = found;
      if (action.type === 'INPUT_ACTION' && !(isTimestamp(ev.started_at) && isTimestamp(ev.completed_at))) {
        items.push({ kind: 'invalid', reason: 'started_at or completed_at is not an RFC 3339 time' });
        continue;
      }
      const resultId = `${ev.action_id}:${agentId}`;
      const result = results.get(resultId);
      if (result) result.events.push(i);
      else results.set(resultId, { doc: resultDoc(ev, agentId, action), events: [i] });
      items.push(OK);
      if (action.type === 'UPGRADE') upgrade = { index: i, doc: upgradeUpdate(ev, agent._source) };
      if ((action.type === 'UNENROLL' || action.type === 'MIGRATE') && !ev.error) unenrolls.push(i);
    }

    // A policy ack stores no result; in a worker even an empty call is a round trip to the store owner,
    // once per agent in every rollout.
    let resultsFailed = false;
    if (results.size > 0) {
      try {
        await this.store.createActionResults([...results].map(([id, r]) => ({ id, doc: r.doc })));
      } catch (err) {
        resultsFailed = true;
        for (const r of results.values()) for (const i of r.events) items[i] = failed(err);
      }
    }
    // Upstream's handleActionResult: the agent's upgrade fields only once its result is stored.
    if (upgrade && !resultsFailed) {
      try {
        await this.store.updateAgent({ id: agentId, doc: upgrade.doc });
      } catch (err) {
        items[upgrade.index] = failed(err);
      }
    }
    if (policyAcks.length > 0) {
      try {
        await this.ackPolicy(agent, policyAcks.map((p) => p.actionId));
      } catch (err) {
        // As upstream: an agent found inactive fails its policy items with a 500 (handleAck.go's setError).
        const e = isFleetError(err, 'AgentInactive') ? new FleetError('Internal', err.message, { cause: err }) : err;
        for (const p of policyAcks) items[p.index] = failed(e);
      }
    }
    if (unenrolls.length > 0) {
      // As upstream's handleAck.go: a failed unenroll is that event's error in the answer, not the request's.
      try {
        await this.unenroll(agent);
      } catch (err) {
        for (const i of unenrolls) items[i] = failed(err);
      }
    }
    return items;
  }

  /** The highest acknowledged revision of the agent's own policy becomes its policy_revision_idx. */
  private async ackPolicy(agent: Hit<AgentDoc>, actionIds: string[]): Promise<void> {
    const doc = agent._source;
    let best = -1;
    for (const id of actionIds) {
      const parts = id.split(':');
      if (parts.length < 3 || parts.length > 4) continue;
      const rev = Number(parts[2]);
      if (parts[1] === doc.policy_id && Number.isInteger(rev) && rev > (doc.policy_revision_idx ?? 0) && rev > best) best = rev;
    }
    if (best < 0 || doc.policy_id === undefined) return;
    await this.outputKeys.cleanUpAfterAck(agent._id, doc);
    // Written only while the agent is still on the policy acknowledged, checked by the store as it writes
    // (upstream's ack script): an agent reassigned meanwhile keeps its revision for the new policy.
    const update: DocUpdate<AgentDoc> = { id: agent._id, doc: { policy_revision_idx: best, updated_at: rfc3339() }, whilePolicyId: doc.policy_id };
    // Removed only where present (agents enrolled before 8.x): the embedded store then keeps the ack beside
    // the document instead of rewriting it (store/sqlite/agent-checkins.ts), 100,000 times in a rollout.
    if (doc.default_api_key_history !== undefined) update.unset = ['default_api_key_history'];
    await this.store.updateAgent(update);
  }

  /**
   * Agent-confirmed unenroll: document inactive, every key invalidated, secrets deleted. The document
   * first, and the rest best effort (logged, as upstream's handleAck.go invalidates): once inactive the
   * agent is refused whatever its keys, and a failed write leaves the agent as it was (keys intact, able to
   * send its ack again) instead of half unenrolled: keys gone but still active, with nothing to retry with.
   */
  private async unenroll(agent: Hit<AgentDoc>): Promise<void> {
    const doc = agent._source;
    const agentId = agent._id;
    const now = rfc3339();
    await this.store.updateAgent({ id: agentId, doc: { active: false, unenrolled_at: now, updated_at: now } });
    let byCluster: Map<ApiKeyService, Set<string>>;
    try {
      byCluster = await this.outputKeys.keysByCluster(doc);
    } catch (err) {
      this.log.warn({ err, 'fleet.agent.id': agentId }, 'unenroll: output API keys not found; invalidating the access key only');
      byCluster = new Map(doc.access_api_key_id ? [[this.store as ApiKeyService, new Set([doc.access_api_key_id])]] : []);
    }
    // Each key in its own cluster: remote outputs' keys live where those outputs point.
    for (const [cluster, ids] of byCluster) {
      try {
        await cluster.invalidateApiKeys([...ids]);
      } catch (err) {
        this.log.warn({ err, 'fleet.agent.id': agentId, 'fleet.policy.apiKeyIDs': [...ids] }, 'unenroll: API keys not invalidated');
      }
      this.auth.forget(ids);
    }
    try {
      await this.outputKeys.deleteSecrets(outputSecretIds(doc));
    } catch (err) {
      this.log.warn({ err, 'fleet.agent.id': agentId }, 'unenroll: output API key secrets not deleted');
    }
    this.log.info({ 'fleet.agent.id': agentId }, 'agent unenrolled');
  }
}

/** Absent, empty (treated as absent, as before), or an RFC 3339 time. */
function isTimestamp(v: string | undefined): boolean {
  return v === undefined || v === '' || isRfc3339(v);
}

function resultDoc(ev: AckEvent, agentId: string, action: KnownAction): ActionResultDoc {
  const doc: ActionResultDoc = {
    '@timestamp': ev.timestamp ? ev.timestamp : isoTime(),
    action_id: ev.action_id,
    agent_id: agentId,
  };
  if (action.namespaces) doc.namespaces = action.namespaces;
  if (ev.error) doc.error = ev.error;
  // Upstream decodes the event into its DiagnosticsEvent and stores `data` re-encoded: {upload_id} alone,
  // whatever else (up to the whole body) the agent sent.
  if (action.type === 'REQUEST_DIAGNOSTICS' && isPlainObject(ev.data)) {
    const uploadId = ev.data['upload_id'];
    doc.data = { upload_id: typeof uploadId === 'string' ? uploadId : '' };
  }
  if (action.type === 'INPUT_ACTION') {
    if (ev.action_input_type !== undefined) doc.action_input_type = ev.action_input_type;
    if (ev.started_at) doc.started_at = ev.started_at;
    if (ev.completed_at) doc.completed_at = ev.completed_at;
    if (ev.action_data !== undefined) doc.action_data = ev.action_data as Json;
    if (ev.action_response !== undefined) doc.action_response = ev.action_response as Json;
  }
  return doc;
}

/**
 * Legacy upgrade acknowledgement (agents before 8.11 report upgrades this way), as upstream's
 * handleUpgrade: an error with `retry: true` marks the upgrade retrying; any other error marks it
 * failed; success clears both and records when.
 */
function upgradeUpdate(ev: AckEvent, doc: AgentDoc): Record<string, unknown> {
  if (ev.error) {
    if (isPlainObject(ev.payload) && ev.payload['retry'] === true) return { upgrade_status: 'retrying' };
    return { upgrade_started_at: null, upgrade_status: 'failed' };
  }
  const update: Record<string, unknown> = { upgrade_started_at: null, upgrade_status: null, upgraded_at: rfc3339() };
  if (!doc.upgrade_details) update['upgrade_attempts'] = null;
  return update;
}
