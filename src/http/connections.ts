// Admission of TCP connections, before any request exists. A hostile client can open connections and
// never finish a request (slowloris), or finish one and sit idle; left alone they take every file
// descriptor. Connections are counted from accept, capped below the process's file limit (and at
// upstream's hard limit, floor(1.1·max_connections)), and when the cap or the share reserved for
// unfinished connections is reached, the oldest connection that has not sent its first request (then
// the oldest idle keep-alive one) makes room. Connections busy with a request — held long polls — are
// never evicted, so a flood cannot starve agents.
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';

export interface AdmissionLimits {
  /** Most connections open at once. */
  cap: number;
  /** Most connections that have not yet sent a complete first request. */
  pendingCap: number;
}

/** The soft RLIMIT_NOFILE of this process (Linux), or undefined where it cannot be read. */
export function openFileLimit(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m && m[1] !== 'unlimited' ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The cap for connections: below the file limit by a reserve for the store, logs, Elasticsearch and
 * control connections, and at most the hard connection limit when max_connections is set.
 */
export function admissionLimits(maxConnections: number, fileLimit = openFileLimit()): AdmissionLimits {
  const byFiles = fileLimit === undefined ? Number.MAX_SAFE_INTEGER : fileLimit - Math.max(128, Math.floor(fileLimit * 0.05));
  // Upstream's floor(1.1·max) equals max for small values, which would make the soft limit unreachable.
  const hard = maxConnections > 0 ? Math.max(Math.floor(maxConnections * 1.1), maxConnections + 1) : Number.MAX_SAFE_INTEGER;
  const cap = Math.max(16, Math.min(byFiles, hard));
  return { cap, pendingCap: Math.max(8, Math.floor(cap / 4)) };
}

/**
 * A connection accepted in the last event-loop turns has had no chance to be read yet; it is not evicted
 * (a newcomer is refused instead), or one burst of accepts could evict an honest client with it.
 */
const GRACE_TURNS = 2;

export class ConnectionGuard {
  private open = 0;
  /** Sockets whose first request has not arrived, oldest first (a Map keeps insertion order), with the turn they came in. */
  private readonly pending = new Map<Socket, number>();
  /** Keep-alive sockets between requests, oldest first. */
  private readonly idle = new Set<Socket>();
  /** Every socket admitted and not yet closed; a refused one is never tracked. */
  private readonly admitted = new WeakSet<Socket>();
  evicted = 0;
  refused = 0;
  /** Connections accepted, and closed (refused ones included), since start. */
  accepted = 0;
  closed = 0;
  private turn = 0;
  private turnCounting = false;

  constructor(readonly limits: AdmissionLimits) {}

  /** The event-loop turn, counted only while connections arrive. */
  private currentTurn(): number {
    if (!this.turnCounting) {
      this.turnCounting = true;
      setImmediate(() => {
        this.turn++;
        this.turnCounting = false;
      });
    }
    return this.turn;
  }

  get openConnections(): number {
    return this.open;
  }

  get pendingConnections(): number {
    return this.pending.size;
  }

  /** A new connection: admitted (possibly evicting an older unfinished one), or false when full. */
  admit(socket: Socket): boolean {
    this.accepted++;
    const turn = this.currentTurn();
    if ((this.pending.size >= this.limits.pendingCap || this.open >= this.limits.cap) && !this.evictOne(turn)) {
      this.refused++;
      socket.once('close', () => this.closed++);
      return false;
    }
    this.open++;
    this.pending.set(socket, turn);
    this.admitted.add(socket);
    socket.once('close', () => {
      this.closed++;
      this.open--;
      this.pending.delete(socket);
      this.idle.delete(socket);
      this.admitted.delete(socket);
    });
    return true;
  }

  /** The connection's request headers arrived: it is busy, not evictable. False for a socket never admitted. */
  busy(socket: Socket): boolean {
    this.pending.delete(socket);
    this.idle.delete(socket);
    return this.admitted.has(socket);
  }

  /** An answer went out on a connection kept alive: evictable again until its next request. */
  idleAgain(socket: Socket): void {
    if (!socket.destroyed && this.admitted.has(socket)) this.idle.add(socket);
  }

  /** Closes the oldest unfinished connection past its grace, else the oldest idle one; false when neither exists. */
  private evictOne(turn: number): boolean {
    const oldest = this.pending.entries().next();
    if (!oldest.done && turn - oldest.value[1] >= GRACE_TURNS) return this.evict(oldest.value[0]);
    const idle = this.idle.values().next();
    return idle.done ? false : this.evict(idle.value);
  }

  private evict(socket: Socket): boolean {
    this.pending.delete(socket);
    this.idle.delete(socket);
    socket.destroy();
    this.evicted++;
    return true;
  }
}
