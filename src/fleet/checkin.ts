// The check-in long poll: record what the agent reports, then answer with pending actions, a newer
// policy, or nothing when the poll times out. A held check-in is a few small objects: two
// subscriptions and a timer; it never polls the store.
import type { Logger } from 'pino';
import type { AgentDoc, AgentOutput, Hit, Json } from '../store/documents';
import type { PendingAction, Store } from '../store/port';
import { monotonicMs, systemClock, type Clock } from '../util/clock';
import { parseDuration } from '../util/duration';
import type { TextTemplate } from '../util/text-template';
import { LruCache } from '../util/lru';
import type { ActionDispatcher, LiveAction } from './action-dispatcher';
import { isDeliverable, rolloutStart, toWireAction, withSecrets, type WireAction } from './actions';
import type { Bookkeeper, CheckinRecord } from './bookkeeping';
import { jsonEqual } from '../util/json-equal';
import { badRequest, FleetError } from './errors';
import type { ActionCache } from './action-cache';
import { unhealthyReason } from './health';
import { localMetadataValidator, type CheckinRequest } from './messages';
import type { OutputKeys } from './output-keys';
import type { ParsedPolicy } from './parsed-policy';
import type { PolicyMonitor, PolicySubscription } from './policy-monitor';
import { applyUpgradeDetails } from './upgrade-details';
import { isoTime } from '../util/time';

export interface CheckinOptions {
  longPollMs: number;
  maxPollMs: number;
  jitterMs: number;
  timestampMs: number;
  ignoreCheckinPolicyId: boolean;
}

/**
 * Where a held poll's end goes: its answer, or the error that ended it; settled once. The HTTP edge
 * passes one object per poll rather than waiting on a promise: a held poll then keeps no promise chain
 * (six promises, five reactions and their closures: ~0.9 KiB of heap per held agent).
 */
export interface PollOutcome {
  settle(err: unknown, result?: CheckinResult): void;
  /**
   * Called as the check-in begins (before any store call) with the function that ends the poll: the
   * edge listens for the client's close from then on, so a client gone during a slow set-up ends it too.
   */
  started?(cancel: () => void): void;
}

export interface CheckinResult {
  ackToken: string;
  /** The actions as a JSON array text, absent when there are none. */
  actionsJson?: string;
  /** A POLICY_CHANGE: the revision's template and this agent's values (the one action of the answer). */
  policy?: { template: TextTemplate; values: string[] };
}

const MAX_ACTIONS = 100;
/**
 * Pages of pending actions one check-in reads while every hit is of a type agents are never sent
 * (UPDATE_TAGS, FORCE_UNENROLL, Kibana's POLICY_CHANGE, unknown ones), before it gives up for this poll.
 */
const MAX_PENDING_PAGES = 10;
/** Client text quoted in an error message (and so in the log) at most. */
const QUOTED_MAX = 64;
const RELEASE_MAX_GAP_MS = 10;
const RELEASE_TICK_MS = 20;
const MINUTE = 60_000;
/** Distinct status and message texts kept as one string each (see `shared`). */
const SHARED_TEXTS_MAX = 1000;

type Wake =
  | { kind: 'actions'; actions: LiveAction[] }
  | { kind: 'policy'; policy: ParsedPolicy }
  | { kind: 'timeout' }
  | { kind: 'failed'; error: unknown };

/**
 * One held long poll: the subscription the monitors call, and all its answer needs. Methods, not
 * closures, where the monitors can call them as methods; onTimeout is a function for the timer and
 * the client's close. It exists from the start of the check-in, so its deadline covers the set-up; the
 * revision it waits beyond is known once set-up has read the policy.
 */
class Held implements PolicySubscription {
  settled = false;
  timer: NodeJS.Timeout | undefined;
  revisionIdx = 0;
  /**
   * Live actions that came while the pending ones were being read: held back, then answered together in
   * sequence order (upstream's handleCheckin.go answers pending actions before it reads the live channel).
   * Undefined while no read runs.
   */
  buffered: LiveAction[] | undefined;
  /** While a POLICY_CHANGE answer mints output keys: the deadline or the client's close abort that work. */
  answering: AbortController | undefined;
  /** The check-in's unhealthy_reason, which each refresh writes again (upstream's ticker passes it too). */
  unhealthyReason: string[] | undefined;

  constructor(
    private readonly service: CheckinService,
    readonly agentId: string,
    readonly policyId: string,
    readonly status: string,
    readonly message: string,
    /** Moved past pending actions agents are never sent, when the read found only those (see begin). */
    public ackToken: string,
    readonly outputs: Record<string, AgentOutput> | undefined,
    readonly outcome: PollOutcome,
  ) {}

