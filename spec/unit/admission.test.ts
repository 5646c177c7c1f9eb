// Refusals under load tell clients when to come back: a place in a queue served at the rate the server
// gets through work, so clients refused together return spread out instead of in one burst.
import { RouteLimiter } from '../../src/http/limiter';
import { RetrySpread } from '../../src/http/retry-spread';
import { RateMeter } from '../../src/util/rate-meter';

function histogram(values: number[]): Map<number, number> {
  const h = new Map<number, number>();
  for (const v of values) h.set(v, (h.get(v) ?? 0) + 1);
  return h;
}

test('3,000 clients refused together at 1,000/s are told 1, 2 and 3 s, a thousand each', () => {
  const spread = new RetrySpread(60, () => 5000);
  const told = Array.from({ length: 3000 }, () => spread.next(1000));
  expect([...histogram(told)].sort((a, b) => a[0] - b[0])).toEqual([[1, 1000], [2, 1000], [3, 1000]]);
});

test('the queue drains with time: a client refused after it has emptied is told 1 s', () => {
  let now = 0;
  const spread = new RetrySpread(60, () => now);
  for (let i = 0; i < 500; i++) spread.next(100);
  expect(spread.next(100)).toBe(6);
  now = 10_000;
  expect(spread.next(100)).toBe(1);
});

test('past the window, refused clients are spread over its second half and do not extend the queue', () => {
  let now = 0;
  const spread = new RetrySpread(10, () => now);
  const told = Array.from({ length: 5000 }, () => spread.next(100));
  expect(Math.max(...told)).toBe(10);
  const beyond = told.slice(1000);
  expect(beyond.every((s) => s >= 5 && s <= 10)).toBe(true);
  expect(new Set(beyond).size).toBeGreaterThan(3);
  // The queue holds 1,000 places (10 s at 100/s); once it has drained, a newcomer is first in line.
  now = 10_000;
  expect(spread.next(100)).toBe(1);
});

test('the rate meter counts events of the last second, weighting the previous second by its overlap', () => {
  let now = 0;
  const meter = new RateMeter(() => now);
  for (let i = 0; i < 400; i++) meter.mark();
  now = 1000;
  expect(meter.perSecond()).toBe(400);
  now = 1500;
  for (let i = 0; i < 100; i++) meter.mark();
  expect(meter.perSecond()).toBe(300); // 400 × ½ + 100
  now = 5000;
  expect(meter.perSecond()).toBe(0);
});

test('a route limit refuses with Retry-After spread at its own rate (RateLimit) or at the rate requests leave (MaxLimit)', () => {
  // 100/s after a burst of 10: 510 requests at once, 500 refused, told 1 to 5 s, 100 each.
  const frozen = (): number => 1000;
  const rated = new RouteLimiter({ intervalMs: 10, burst: 10, max: 0, maxBody: 0, maxBodyDecompressed: 0 }, frozen);
  const told: number[] = [];
  for (let i = 0; i < 510; i++) {
    try {
      rated.enter();
    } catch (err: any) {
      expect(err.code).toBe('RateLimit');
      told.push(err.retryAfterSeconds);
    }
  }
  expect([...histogram(told)].sort((a, b) => a[0] - b[0])).toEqual([[1, 100], [2, 100], [3, 100], [4, 100], [5, 100]]);

  const capped = new RouteLimiter({ intervalMs: 0, burst: 0, max: 2, maxBody: 0, maxBodyDecompressed: 0 }, frozen);
  capped.enter();
  capped.enter();
  const refusals: number[] = [];
  for (let i = 0; i < 5; i++) {
    try {
      capped.enter();
    } catch (err: any) {
      expect(err.code).toBe('MaxLimit');
      refusals.push(err.retryAfterSeconds);
    }
  }
  // Nothing has left yet: one client per second.
  expect(refusals).toEqual([1, 2, 3, 4, 5]);
});

test('a retuned route limit (a cluster worker taking a missing worker\'s share) admits up to its new cap, counting requests already in', () => {
  const frozen = (): number => 1000;
  const limiter = new RouteLimiter({ intervalMs: 0, burst: 0, max: 2, maxBody: 0, maxBodyDecompressed: 0 }, frozen);
  const code = (): string | undefined => {
    try {
      limiter.enter();
      return undefined;
    } catch (err: any) {
      return err.code;
    }
  };
  expect([code(), code(), code()]).toEqual([undefined, undefined, 'MaxLimit']);
  // One of two workers gone: this one's share doubles.
  limiter.retune({ intervalMs: 0, burst: 0, max: 4, maxBody: 0, maxBodyDecompressed: 0 });
  expect([code(), code(), code()]).toEqual([undefined, undefined, 'MaxLimit']);
  // Its replacement ready: back to half; the four in flight stay, nothing new is let in until two leave.
  limiter.retune({ intervalMs: 0, burst: 0, max: 2, maxBody: 0, maxBodyDecompressed: 0 });
  limiter.leave();
  limiter.leave();
  expect(code()).toBe('MaxLimit');
  limiter.leave();
  expect(code()).toBeUndefined();
  // A rate that changes takes effect at once.
  limiter.retune({ intervalMs: 1000, burst: 1, max: 0, maxBody: 0, maxBodyDecompressed: 0 });
  expect([code(), code()]).toEqual([undefined, 'RateLimit']);
});
