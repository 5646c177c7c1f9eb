// Follows .fleet-actions and pushes each new action to the held check-ins of the agents it names.
// Agents not connected pick actions up from the store at their next check-in (by sequence number).
import type { Logger } from 'pino';
import type { ActionDoc, Hit } from '../store/documents';
import type { Store } from '../store/port';
import { TokenBucket } from '../util/token-bucket';
import { isDeliverable, rolloutStart, withSecrets } from './actions';

export interface LiveAction {
  hit: Hit<ActionDoc>;
  startTime: string | undefined;
}

/** A held check-in waiting for actions (an object with a method: no closure per held poll). */
export interface ActionSubscriber {
  onActions(actions: LiveAction[]): void;
}

export class ActionDispatcher {
  private readonly subs = new Map<string, ActionSubscriber>();
  /**
   * Held polls that missed a live action (its secrets could not be read): nothing more is pushed to them,
   * as a later action's ack token would move the agent past the one missed. Their agents fetch everything
   * by sequence number at their next check-in, whose poll is a new subscriber (so no clean-up is needed).
   */
  private readonly behind = new WeakSet<ActionSubscriber>();
  private cp = -1;
  private loop: Promise<void> | undefined;

  constructor(
    private readonly store: Store,
    private readonly limiter: TokenBucket,
    private readonly log: Logger,
    /** How long one wait for a change may last (`inputs.0.monitor.poll_timeout`). */
    private readonly pollTimeoutMs: number,
  ) {}

  /** Actions with a sequence number above this reach subscribers live; the rest are fetched at check-in. */
  get checkpoint(): number {
    return this.cp;
  }

  /** Once running, a second start does nothing (as the policy monitor's): a second loop would push every action twice. */
  async start(signal: AbortSignal): Promise<void> {
    if (this.loop) return;
    this.cp = await this.store.actionChanges.checkpoint();
    this.loop = this.run(signal);
  }

  async stopped(): Promise<void> {
    await this.loop;
  }

  subscribe(agentId: string, sub: ActionSubscriber): void {
    this.subs.set(agentId, sub);
  }

  unsubscribe(agentId: string, sub: ActionSubscriber): void {
    if (this.subs.get(agentId) === sub) this.subs.delete(agentId);
  }

  /**
   * `sub` may be behind the actions it would be pushed (its check-in read a full page of pending ones):
   * nothing more is pushed to it, so no ack token moves its agent past the ones it has not read.
   */
  markBehind(sub: ActionSubscriber): void {
    this.behind.add(sub);
  }


  private async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        const r = await this.store.actionChanges.next(this.cp, this.pollTimeoutMs, signal);
        this.cp = r.checkpoint;
        await this.dispatch(r.hits, signal);
      } catch (err) {
        if (signal.aborted) break;
        this.log.error({ err }, 'action dispatcher failed; retrying');
        await new Promise((res) => setTimeout(res, 1000).unref());
      }
    }
  }

  private async dispatch(hits: Hit<ActionDoc>[], signal: AbortSignal): Promise<void> {
    const perAgent = new Map<string, LiveAction[]>();
    for (let hit of hits) {
      if (!isDeliverable(hit._source.type)) continue;
      const agents = hit._source.agents ?? [];
      if (hit._source.secret_references?.length && agents.some((id) => this.subs.has(id))) {
        try {
          hit = await withSecrets(hit, this.store, this.log);
        } catch (err) {
          // Not lost: the agents fetch it by sequence number at their next check-in, provided no later
          // action reaches their current poll first (its ack token would skip this one).
          this.log.warn({ err, 'action.id': hit._source.action_id }, 'action secrets unreadable; not delivered live');
          for (const agentId of agents) {
            const sub = this.subs.get(agentId);
            if (sub) this.behind.add(sub);
          }
          continue;
        }
      }
      const live = hit;
      agents.forEach((agentId, i) => {
        const sub = this.subs.get(agentId);
        if (!sub || this.behind.has(sub)) return;
        let list = perAgent.get(agentId);
        if (!list) perAgent.set(agentId, (list = []));
        list.push({ hit: live, startTime: rolloutStart(live._source, i, agents.length) });
      });
    }
    for (const [agentId, actions] of perAgent) {
      if (!this.limiter.unlimited) await this.limiter.take(signal);
      const sub = this.subs.get(agentId);
      // A poll that fell behind after its list was made gets nothing (earlier actions too: all are fetched next time).
      if (sub && !this.behind.has(sub)) sub.onActions(actions);
    }
    if (perAgent.size > 0) this.log.debug({ agents: perAgent.size }, 'dispatched actions');
  }
}
