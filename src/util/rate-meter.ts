import { monotonicMs } from './clock';

/**
 * Events per second over the last second, estimated from two one-second buckets (the previous one
 * weighted by how much of it still lies within the last second). Costs two counters, no timers.
 */
export class RateMeter {
  private current = 0;
  private previous = 0;
  private start: number;

  constructor(private readonly now: () => number = monotonicMs) {
    this.start = this.now();
  }

  private roll(t: number): void {
    const elapsed = t - this.start;
    if (elapsed < 1000) return;
    this.previous = elapsed < 2000 ? this.current : 0;
    this.current = 0;
    this.start = elapsed < 2000 ? this.start + 1000 : t;
  }

  mark(): void {
    this.roll(this.now());
    this.current++;
  }

  perSecond(): number {
    const t = this.now();
    this.roll(t);
    return this.previous * (1 - (t - this.start) / 1000) + this.current;
  }
}
