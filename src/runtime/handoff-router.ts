// The primary's side of connection handoffs (http/handoff.ts): a connection a full worker sent goes to
// the serving worker with the most room, else back to its sender (which answers it 429). The primary
// keeps its own copy of the handle until the receiver says it took it, as Node's cluster does in its
// round-robin mode (lib/internal/cluster/round_robin_handle.js): a receiver that dies or stops in between,
// or a message that cannot be sent, sends the connection on to the next candidate instead of losing it.
// Handles queue in the primary's channel to a worker (one travels at a time), so a worker's room counts
// those not yet taken, and at most MAX_IN_FLIGHT_PER_WORKER wait for one worker. Once the server stops,
// every connection goes back to its sender: the others are draining too.
import type { ClientHandle } from '../http/handoff';

interface Pending<S> {
  handle: ClientHandle;
  from: S;
  to: S;
  /** Workers tried for it, so a refusal moves it on. */
  tried: Set<S>;
}

/**
 * The worker a handed-off connection goes to: the one with the most room (not its sender), or undefined
 * when none has any. `rooms`: each candidate's room as last reported, less what was sent it that the report
 * did not count.
 */
export function handoffTarget<S>(rooms: ReadonlyMap<S, number>, sender: S): S | undefined {
  let best: S | undefined;
  let most = 0;
  for (const [s, room] of rooms) {
    if (s !== sender && room > most) {
      best = s;
      most = room;
    }
  }
  return best;
}

/**
 * Handles sent a worker and not yet answered, at most: Node's IPC passes one handle per channel at a time
 * (each after the other side's acknowledgement) and queues every other message behind them, the primary's
 * stop, its word to answer and its stats questions included. Past it, the connection goes back to its
 * sender, as when no one has room. As many as a sender may have waiting (http/handoff.ts MAX_PENDING): at
 * 32, a crashed worker's 16,700 agents at 100,000 came back to a replacement slowly enough that the
 * survivors answered 9,181 429s, all back 16.6 s after the kill (2,039 and 12.5 s with no cap, that morning).
 */
export const MAX_IN_FLIGHT_PER_WORKER = 256;

export class HandoffRouter<S> {
  private nextId = 0;
  private readonly pending = new Map<number, Pending<S>>();
  /** Per worker: handles sent it and not yet answered. */
  private readonly inFlightTo = new Map<S, number>();
  /** Per worker: its room as it last said. */
  private readonly reported = new Map<S, number>();
  /**
   * Per worker: handles sent it that its last report did not count — those still in flight when the report
   * arrived (it was written before they were taken), and those sent since.
   */
  private readonly charged = new Map<S, number>();
  private stopping = false;

  /**
   * `serving`: the workers serving now. `deliver`: sends the handle to a worker with this id (`failed` when
   * it could not be sent). `onCharged`: a connection was sent that worker (its room went down).
   */
  constructor(private readonly serving: () => Iterable<S>,
    private readonly deliver: (to: S, id: number, handle: ClientHandle, returned: boolean, failed: () => void) => void,
    private readonly onCharged?: (to: S) => void,
    private readonly maxInFlight = MAX_IN_FLIGHT_PER_WORKER) {}

  /** Connections sent and not yet taken. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** `worker` says it can take `room` more connections. */
  report(worker: S, room: number): void {
    this.reported.set(worker, room);
    this.charged.set(worker, this.inFlightTo.get(worker) ?? 0);
  }

  /** The room `worker` has by the primary's count: its report, less what was sent it that the report did not count. */
  room(worker: S): number {
    return (this.reported.get(worker) ?? 0) - (this.charged.get(worker) ?? 0);
  }

  /** The server stops: the draining workers take no one else's connection; each goes back to its sender. */
  stop(): void {
    this.stopping = true;
  }

  /** A connection `from` had no room for. */
  route(from: S, handle: ClientHandle): void {
    this.send({ handle, from, to: from, tried: new Set() });
  }

  /** What the worker said of connection `id`: taken (our copy is closed), or not (it goes on to the next). */
  answered(id: number, taken: boolean): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    const n = (this.inFlightTo.get(p.to) ?? 1) - 1;
    if (n > 0) this.inFlightTo.set(p.to, n);
    else this.inFlightTo.delete(p.to);
    if (taken) {
      p.handle.close();
      return;
    }
    // Not taken: it did not use the room it was charged.
    if (this.charged.has(p.to)) this.charged.set(p.to, Math.max(0, this.charged.get(p.to)! - 1));
    this.send(p);
  }

  /** A worker is gone: what was sent it and not yet taken goes on to the next. */
  gone(worker: S): void {
    for (const [id, p] of [...this.pending]) if (p.to === worker) this.answered(id, false);
    this.inFlightTo.delete(worker);
    this.reported.delete(worker);
    this.charged.delete(worker);
  }

  private send(p: Pending<S>): void {
    const serving = new Set(this.serving());
    for (const t of p.tried) serving.delete(t);
    const rooms = new Map<S, number>();
    if (!this.stopping) {
      for (const s of serving) if ((this.inFlightTo.get(s) ?? 0) < this.maxInFlight) rooms.set(s, this.room(s));
    }
    // Nobody else has room (or may take more now): back to its sender, which answers it (429) as it would
    // have without handoffs.
    const to = handoffTarget(rooms, p.from) ?? (serving.has(p.from) ? p.from : undefined);
    if (to === undefined) {
      p.handle.close();
      return;
    }
    p.tried.add(to);
    this.inFlightTo.set(to, (this.inFlightTo.get(to) ?? 0) + 1);
    this.charged.set(to, (this.charged.get(to) ?? 0) + 1);
    this.onCharged?.(to);
    const id = ++this.nextId;
    this.pending.set(id, { ...p, to });
    this.deliver(to, id, p.handle, to === p.from, () => this.answered(id, false));
  }
}
