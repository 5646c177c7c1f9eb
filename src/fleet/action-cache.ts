// Upstream's action cache (cache.GetAction / SetAction): what acks and upgrade details need of an
// action, looked up once and remembered for `ttl_action`, shared by both as upstream shares one.
import type { Store } from '../store/port';
import { systemClock, type Clock } from '../util/clock';
import { LruCache } from '../util/lru';

export interface KnownAction {
  id: string;
  type: string;
  /** Not cached upstream (only id and type); kept here so that results carry them every time. */
  namespaces?: string[];
}

/**
 * An action found missing is remembered a minute: an agent reporting upgrade details for a deleted
 * action would otherwise have it searched on every check-in. Actions are written before any agent
 * learns of them, so a miss is not an action still on its way.
 */
const MISSING_MS = 60_000;

/** Missing ids remembered at once: a client naming many can push out only these, never a known action. */
const MISSING_CAPACITY = 1000;

export class ActionCache {
  private readonly actions: LruCache<string, KnownAction>;
  private readonly missing: LruCache<string, true>;
  /** Lookups under way: the acks of a rollout's thousands of agents for one action search for it once. */
  private readonly inFlight = new Map<string, Promise<KnownAction | undefined>>();

  constructor(private readonly store: Store, private readonly ttlMs: number, capacity = 10_000, private readonly clock: Clock = systemClock) {
    this.actions = new LruCache(capacity);
    this.missing = new LruCache(MISSING_CAPACITY);
  }

  /** The action with this action_id, undefined when there is none; a store fault is thrown (nothing remembered). */
  find(actionId: string): Promise<KnownAction | undefined> {
    const now = this.clock.now();
    const cached = this.actions.get(actionId, now);
    if (cached !== undefined) return Promise.resolve(cached);
    if (this.missing.get(actionId, now)) return Promise.resolve(undefined);
    let lookup = this.inFlight.get(actionId);
    if (!lookup) {
      lookup = this.lookUp(actionId).finally(() => this.inFlight.delete(actionId));
      this.inFlight.set(actionId, lookup);
    }
    return lookup;
  }

  private async lookUp(actionId: string): Promise<KnownAction | undefined> {
    const hit = await this.store.findAction(actionId);
    const now = this.clock.now();
    if (!hit) {
      this.missing.set(actionId, true, MISSING_MS, now);
      return undefined;
    }
    const found = { id: hit._source.action_id, type: hit._source.type, namespaces: hit._source.namespaces };
    this.actions.set(actionId, found, this.ttlMs, now);
    return found;
  }
}
