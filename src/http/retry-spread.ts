// Retry-After for refusals under load. Telling every refused client "retry in 5 s" brings them all
// back in the same second: the storm again, five seconds later. Instead each refusal takes the next
// place in a virtual queue served at the rate the server is getting through work, so N clients refused
// together come back spread over N/rate seconds. Past `maxSeconds` the queue is not extended; those
// clients are spread at random over the window's second half.
import { monotonicMs } from '../util/clock';

export class RetrySpread {
  private horizonMs = 0;

  constructor(private readonly maxSeconds = 60, private readonly now: () => number = monotonicMs) {}

  /** Seconds to tell the next refused client, the queue being served at `perSecond`. */
  next(perSecond: number): number {
    const t = this.now();
    const step = 1000 / Math.max(1, perSecond);
    const horizon = Math.max(this.horizonMs, t) + step;
    const seconds = Math.ceil((horizon - t) / 1000);
    if (seconds > this.maxSeconds) return Math.ceil(this.maxSeconds / 2 + (Math.random() * this.maxSeconds) / 2);
    this.horizonMs = horizon;
    return Math.max(1, seconds);
  }
}
