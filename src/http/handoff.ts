// Connections a full cluster worker hands to a sibling with room. With SO_REUSEPORT the kernel deals
// connections to the workers by a hash of their addresses, blind to how full each one is: after a worker
// dies, its agents reconnect to the survivors and to its replacement in equal parts, and survivors at
// their file limit turn theirs away (429) while the replacement has room. A turned-away agent then finds
// the replacement only when a later connection happens to hash there: at 100,000 agents on six workers,
// 23 were still retrying 60 s after a kill, and the survivors had answered 57,252 429s.
//
// So a worker with no room passes an accepted connection to the primary, which gives it to the worker
// with the most room (runtime/handoff-router.ts); that worker takes it as if it had accepted it (its own
// admission applies). What travels is the bare TCP handle, before any byte is read or a socket made of
// it, as Node's cluster passes connections in its round-robin mode (lib/internal/cluster/child.js:
// `onconnection`).
import type net from 'node:net';

/** A connection's TCP handle as the listening handle's accept callback gets it. */
export interface ClientHandle {
  close(): void;
}

/** Node's listening handle (`server._handle`): its accept callback is `onconnection(status, client)`. */
interface ListenHandle {
  onconnection: (this: ListenHandle, status: number, client?: ClientHandle) => void;
}

/** The way to the primary: `done(false)` when the handle could not be sent (it is then served here). */
export type HandoffChannel = (client: ClientHandle, done: (sent: boolean) => void) => void;

/**
 * Handoffs waiting on the channel: each is a message carrying a descriptor, and Node sends those one at
 * a time, each after the other side's acknowledgement. Beyond this many the worker answers itself (429).
 */
const MAX_PENDING = 256;

export class AcceptHandoff {
  /** Set by the primary: another worker has room now. */
  roomElsewhere = false;
  /** Sent away; taken from another worker; sent away and given back (nobody had room after all). */
  readonly counts = { handedOff: 0, adopted: 0, returned: 0 };
  private pending = 0;
  private acceptHere: ((client: ClientHandle) => void) | undefined;

  /** `full`: this worker would turn a new connection away now. */
  constructor(private readonly channel: HandoffChannel, private readonly full: () => boolean) {}

  /** Takes over the accept callback of a listening server. Node's internals, as its cluster uses them. */
  attach(server: net.Server): void {
    const handle = (server as unknown as { _handle?: ListenHandle })._handle;
    if (!handle || typeof handle.onconnection !== 'function') return;
    const accept = handle.onconnection;
    this.acceptHere = (client) => accept.call(handle, 0, client);
    handle.onconnection = (status, client) => {
      if (status === 0 && client && this.wantsToHandOff()) this.handOff(client);
      else accept.call(handle, status, client);
    };
  }

  /** The listener is closing: nothing more is handed off or adopted. */
  detach(): void {
    this.acceptHere = undefined;
    this.roomElsewhere = false;
  }

  /**
   * A connection handed over (`returned`: one this worker sent away, back): taken as if accepted here;
   * false once the listener is gone (the caller closes it, the primary sends its own copy elsewhere).
   */
  adopt(client: ClientHandle, returned = false): boolean {
    if (!this.acceptHere) return false;
    this.counts[returned ? 'returned' : 'adopted']++;
    this.acceptHere(client);
    return true;
  }

  private wantsToHandOff(): boolean {
    return this.roomElsewhere && this.acceptHere !== undefined && this.pending < MAX_PENDING && this.full();
  }

  private handOff(client: ClientHandle): void {
    this.pending++;
    this.channel(client, (sent) => {
      this.pending--;
      if (sent) {
        this.counts.handedOff++;
        // The other side holds its own descriptor from the moment the message was written.
        client.close();
      } else if (this.acceptHere) {
        this.acceptHere(client);
      } else {
        client.close();
      }
    });
  }
}
