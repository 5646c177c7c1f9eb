// Follows .fleet-policies and hands each subscribed agent the newest revision of its policy. A held
// check-in is one subscription in a per-policy set; a new revision is parsed once and delivered to every
// waiting subscription at once (the per-agent API-key work is paced elsewhere, see output-keys.ts).
import type { Logger } from 'pino';
import type { Hit, PolicyDoc } from '../store/documents';
import type { Store } from '../store/port';
import { LruCache } from '../util/lru';
import { ParsedPolicy } from './parsed-policy';
import { readSecrets } from './secrets';

export interface PolicySubscription {
  readonly agentId: string;
  readonly policyId: string;
  readonly revisionIdx: number;
  deliver(policy: ParsedPolicy): void;
}

interface Entry {
  policy: ParsedPolicy | undefined;
  waiters: Set<PolicySubscription>;
  loading: Promise<void> | undefined;
}

/**
 * Policy ids the store did not have, remembered this long: an agent whose policy is gone (or was never
 * there) asks the store once per window instead of at every check-in. A policy created meanwhile ends its
 * miss as soon as the monitor sees it (`accept`); the expiry covers a change the monitor did not see.
 */
const MISS_TTL_MS = 5_000;
/** At most this many misses are remembered (unknown ids come from agent documents, so there may be many). */
const MISS_CAPACITY = 1000;

export class PolicyMonitor {
  private readonly entries = new Map<string, Entry>();
  private readonly misses = new LruCache<string, true>(MISS_CAPACITY);
  private checkpoint = -1;
  private loop: Promise<void> | undefined;
  private readonly revisionListeners: ((p: ParsedPolicy) => void)[] = [];

  /** `pollTimeoutMs`: how long one wait for a change may last (`inputs.0.monitor.poll_timeout`). */
  constructor(private readonly store: Store, private readonly log: Logger, private readonly pollTimeoutMs: number,
    /** Milliseconds, for how long a miss is remembered. */
    private readonly now: () => number = Date.now) {}

  /**
   * Once running, a second start does nothing: a Fleet start that failed after this one (the action
   * monitor's checkpoint) is retried whole (ServerInstance.startWhenReady), and a second loop would
   * poll the store twice and hand every revision over twice.
   */
  async start(signal: AbortSignal): Promise<void> {
    if (this.loop) return;
    this.checkpoint = await this.store.policyChanges.checkpoint();
    for (const hit of await this.store.latestPolicies()) await this.accept(hit);
    this.loop = this.run(signal);
  }

  /** fn hears of every new revision of any policy. */
  onRevision(fn: (p: ParsedPolicy) => void): void {
    this.revisionListeners.push(fn);
  }

  async stopped(): Promise<void> {
    await this.loop;
  }

  private async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        const r = await this.store.policyChanges.next(this.checkpoint, this.pollTimeoutMs, signal);
        const newest = new Map<string, Hit<PolicyDoc>>();
        for (const h of r.hits) {
          const cur = newest.get(h._source.policy_id);
          if (!cur || h._source.revision_idx >= cur._source.revision_idx) newest.set(h._source.policy_id, h);
        }
        for (const h of newest.values()) await this.accept(h);
        this.checkpoint = r.checkpoint;
      } catch (err) {
        if (signal.aborted) break;
        this.log.error({ err }, 'policy monitor failed; retrying');
        await new Promise((res) => setTimeout(res, 1000).unref());
      }
    }
  }

  private entry(policyId: string): Entry {
    let e = this.entries.get(policyId);
    if (!e) {
      e = { policy: undefined, waiters: new Set(), loading: undefined };
      this.entries.set(policyId, e);
    }
    return e;
  }

  private async parse(hit: Hit<PolicyDoc>): Promise<ParsedPolicy> {
    return new ParsedPolicy(hit, await readSecrets(this.store, hit._source.data.secret_references ?? [], this.log));
  }

  private async accept(hit: Hit<PolicyDoc>): Promise<void> {
    this.misses.delete(hit._source.policy_id);
    const e = this.entry(hit._source.policy_id);
    if (e.policy && hit._source.revision_idx <= e.policy.revisionIdx) return;
    const parsed = await this.parse(hit);
    if (e.policy && parsed.revisionIdx <= e.policy.revisionIdx) return;
    e.policy = parsed;
    this.log.info({ 'fleet.policy.id': parsed.policyId, 'fleet.policy.revision': parsed.revisionIdx, waiting: e.waiters.size },
      'new policy revision');
    for (const fn of this.revisionListeners) fn(parsed);
    for (const sub of e.waiters) {
      if (sub.revisionIdx < parsed.revisionIdx) {
        e.waiters.delete(sub);
        sub.deliver(parsed);
      }
    }
  }

  private load(policyId: string): Promise<void> {
    if (this.misses.get(policyId, this.now()) !== undefined) return Promise.resolve();
    const e = this.entry(policyId);
    e.loading ??= (async () => {
      try {
        const hit = await this.store.latestPolicy(policyId);
        if (hit) await this.accept(hit);
        // Not while a revision arrived meanwhile (accept ran for it during the read).
        else if (!e.policy) this.misses.set(policyId, true, MISS_TTL_MS, this.now());
      } catch (err) {
        this.log.warn({ err, 'fleet.policy.id': policyId }, 'policy load failed');
      } finally {
        e.loading = undefined;
        this.drop(policyId, e);
      }
    })();
    return e.loading;
  }

  async latest(policyId: string): Promise<ParsedPolicy | undefined> {
    const known = this.entries.get(policyId)?.policy;
    if (known) return known;
    await this.load(policyId);
    return this.entries.get(policyId)?.policy;
  }

  /** An entry with no policy, no waiter and no load is dropped: unknown ids leave nothing behind. */
  private drop(policyId: string, e: Entry): void {
    if (!e.policy && e.waiters.size === 0 && !e.loading && this.entries.get(policyId) === e) this.entries.delete(policyId);
  }

  /** Delivers at once if a newer revision is known, else when one arrives. */
  subscribe(sub: PolicySubscription): void {
    const e = this.entry(sub.policyId);
    if (e.policy && e.policy.revisionIdx > sub.revisionIdx) {
      sub.deliver(e.policy);
      return;
    }
    e.waiters.add(sub);
    if (!e.policy) void this.load(sub.policyId);
  }

  unsubscribe(sub: PolicySubscription): void {
    const e = this.entries.get(sub.policyId);
    if (!e) return;
    e.waiters.delete(sub);
    this.drop(sub.policyId, e);
  }

  waiting(): number {
    let n = 0;
    for (const e of this.entries.values()) n += e.waiters.size;
    return n;
  }
}