  wake(w: Wake): void {
    if (this.settled) return;
    this.settled = true;
    this.buffered = undefined;
    // A POLICY_CHANGE answer still has work to do (output keys, paced): the deadline stays armed for it.
    if (this.timer && w.kind !== 'policy') clearTimeout(this.timer);
    this.service.finish(this, w);
  }

  deliver(policy: ParsedPolicy): void {
    this.wake({ kind: 'policy', policy });
  }

  onActions(actions: LiveAction[]): void {
    if (this.settled) return;
    if (this.buffered) this.buffered.push(...actions);
    else this.wake({ kind: 'actions', actions });
  }

  readonly onTimeout = (): void => {
    if (this.settled) this.answering?.abort();
    else this.wake({ kind: 'timeout' });
  };
}

export class CheckinService {
  private readonly held = new Set<Held>();
  /** Set once the server lets its polls go (stopping): later polls are not held. */
  private releasing = false;
  private readonly seqNoCache = new LruCache<string, number>(5000);
  private readonly sharedTexts = new Map<string, string>();
  /** Agents whose refused local_metadata was logged (see metadataRefused). */
  private readonly metadataRefusedFor = new LruCache<string, true>(1000);
  private touchTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: Store,
    private readonly policies: PolicyMonitor,
    private readonly dispatcher: ActionDispatcher,
    private readonly bookkeeper: Bookkeeper,
    private readonly outputKeys: OutputKeys,
    private readonly actions: ActionCache,
    private readonly opts: CheckinOptions,
    private readonly log: Logger,
    private readonly clock: Clock = systemClock,
  ) {}

  start(): void {
    // One sweep refreshes last_checkin for every held poll, instead of a ticker per agent.
    this.touchTimer = setInterval(() => this.refreshHeld(), this.opts.timestampMs);
    this.touchTimer.unref();
  }

  /** Refreshes last_checkin for every held poll (upstream's per-poll checkin_timestamp ticker). */
  refreshHeld(): void {
    for (const h of this.held) this.bookkeeper.touch(h.agentId, h.status, h.message, { unhealthyReason: h.unhealthyReason });
  }

  /**
   * Answers every held poll (server stopping), oldest first, spread over `windowMs`: the agents then
   * reconnect to the remaining instances at a steady rate instead of all in the same second. At most
   * 10 ms apart, so a few polls are answered at once; 0 answers all now (a restart in place).
   */
  releaseAll(windowMs = 0): Promise<void> {
    this.releasing = true;
    if (this.touchTimer) clearInterval(this.touchTimer);
    const polls = [...this.held];
    if (windowMs <= 0 || polls.length <= 1) {
      for (const h of polls) h.onTimeout();
      return Promise.resolve();
    }
    const spanMs = Math.min(windowMs, polls.length * RELEASE_MAX_GAP_MS);
    const started = monotonicMs();
    return new Promise((resolve) => {
      let next = 0;
      const tick = (): void => {
        // All that are due by now: a tick that comes late (an event loop busy with thousands of answers)
        // catches up, rather than leaving the rest for the process's deadline to cut. At most a batch per turn
        // of the loop was measured and not kept: at 100,000 agents on six workers sharing two cores with
        // the load generators, the drain answered 59,500-65,200 polls in its first 15 s against 77,700-92,700.
        const due = Math.max(next + 1, Math.ceil((polls.length * (monotonicMs() - started)) / spanMs));
        for (const end = Math.min(due, polls.length); next < end;) polls[next++]!.onTimeout();
        // Done once none is held: polls whose agents went away meanwhile (every agent gone, as when the
        // load generators of a bench exit before the stop) ended on their own and leave nothing to wait for.
        if (next < polls.length && this.held.size > 0) setTimeout(tick, RELEASE_TICK_MS);
        else resolve();
      };
      tick();
    });
  }

  get heldCount(): number {
    return this.held.size;
  }

  /** Long-poll duration for the agent's poll_timeout (upstream: d − 2m, clamped to [1m, max]). */
  pollDuration(pollTimeout: string | undefined): number {
    if (pollTimeout === undefined || pollTimeout === '') return this.opts.longPollMs;
    let d: number;
    try {
      d = parseDuration(pollTimeout);
    } catch {
      // Go's own words, quoting at most QUOTED_MAX characters of the client's text: the body may be megabytes, and this message is logged.
      const shown = pollTimeout.length > QUOTED_MAX ? `${pollTimeout.slice(0, QUOTED_MAX)}…` : pollTimeout;
      throw badRequest('poll_timeout cannot be parsed as duration', `time: invalid duration ${JSON.stringify(shown)}`);
    }
    if (d === 0) return this.opts.longPollMs;
    return Math.max(Math.min(d - 2 * MINUTE, this.opts.maxPollMs), MINUTE);
  }

  /**
   * Records the check-in and starts the long poll, whose end goes to `outcome` (possibly before this
   * resolves). Resolves once set-up is done with the function that ends the poll now (the client went
   * away), so the request, the agent document and the body are not kept alive while the poll is held.
   *
   * The poll's deadline runs from here, not from the end of set-up: a slow store (five calls may be
   * awaited before the poll is held) cannot stretch a check-in past the poll the agent asked for. At the
   * deadline the poll is answered as a timed-out poll is (its ack token, no actions); set-up's late
   * results are then recorded but answer nothing. A poll of 0 is not held: it is answered once set-up is done.
   */
  async begin(agent: Hit<AgentDoc>, version: string, req: CheckinRequest, pollMs: number, outcome: PollOutcome): Promise<() => void> {
    const id = agent._id;
    const doc = agent._source;
    if (req.status === '') throw badRequest('checkin status missing');

    const rec: CheckinRecord = { status: req.status, message: req.message ?? '' };
    const ackToken = req.ack_token ?? '';
    const policyId = doc.policy_id ?? '';
    const held = new Held(this, id, this.shared(policyId), this.shared(rec.status), this.shared(rec.message), ackToken, doc.outputs, outcome);
    this.held.add(held);
    if (pollMs > 0) {
      const jitter = Math.random() * this.opts.jitterMs;
      const wait = jitter < pollMs ? pollMs - jitter : pollMs;
      // Whole seconds keep Node's timer lists few, however many polls are held.
      held.timer = setTimeout(held.onTimeout, Math.max(1000, Math.round(wait / 1000) * 1000));
    }
    outcome.started?.(held.onTimeout);

    try {
      if (version !== doc.agent?.version) rec.version = version;
      if (req.local_metadata != null && !jsonEqual(req.local_metadata, doc.local_metadata)) {
        if (localMetadataValidator.check(req.local_metadata)) rec.localMetadata = req.local_metadata as Json;
        else this.metadataRefused(id, req.local_metadata);
      }
      const componentsChanged = req.components != null && !jsonEqual(req.components, doc.components);
      if (componentsChanged) rec.components = req.components as never;
      rec.unhealthyReason = unhealthyReason(doc, req.components ?? undefined, componentsChanged);
      held.unhealthyReason = rec.unhealthyReason;

      const seqNo = await this.resolveSeqNo(ackToken, doc);
      if (seqNo !== (doc.action_seq_no?.[0] ?? -1)) rec.seqNo = seqNo;
      const rollbacks = req.upgrade?.rollbacks ?? [];
      if (!jsonEqual(rollbacks, doc.upgrade?.rollbacks ?? [])) rec.rollbacks = rollbacks as never;

      await applyUpgradeDetails(this.store, id, doc, req.upgrade_details, this.actionExists);

      let revision = doc.policy_revision_idx ?? 0;
      if (!this.opts.ignoreCheckinPolicyId && req.agent_policy_id !== undefined && req.policy_revision_idx !== undefined) {
        if (req.agent_policy_id !== doc.agent_policy_id || req.policy_revision_idx !== doc.policy_revision_idx) {
          rec.agentPolicyId = req.agent_policy_id;
          rec.policyRevisionIdx = req.policy_revision_idx;
        }
        if (req.agent_policy_id !== policyId) {
          // Reassigned: the new policy from its first revision, and no key clean-up for a policy the
          // agent is leaving (upstream's processPolicyDetails returns here).
          revision = 0;
        } else {
          revision = req.policy_revision_idx;
          const latest = await this.policies.latest(policyId);
          if (latest && revision > latest.revisionIdx) revision = 0;
          // Best effort inside; only an agent found inactive meanwhile fails the check-in, as upstream.
          if (req.agent_policy_id !== doc.agent_policy_id || revision !== (doc.policy_revision_idx ?? 0)) await this.outputKeys.cleanUpAfterAck(id, doc);
        }
      }
      // An output without a key forces the policy to be sent again so one is minted.
      if (Object.values(doc.outputs ?? {}).some((o) => o.api_key === '')) revision = 0;
      if (doc.audit_unenrolled_reason || doc.unenrolled_at) rec.clearAudit = true;
      // Recorded even when the poll has ended meanwhile: the agent did check in, and reported all this.
      this.bookkeeper.enqueue(id, rec);
      if (held.settled) return held.onTimeout;

      held.revisionIdx = revision;
      // Live actions that come while the pending ones are read wait for them (see Held.buffered).
      held.buffered = [];
      this.dispatcher.subscribe(id, held);
      const checkpoint = this.dispatcher.checkpoint;
      if (!held.settled) {
        const pending = await this.pendingActions(id, seqNo, checkpoint);
        if (pending.passed) this.seqNoCache.set(pending.passed._id, pending.passed._seq_no!);
        if (!held.settled) {
          // Only actions agents are never sent were read: the answer's token moves past them, so the
          // agent's next check-in does not read them again (and cannot stay behind them for good).
          if (pending.passed) held.ackToken = pending.passed._id;
          // A full page may have left older pending actions unread: live ones then wait for the next
          // check-in too (this poll gets none pushed), so the ack token does not move past those.
          const live = pending.full ? [] : held.buffered;
          if (pending.full) this.dispatcher.markBehind(held);
          held.buffered = undefined;
          const actions = mergeBySeqNo(pending.actions, live);
          // Pending actions first; the poll waits for a newer policy only when there are none, as
          // upstream's handleCheckin (a policy that cannot be built must not hold back an UNENROLL).
          if (actions.length > 0) held.wake({ kind: 'actions', actions });
          else this.policies.subscribe(held);
        }
      }
      // A poll that starts while the server is letting its polls go is answered at once, not held.
      if (this.releasing) held.onTimeout();
      if (!held.settled && pollMs <= 0) held.timer = setTimeout(held.onTimeout, 1);
    } catch (err) {
      held.wake({ kind: 'failed', error: err });
    }
    return held.onTimeout;
  }

  /** The poll woke: it is let go, and its answer built and handed to its outcome. */
  finish(held: Held, w: Wake): void {
    // A POLICY_CHANGE answer stays among the held polls until it is written: stopping then cancels its key work.
    if (w.kind !== 'policy') this.held.delete(held);
    this.dispatcher.unsubscribe(held.agentId, held);
    this.policies.unsubscribe(held);
    if (w.kind === 'failed') {
      held.outcome.settle(w.error);
      return;
    }
    // Only where key work may wait for the pacer (Elasticsearch): elsewhere nothing would take the signal.
    if (w.kind === 'policy' && this.outputKeys.paced) held.answering = new AbortController();
    this.respond(w, held).then((r) => this.answered(held, undefined, r), (err: unknown) => this.answered(held, err));
  }

  private answered(held: Held, err: unknown, result?: CheckinResult): void {
    this.held.delete(held);
    if (held.timer) clearTimeout(held.timer);
    held.timer = undefined;
    held.answering = undefined;
    held.outcome.settle(err, result);
  }

  /**
   * One string for each of the few texts thousands of held polls repeat (the policy id, "online",
   * "Running"): each parsed body and document brings its own copy. Bounded, and short texts only.
   */
  private shared(text: string): string {
    if (text.length > 64) return text;
    const known = this.sharedTexts.get(text);
    if (known !== undefined) return known;
    if (this.sharedTexts.size < SHARED_TEXTS_MAX) this.sharedTexts.set(text, text);
    return text;
  }

  private async respond(w: Exclude<Wake, { kind: 'failed' }>, held: Held): Promise<CheckinResult> {
    const { agentId, ackToken } = held;
    if (w.kind === 'timeout') return { ackToken };
    if (w.kind === 'policy') {
      const p = w.policy;
      if (p.error) throw new FleetError('Internal', p.error);
      const signal = held.answering?.signal;
      let keys: Record<string, string>;
      try {
        // The signal ends only a wait for policy_limit's pacer: a key being minted is waited for, since an
        // agent answered meanwhile would poll again before its document records the key, and mint another.
        keys = await this.outputKeys.keysFor(agentId, held.outputs, p, signal);
      } catch (err) {
        // The deadline passed, or the client went, while the key work waited for the pacer: answered as a
        // timed-out poll, the agent still reports the older revision and gets the policy at its next poll.
        if (signal?.aborted && err === signal.reason) return { ackToken };
        throw err;
      }
      return { ackToken, policy: { template: p.template, values: p.values(agentId, keys) } };
    }
    const actions: WireAction[] = [];
    let token = ackToken;
    for (const a of w.actions) {
      actions.push(toWireAction(a.hit, agentId, a.startTime));
      token = a.hit._id;
      if (a.hit._seq_no !== undefined) this.seqNoCache.set(token, a.hit._seq_no);
    }
    return { ackToken: token, actionsJson: JSON.stringify(actions) };
  }

  /**
   * The agent's pending actions, from the first page that has any it may be sent. Upstream reads one page
   * and leaves an empty answer to its live pushes; here a full page would hold live pushes back (see
   * begin), so pages of types agents are never sent are read past, up to MAX_PENDING_PAGES.
   * `full`: the last page read was full, so actions beyond it may be pending too.
   * `passed`: with no action to send, the last action read (its sequence number, past all read).
   */
  private async pendingActions(agentId: string, afterSeqNo: number, checkpoint: number): Promise<{ actions: LiveAction[]; full: boolean; passed?: PendingAction }> {
    if (checkpoint <= afterSeqNo) return { actions: [], full: false };
    const nowIso = isoTime(this.clock.now());
    let after = afterSeqNo;
    let last: PendingAction | undefined;
    for (let page = 1; ; page++) {
      const hits = await this.store.pendingActions({ agentId, afterSeqNo: after, checkpoint, nowIso, limit: MAX_ACTIONS });
      const actions: LiveAction[] = [];
      for (const h of hits) {
        if (!isDeliverable(h._source.type)) continue;
        // Upstream leaves these unresolved (its dispatcher alone resolves); an agent gets the same data either way.
        const hit = await withSecrets(h, this.store, this.log);
        actions.push({ hit, startTime: rolloutStart(hit._source, hit.agentIndex, hit.agentCount) });
      }
      const full = hits.length >= MAX_ACTIONS;
      const end = hits[hits.length - 1];
      // Only a hit past the last one read moves the position (a store answering the same page again does not).
      if (end?._seq_no !== undefined && end._seq_no > after) last = end;
      if (actions.length > 0) return { actions, full };
      if (!full || page >= MAX_PENDING_PAGES || last === undefined || last._seq_no! <= after) {
        return last ? { actions, full, passed: last } : { actions, full };
      }
      after = last._seq_no!;
    }
  }

  private async resolveSeqNo(ackToken: string, doc: AgentDoc): Promise<number> {
    const fallback = doc.action_seq_no?.[0] ?? -1;
    if (ackToken === '') return fallback;
    const cached = this.seqNoCache.get(ackToken);
    if (cached !== undefined) return cached;
    const seq = await this.store.actionSeqNo(ackToken);
    if (seq === undefined) return fallback;
    this.seqNoCache.set(ackToken, seq);
    return seq;
  }

  /**
   * A check-in's local_metadata `.fleet-agents` cannot take (messages.ts) is left out, the rest of the
   * check-in recorded: Elasticsearch would refuse the whole update, last_checkin and status with it, and
   * the agent would show offline while each check-in answered 200 (upstream). Not a 400: the agent stays
   * managed (it can still be sent a policy, or an upgrade that fixes what it reports). Said once per
   * agent, as an agent repeats its metadata on every check-in.
   */
  private metadataRefused(agentId: string, metadata: unknown): void {
    if (this.metadataRefusedFor.get(agentId) !== undefined) return;
    this.metadataRefusedFor.set(agentId, true);
    this.log.warn({ 'fleet.agent.id': agentId, reason: localMetadataValidator.explain(metadata, '/local_metadata') },
      'check-in local_metadata not stored: the .fleet-agents mapping would refuse it');
  }

  /** upgrade_details' action lookup, through upstream's action cache; asked only when the details changed. */
  private readonly actionExists = async (actionId: string): Promise<boolean> => (await this.actions.find(actionId)) !== undefined;
}

/**
 * Pending actions and the live ones that came while they were read, as one answer in sequence order.
 * A live action can also be pending (the dispatcher moves its checkpoint before it pushes the batch),
 * so each document goes out once; the ack token is then the last document's.
 */
function mergeBySeqNo(pending: LiveAction[], live: LiveAction[] | undefined): LiveAction[] {
  if (!live || live.length === 0) return pending;
  const seen = new Set<string>();
  const out: LiveAction[] = [];
  for (const a of [...pending, ...live]) {
    if (seen.has(a.hit._id)) continue;
    seen.add(a.hit._id);
    out.push(a);
  }
  return out.sort((a, b) => seqOf(a) - seqOf(b));
}

function seqOf(a: LiveAction): number {
  return a.hit._seq_no ?? Number.MAX_SAFE_INTEGER;
}
