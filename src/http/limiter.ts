// Per-route limits: a token bucket checked first, then a cap on concurrent requests (held for the
// whole request; for check-in that is the number of concurrent long polls).
import type { RouteLimit } from '../config/limits';
import { FleetError } from '../fleet/errors';
import { TokenBucket } from '../util/token-bucket';

export class RouteLimiter {
  private readonly bucket: TokenBucket;
  private inFlight = 0;

  constructor(readonly limit: RouteLimit) {
    this.bucket = new TokenBucket(limit.intervalMs, limit.burst);
  }

  /** Takes a slot or throws RateLimit/MaxLimit (saying when to retry); the caller must call leave() once when done. */
  enter(): void {
    if (!this.bucket.tryTake()) {
      throw new FleetError('RateLimit', undefined, { retryAfterSeconds: Math.max(1, Math.ceil(this.bucket.waitMs() / 1000)) });
    }
    if (this.limit.max > 0 && this.inFlight >= this.limit.max) throw new FleetError('MaxLimit');
    this.inFlight++;
  }

  leave(): void {
    this.inFlight--;
  }
}
