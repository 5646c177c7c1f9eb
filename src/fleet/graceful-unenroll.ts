// Graceful force-unenroll (upstream 9.5.2, server.feature_flags.graceful_force_unenroll; its
// handleCheckin.go): an agent whose access key no longer works — invalidated, disabled, or the agent
// force-unenrolled — would otherwise retry its check-in with that key forever. With the flag on, its
// first refused check-in (per agent id, remembered for an hour) is answered with a POLICY_CHANGE whose
// policy is empty, so it stops every input; the second with an UNENROLL, so it forgets Fleet; the
// third and later get the 401 they would have had.
import { randomUUID } from 'node:crypto';
import { systemClock, type Clock } from '../util/clock';
import { LruCache } from '../util/lru';
import { rfc3339 } from '../util/time';
import type { WireAction } from './actions';
import { isFleetError } from './errors';

export interface GracefulUnenrollOptions {
  enabled: boolean;
  /** Bound on the memory of remembered agents (upstream's max_bytes). */
  maxBytes: number;
}

const REMEMBER_MS = 60 * 60 * 1000;
/** A remembered agent id before its key's characters: the map's slot, the record and the string's header. */
const ENTRY_BYTES = 128;
/**
 * Longer ids are no agent's (an Elasticsearch _id is at most 512 bytes): their refusal stands, and they
 * are not remembered.
 */
const MAX_ID_BYTES = 512;

interface Refused {
  times: number;
  /** What the entry costs, its key included (2 bytes a character: the worst a string takes). */
  bytes: number;
}

export class GracefulUnenroll {
  private readonly refused: LruCache<string, Refused>;

  constructor(private readonly opts: GracefulUnenrollOptions, private readonly clock: Clock = systemClock) {
    // The ids are the caller's (unauthenticated) path: the cache is bounded by what its entries weigh,
    // keys included, whatever is sent.
    this.refused = new LruCache(Math.max(1, Math.floor(opts.maxBytes / ENTRY_BYTES)), {
      maxWeight: opts.maxBytes, weigh: (r) => r.bytes,
    });
  }

  /**
   * The actions that replace the refusal of this agent's check-in, or undefined when the refusal
   * stands (flag off, another kind of refusal, or the third time within the hour).
   */
  answer(agentId: string, refusal: unknown): WireAction[] | undefined {
    if (!this.opts.enabled || !refusedKey(refusal) || agentId === '' || Buffer.byteLength(agentId) > MAX_ID_BYTES) return undefined;
    const now = this.clock.now();
    const times = (this.refused.get(agentId, now)?.times ?? 0) + 1;
    this.refused.set(agentId, { times, bytes: ENTRY_BYTES + 2 * agentId.length }, REMEMBER_MS, now);
    const created = rfc3339(now);
    if (times === 1) return [{ id: randomUUID(), agent_id: agentId, type: 'POLICY_CHANGE', created_at: created, input_type: '', data: { policy: {} } }];
    if (times === 2) return [{ id: randomUUID(), agent_id: agentId, type: 'UNENROLL', created_at: created, input_type: '', data: null }];
    return undefined;
  }
}

/** An access key that is unknown or invalidated, disabled, or an inactive (force-unenrolled) agent's. */
function refusedKey(err: unknown): boolean {
  return isFleetError(err, 'Unauthorized') || isFleetError(err, 'ApiKeyDisabled') || isFleetError(err, 'AgentInactive');
}
