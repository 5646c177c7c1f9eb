// Admission of TCP connections, before any request exists. A hostile client can open connections and
// never finish a request (slowloris), or finish one and sit idle; left alone they take every file
// descriptor. Connections are counted from accept, capped below the process's file limit (and at
// upstream's hard limit, floor(1.1·max_connections)), and when the cap or the share reserved for
// unfinished connections is reached, the oldest connection that has not sent its first request (then
// the oldest idle keep-alive one) makes room. Connections busy with a request — held long polls — are
// never evicted, so a flood cannot starve agents.
//
// A connection turned away (refused, or evicted while unfinished) is not reset: it stays open until its
// request arrives (at most LINGER_MS; under TLS its handshake first), which is answered 429 with a
// Retry-After spread over a window (retry-spread.ts) and Connection: close. A reset would cost an honest
// client its request without telling it when to come back; after a restart tens of thousands of agents
// arrive together and must be turned away in an orderly fashion, not in a storm of resets and retries.
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { RateMeter } from '../util/rate-meter';
import { RetrySpread } from './retry-spread';
import { monotonicMs } from '../util/clock';

export interface AdmissionLimits {
  /** Most connections open at once. */
  cap: number;
  /** Most connections that have not yet sent a complete first request. */
  pendingCap: number;
  /** Connections being turned away (answered 429, closing) that may hold a descriptor beyond `cap` (they first use its unused room). */
  lingerCap: number;
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
  const reserve = fileLimit === undefined ? 1024 : Math.max(128, Math.floor(fileLimit * 0.05));
  const byFiles = fileLimit === undefined ? Number.MAX_SAFE_INTEGER : fileLimit - reserve;
  // Upstream's floor(1.1·max) equals max for small values, which would make the soft limit unreachable.
  const hard = maxConnections > 0 ? Math.max(Math.floor(maxConnections * 1.1), maxConnections + 1) : Number.MAX_SAFE_INTEGER;
  const cap = Math.max(16, Math.min(byFiles, hard));
  // Half the reserve; the rest stays for the store, logs and outgoing connections.
  return { cap, pendingCap: Math.max(8, Math.floor(cap / 4)), lingerCap: Math.max(8, Math.floor(reserve / 2)) };
}

/**
 * A connection accepted in the last event-loop turns has had no chance to be read yet; it is not evicted
 * (a newcomer is refused instead), or one burst of accepts could evict an honest client with it.
 */
const GRACE_TURNS = 2;

/** How long a connection turned away may take to read its answer and close. */
const LINGER_MS = 2000;
/**
 * The rate at which a process is assumed to get through connections before it has measured any: the
 * first refusals of a storm come before the meter has seen a second of it.
 */
const NOMINAL_PER_SECOND = 1000;

export interface AdmissionCounts {
  /** Connections accepted, and closed (turned-away ones included), since start. */
  accepted: number;
  closed: number;
  /** Unfinished or idle connections closed to make room. */
  evicted: number;
  /** Connections turned away (new ones past the cap, or evicted unfinished) and kept to be answered 429. */
  turnedAway: number;
  /** Connections turned away and closed at once: no room left to keep them. */
  dropped: number;
}

export class ConnectionGuard {
  private open = 0;
  /** Sockets whose first request has not arrived, oldest first (a Map keeps insertion order), with the turn they came in. */
  private readonly pending = new Map<Socket, number>();
  /** Keep-alive sockets between requests, oldest first, with when they became idle (monotonicMs()). */
  private readonly idle = new Map<Socket, number>();
  /** Every socket admitted and not yet closed or turned away. */
  private readonly admitted = new WeakSet<Socket>();
  /** Sockets turned away: their request is answered 429. */
  private readonly turnedAway = new WeakSet<Socket>();
  private lingering = 0;
  readonly counts: AdmissionCounts = { accepted: 0, closed: 0, evicted: 0, turnedAway: 0, dropped: 0 };
  /** Connections that reached their first request, per second: how fast this process gets through them. */
  private readonly served = new RateMeter();
  private readonly spread = new RetrySpread();
  private turn = 0;
  private turnCounting = false;

