// util/time.ts isoTime: the same string as Date.prototype.toISOString, without V8's time-zone lookup.
import { isoTime, rfc3339 } from '../../src/util/time';
import { monotonicMs } from '../../src/util/clock';

test('isoTime writes what toISOString writes, across leap years, century rules and the ends of days and years', () => {
  const edges = [
    0, 1, 999, 86_399_999, 86_400_000, // the epoch and its first day
    Date.UTC(1972, 1, 29, 12), Date.UTC(2000, 1, 29), Date.UTC(2000, 2, 1) - 1, Date.UTC(2100, 1, 28, 23, 59, 59, 999),
    Date.UTC(2100, 2, 1), Date.UTC(2400, 1, 29), Date.UTC(2026, 11, 31, 23, 59, 59, 999), Date.UTC(2027, 0, 1),
    Date.UTC(9999, 11, 31, 23, 59, 59, 999), 1_733_338_327_951.7, // a fraction is cut, as the Date constructor does
  ];
  for (const ms of edges) expect(isoTime(ms)).toBe(new Date(ms).toISOString());
  // Every day from 1970 to 2500, at a time of day that moves through the whole day.
  for (let day = 0; day < 194_000; day++) {
    const ms = day * 86_400_000 + ((day * 7_919_993) % 86_400_000);
    if (isoTime(ms) !== new Date(ms).toISOString()) throw new Error(`day ${day}: ${isoTime(ms)} against ${new Date(ms).toISOString()}`);
  }
});

test('isoTime leaves six-digit and negative years and invalid times to toISOString', () => {
  expect(isoTime(Date.UTC(10000, 0, 1))).toBe('+010000-01-01T00:00:00.000Z');
  expect(isoTime(-1)).toBe('1969-12-31T23:59:59.999Z');
  expect(() => isoTime(Number.NaN)).toThrow(RangeError);
});

test('isoTime without an argument is now, and rfc3339 drops the milliseconds', () => {
  const before = Date.now();
  const now = Date.parse(isoTime());
  expect(now).toBeGreaterThanOrEqual(before);
  expect(now).toBeLessThanOrEqual(Date.now());
  expect(rfc3339(Date.UTC(2026, 11, 4, 19, 12, 7, 951))).toBe('2026-12-04T19:12:07Z');
});

test('monotonicMs moves forward in milliseconds', async () => {
  const a = monotonicMs();
  await new Promise((r) => setTimeout(r, 20));
  const b = monotonicMs();
  expect(b - a).toBeGreaterThanOrEqual(15);
  expect(b - a).toBeLessThan(60_000);
});
