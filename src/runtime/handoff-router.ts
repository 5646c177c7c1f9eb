// The primary's side of connection handoffs (http/handoff.ts): a connection a full worker sent goes to
// the serving worker with the most room, else back to its sender (which answers it 429). The primary
// keeps its own copy of the handle until the receiver says it took it, as Node's cluster does in its
// round-robin mode (lib/internal/cluster/round_robin_handle.js): a receiver that dies or stops in between,
// or a message that cannot be sent, sends the connection on to the next candidate instead of losing it.
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
 * when none has any. `rooms`: each serving worker's room as last reported, less what was sent it since.
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

export class HandoffRouter<S> {
  private nextId = 0;
  private readonly pending = new Map<number, Pending<S>>();

  /**
   * `rooms`: the serving workers and their room now. `deliver`: sends the handle to a worker with this
   * id (`failed` when it could not be sent). `spent`: one connection was sent to that worker.
   */
  constructor(private readonly rooms: () => Map<S, number>,
    private readonly deliver: (to: S, id: number, handle: ClientHandle, returned: boolean, failed: () => void) => void,
    private readonly spent: (to: S) => void) {}

  /** Connections sent and not yet taken. */
  get inFlight(): number {
    return this.pending.size;
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
    if (taken) p.handle.close();
    else this.send(p);
  }

  /** A worker is gone: what was sent it and not yet taken goes on to the next. */
  gone(worker: S): void {
    for (const [id, p] of [...this.pending]) if (p.to === worker) this.answered(id, false);
  }

  private send(p: Pending<S>): void {
    const rooms = this.rooms();
    for (const t of p.tried) rooms.delete(t);
    // Nobody else has room: back to its sender, which answers it (429) as it would have without handoffs.
    const to = handoffTarget(rooms, p.from) ?? (rooms.has(p.from) ? p.from : undefined);
    if (to === undefined) {
      p.handle.close();
      return;
    }
    p.tried.add(to);
    if (to !== p.from) this.spent(to);
    const id = ++this.nextId;
    this.pending.set(id, { ...p, to });
    this.deliver(to, id, p.handle, to === p.from, () => this.answered(id, false));
  }
}
