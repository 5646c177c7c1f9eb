// Per-route limits: a token bucket checked first, then a cap on concurrent requests (held for the
// whole request; for check-in that is the number of concurrent long polls). A refusal's Retry-After is
// a place in the queue of refused clients (retry-spread.ts), served at the rate the limit lets requests
// through: the bucket's rate, or the rate at which requests leave.
import type { RouteLimit } from '../config/limits';
import { FleetError } from '../fleet/errors';
import { RateMeter } from '../util/rate-meter';
import { TokenBucket } from '../util/token-bucket';
import { RetrySpread } from './retry-spread';
import { monotonicMs } from '../util/clock';

export class RouteLimiter {
  private bucket: TokenBucket;
  private inFlight = 0;
  private readonly spread: RetrySpread;
  private readonly leaving: RateMeter;

  constructor(private limitNow: RouteLimit, private readonly now: () => number = monotonicMs) {
    this.bucket = new TokenBucket(limitNow.intervalMs, limitNow.burst, now);
    this.spread = new RetrySpread(60, now);
    this.leaving = new RateMeter(now);
  }

  get limit(): RouteLimit {
    return this.limitNow;
  }

  /** A new share of a limit (cluster workers: one fewer or one more serving); requests in flight stay counted. */
  retune(limit: RouteLimit): void {
    if (limit.intervalMs !== this.limitNow.intervalMs || limit.burst !== this.limitNow.burst) {
      this.bucket = new TokenBucket(limit.intervalMs, limit.burst, this.now);
    }
    this.limitNow = limit;
  }

  /** Takes a slot or throws RateLimit/MaxLimit (saying when to retry); the caller must call leave() once when done. */
  enter(): void {
    if (!this.bucket.tryTake()) {
      throw new FleetError('RateLimit', undefined, { retryAfterSeconds: this.spread.next(1000 / this.limit.intervalMs) });
    }
    if (this.limit.max > 0 && this.inFlight >= this.limit.max) {
      throw new FleetError('MaxLimit', undefined, { retryAfterSeconds: this.spread.next(this.leaving.perSecond()) });
    }
    this.inFlight++;
  }

  leave(): void {
    this.inFlight--;
    if (this.limit.max > 0) this.leaving.mark();
  }
}