  constructor(public limits: AdmissionLimits) {}

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

  /** A new connection: admitted (possibly evicting an older unfinished one), or turned away. */
  admit(socket: Socket): boolean {
    this.counts.accepted++;
    // One listener for every socket: counted closed, and let go if still admitted (not turned away since).
    socket.once('close', () => {
      this.counts.closed++;
      if (this.admitted.has(socket)) this.release(socket);
    });
    const turn = this.currentTurn();
    if ((this.pending.size >= this.limits.pendingCap || this.open >= this.limits.cap) && !this.evictOne(turn)) {
      this.turnAway(socket);
      return false;
    }
    this.open++;
    this.pending.set(socket, turn);
    this.admitted.add(socket);
    return true;
  }

  /** The connection's request headers arrived: it is busy, not evictable. False for a socket not admitted. */
  busy(socket: Socket): boolean {
    if (!this.admitted.has(socket)) return false;
    if (this.pending.delete(socket)) this.served.mark();
    this.idle.delete(socket);
    return true;
  }

  /** True for a connection turned away: its request is to be answered 429 (`retryAfterSeconds`), and the connection closed. */
  isTurnedAway(socket: Socket): boolean {
    return this.turnedAway.has(socket);
  }

  /** An answer went out on a connection kept alive: evictable again until its next request. */
  idleAgain(socket: Socket): void {
    if (!socket.destroyed && this.admitted.has(socket)) this.idle.set(socket, monotonicMs());
  }

  /** Closes the keep-alive connections idle for at least `minIdleMs` (a stopping server); how many stay idle. */
  closeIdle(minIdleMs: number): number {
    const before = monotonicMs() - minIdleMs;
    for (const [socket, since] of this.idle) {
      // Oldest first: the rest became idle later.
      if (since > before) break;
      this.release(socket);
      socket.destroy();
    }
    return this.idle.size;
  }

  /** The Retry-After for a refusal made now: a place in the queue of refused clients. */
  retryAfterSeconds(): number {
    return this.spread.next(Math.max(NOMINAL_PER_SECOND, this.served.perSecond()));
  }

  /** Closes the oldest unfinished connection past its grace, else the oldest idle one; false when neither exists. */
  private evictOne(turn: number): boolean {
    const oldest = this.pending.entries().next();
    if (!oldest.done && turn - oldest.value[1] >= GRACE_TURNS) {
      this.release(oldest.value[0]);
      this.counts.evicted++;
      this.turnAway(oldest.value[0]);
      return true;
    }
    const idle = this.idle.keys().next();
    if (idle.done) return false;
    // Between requests: nothing is owed, and a 429 would be taken as the answer to the next one.
    this.release(idle.value);
    this.counts.evicted++;
    idle.value.destroy();
    return true;
  }

  private release(socket: Socket): void {
    this.pending.delete(socket);
    this.idle.delete(socket);
    this.admitted.delete(socket);
    this.open--;
  }

  /** Keeps the socket until its request can be answered 429, or LINGER_MS; closes it at once when there is no room. */
  private turnAway(socket: Socket): void {
    // Within the cap's unused room, plus a share of the reserve: a storm is answered, not reset.
    if (this.open + this.lingering >= this.limits.cap + this.limits.lingerCap || socket.destroyed) {
      this.counts.dropped++;
      socket.destroy();
      return;
    }
    this.counts.turnedAway++;
    this.lingering++;
    this.turnedAway.add(socket);
    const timer = setTimeout(() => socket.destroy(), LINGER_MS);
    timer.unref();
    socket.once('close', () => {
      clearTimeout(timer);
      this.lingering--;
    });
  }
}
