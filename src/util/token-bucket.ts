import { monotonicMs } from './clock';

/**
 * Token bucket: one token per `intervalMs`, at most `burst` stored. An interval or a burst of 0 means
 * unlimited (a configuration that sets either to 0 turns the rate limit off).
 * Time is read lazily on each call, so an idle bucket costs nothing.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(private readonly intervalMs: number, private readonly burst: number, private readonly now: () => number = monotonicMs) {
    this.tokens = Math.max(1, burst);
    this.last = this.now();
  }

  get unlimited(): boolean {
    return this.intervalMs <= 0 || this.burst <= 0;
  }

  private refill(now: number): void {
    const added = (now - this.last) / this.intervalMs;
    if (added > 0) {
      this.tokens = Math.min(Math.max(1, this.burst), this.tokens + added);
      this.last = now;
    }
  }

  /** Takes a token if one is available now. */
  tryTake(): boolean {
    if (this.unlimited) return true;
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

  /** Waits for and takes a token. */
  async take(signal?: AbortSignal): Promise<void> {
    while (!this.tryTake()) {
      if (signal?.aborted) throw signal.reason;
      await new Promise((r) => setTimeout(r, Math.max(1, this.waitMs())));
    }
  }
}
