import { monotonicMs } from './clock';

/** One `take` waiting for its token. */
interface Waiter {
  resolve: () => void;
  reject: (reason: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  /** Served or cancelled: a cancelled waiter stays in the queue until the head passes it. */
  done: boolean;
}

/** Served entries dropped from the front of the queue once this many have gathered (and half of it). */
const COMPACT_AT = 1024;

/**
 * Token bucket: one token per `intervalMs`, at most `burst` stored. An interval or a burst of 0 means
 * unlimited (a configuration that sets either to 0 turns the rate limit off).
 * Time is read lazily on each call, so an idle bucket costs nothing.
 *
 * Waiters are served first come, first served, from one timer armed for the head of the queue: a
 * rollout pacing thousands of agents' key work (policy_limit) wakes once per token, not once per waiter
 * per token, and a newcomer never takes the token the oldest waiter was due (upstream paces with Go's
 * rate.Limiter, whose reservations are ordered the same way).
 */
export class TokenBucket {
  private tokens: number;
  private last: number;
  private readonly queue: Waiter[] = [];
  private head = 0;
  /** Waiters neither served nor cancelled. */
  private waiting = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly intervalMs: number, private readonly burst: number, private readonly now: () => number = monotonicMs) {
    this.tokens = Math.max(1, burst);
    this.last = this.now();
  }

  get unlimited(): boolean {
    return this.intervalMs <= 0 || this.burst <= 0;
  }

  /** How many `take` calls are waiting for a token. */
  get queued(): number {
    return this.waiting;
  }

  private refill(now: number): void {
    const added = (now - this.last) / this.intervalMs;
    if (added > 0) {
      this.tokens = Math.min(Math.max(1, this.burst), this.tokens + added);
      this.last = now;
    }
  }

  /** Takes a token if one is available now (and no `take` is waiting for it first). */
  tryTake(): boolean {
    if (this.unlimited) return true;
    if (this.waiting > 0) return false;
    this.refill(this.now());
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return true;
    }
    return false;
  }

  /** Milliseconds until the next token. */
  waitMs(): number {
    if (this.unlimited) return 0;
    this.refill(this.now());
    return this.tokens >= 1 ? 0 : Math.ceil((1 - this.tokens) * this.intervalMs);
  }

  /**
   * Waits for and takes a token, after every earlier waiter. An abort of `signal` leaves the queue at
   * once, rejecting with the signal's reason (the token goes to the next waiter).
   */
  take(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.tryTake()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = { resolve, reject, signal, onAbort: undefined, done: false };
      if (signal) {
        w.onAbort = () => this.cancel(w);
        signal.addEventListener('abort', w.onAbort, { once: true });
      }
      this.queue.push(w);
      this.waiting++;
      this.arm();
    });
  }

  private cancel(w: Waiter): void {
    if (w.done) return;
    w.done = true;
    this.waiting--;
    if (this.waiting === 0) this.reset();
    w.reject(w.signal!.reason);
  }

  private arm(): void {
    if (this.timer !== undefined || this.waiting === 0) return;
    this.timer = setTimeout(this.serve, Math.max(1, this.waitMs()));
  }

  private readonly serve = (): void => {
    this.timer = undefined;
    this.refill(this.now());
    while (this.head < this.queue.length) {
      const w = this.queue[this.head]!;
      if (!w.done) {
        if (this.tokens < 1) break;
        this.tokens -= 1;
        w.done = true;
        this.waiting--;
        if (w.onAbort) w.signal!.removeEventListener('abort', w.onAbort);
        w.resolve();
      }
      this.queue[this.head++] = undefined as never;
    }
    if (this.waiting === 0) this.reset();
    else if (this.head >= COMPACT_AT && this.head * 2 >= this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    this.arm();
  };

  /** No waiter left: the queue and its timer go. */
  private reset(): void {
    this.queue.length = 0;
    this.head = 0;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
