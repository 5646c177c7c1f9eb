// Follows .fleet-policies and hands each subscribed agent the newest revision of its policy. A held
// check-in is one subscription in a per-policy set; a new revision is parsed once and delivered to every
// waiting subscription at once (the per-agent API-key work is paced elsewhere, see output-keys.ts).
import type { Logger } from 'pino';
import type { Hit, PolicyDoc } from '../store/documents';
import type { Store } from '../store/port';
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

export class PolicyMonitor {
  private readonly entries = new Map<string, Entry>();
  private checkpoint = -1;
  private loop: Promise<void> | undefined;
  private readonly revisionListeners: ((p: ParsedPolicy) => void)[] = [];

  /** `pollTimeoutMs`: how long one wait for a change may last (`inputs.0.monitor.poll_timeout`). */
  constructor(private readonly store: Store, private readonly log: Logger, private readonly pollTimeoutMs: number) {}

  async start(signal: AbortSignal): Promise<void> {
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
    const e = this.entry(policyId);
    e.loading ??= (async () => {
      try {
        const hit = await this.store.latestPolicy(policyId);
        if (hit) await this.accept(hit);
      } catch (err) {
        this.log.warn({ err, 'fleet.policy.id': policyId }, 'policy load failed');
      } finally {
        e.loading = undefined;
      }
    })();
    return e.loading;
  }

  async latest(policyId: string): Promise<ParsedPolicy | undefined> {
    const e = this.entry(policyId);
    if (!e.policy) await this.load(policyId);
    return e.policy;
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
    this.entries.get(sub.policyId)?.waiters.delete(sub);
  }

  waiting(): number {
    let n = 0;
    for (const e of this.entries.values()) n += e.waiters.size;
    return n;
  }
}
