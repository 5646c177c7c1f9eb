// A clock tests move by hand: time-dependent fleet rules are checked without sleeping.
import type { Clock } from '../../src/util/clock';

export class ManualClock implements Clock {
  constructor(private ms: number) {}

  now(): number {
    return this.ms;
  }

  advance(ms: number): void {
    this.ms += ms;
  }

  iso(): string {
    return new Date(this.ms).toISOString();
  }
}
