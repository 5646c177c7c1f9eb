// When the server collects old space the V8 way that gives pages back (runtime/memory-trim.ts): after a
// burst, once it has stopped growing, not too often.
import { getHeapSpaceStatistics } from 'node:v8';
import pino from 'pino';
import { gcFunction, LoopMeter, nextLookInMs, startMemoryTrim, TRIM_EVERY_MS, TrimDecider, trimPhaseMs, type HeapLook } from '../../src/runtime/memory-trim';

const MiB = 1024 * 1024;

test('trims once old space holds much more than it uses and has stopped growing; not again within a minute', () => {
  const d = new TrimDecider({ minFreeBytes: 32 * MiB, minFreeShare: 0.3, growingShare: 0.05, spacingMs: 60_000, maxSpacingMs: 240_000 });
  // First look: nothing to compare with.
  expect(d.shouldTrim({ size: 200 * MiB, used: 80 * MiB }, 0)).toBe(false);
  // Still growing (V8 took 200 → 240 MiB of old space for it): the burst goes on.
  expect(d.shouldTrim({ size: 240 * MiB, used: 100 * MiB }, 10_000)).toBe(false);
  // Steady at 240 MiB, but the event loop still mostly busy: not yet.
  expect(d.shouldTrim({ size: 240 * MiB, used: 101 * MiB, busy: 0.8 }, 20_000)).toBe(false);
  // Steady and quiet: trim.
  expect(d.shouldTrim({ size: 240 * MiB, used: 101 * MiB, busy: 0.1 }, 20_000)).toBe(true);
  // Fragmented again at once: not within the minute.
  expect(d.shouldTrim({ size: 200 * MiB, used: 100 * MiB }, 50_000)).toBe(false);
  expect(d.shouldTrim({ size: 200 * MiB, used: 100 * MiB }, 80_001)).toBe(true);
  // That one gave back only 8 MiB: the next may come after two minutes, not one.
  d.trimmed(8 * MiB);
  expect(d.shouldTrim({ size: 200 * MiB, used: 100 * MiB }, 80_001 + 60_000)).toBe(false);
  expect(d.shouldTrim({ size: 200 * MiB, used: 100 * MiB }, 80_001 + 120_000)).toBe(true);
  // A worthwhile one brings the minute back.
  d.trimmed(100 * MiB);
  expect(d.shouldTrim({ size: 200 * MiB, used: 100 * MiB }, 80_001 + 180_000)).toBe(true);
});

test('garbage creeping into the old space V8 already holds is not growth: a quiet process past its burst collects', () => {
  const d = new TrimDecider({ minFreeBytes: 16 * MiB, minFreeShare: 0.25, growingShare: 0.05, spacingMs: 60_000, maxSpacingMs: 240_000 });
  // After a wave of held polls: 170 MiB of old space, used space creeping up 8 % a look between full collections.
  expect(d.shouldTrim({ size: 170 * MiB, used: 110 * MiB, busy: 0.04 }, 0)).toBe(false);
  expect(d.shouldTrim({ size: 170 * MiB, used: 119 * MiB, busy: 0.04 }, 10_000)).toBe(true);
});

test('old space V8 has already shrunk by itself (its pages pooled, still in RSS) is worth a collection once quiet; the drop is measured from the last collection', () => {
  const d = new TrimDecider({ minFreeBytes: 16 * MiB, minFreeShare: 0.25, growingShare: 0.05, spacingMs: 30_000, maxSpacingMs: 240_000, minYoungBytes: 64 * MiB });
  // A batch of changed components: old space grows to 48 MiB, dense (nothing free in it worth a collection).
  expect(d.shouldTrim({ size: 20 * MiB, used: 13 * MiB, young: 2 * MiB, busy: 0.05 }, 0)).toBe(false);
  expect(d.shouldTrim({ size: 48 * MiB, used: 44 * MiB, young: 2 * MiB, busy: 0.05 }, 40_000)).toBe(false);
  // V8's ordinary collections shrink it back to 19 MiB: old space looks small, the pages are in V8's pool.
  // Old: nothing free in old space, the young generation small: never collected.
  expect(d.shouldTrim({ size: 19 * MiB, used: 14 * MiB, young: 2 * MiB, busy: 0.05 }, 50_000)).toBe(true);
  // Measured from the collection on: the same heap again is no reason.
  expect(d.shouldTrim({ size: 19 * MiB, used: 14 * MiB, young: 2 * MiB, busy: 0.05 }, 90_000)).toBe(false);
  // A drop smaller than free old space would have to be (16 MiB, a quarter of what is used) is left alone.
  expect(d.shouldTrim({ size: 30 * MiB, used: 26 * MiB, young: 2 * MiB, busy: 0.05 }, 130_000)).toBe(false);
  expect(d.shouldTrim({ size: 20 * MiB, used: 15 * MiB, young: 2 * MiB, busy: 0.05 }, 170_000)).toBe(false);
});

test('little free old space, in bytes or as a share of what is used, is left alone', () => {
  const d = new TrimDecider({ minFreeBytes: 32 * MiB, minFreeShare: 0.3, growingShare: 0.05, spacingMs: 0, maxSpacingMs: 0 });
  d.shouldTrim({ size: 60 * MiB, used: 40 * MiB }, 0);
  // 20 MiB free: under 32 MiB.
  expect(d.shouldTrim({ size: 60 * MiB, used: 40 * MiB }, 1)).toBe(false);
  // 40 MiB free of 200 used: 20 %, under 30 %.
  d.shouldTrim({ size: 240 * MiB, used: 200 * MiB }, 2);
  expect(d.shouldTrim({ size: 240 * MiB, used: 200 * MiB }, 3)).toBe(false);
});

test('a grown young generation is worth a collection once the burst is over; grown again at once, the next waits longer', () => {
  const d = new TrimDecider({ minFreeBytes: 16 * MiB, minFreeShare: 0.3, growingShare: 0.05, spacingMs: 60_000, maxSpacingMs: 240_000, minYoungBytes: 8 * MiB, quietShare: 0.25 });
  // Old space dense (no free space worth it), the young generation at its 32 MiB peak, old space still growing.
  expect(d.shouldTrim({ size: 100 * MiB, used: 80 * MiB, young: 32 * MiB, busy: 0.9 }, 0)).toBe(false);
  expect(d.shouldTrim({ size: 110 * MiB, used: 100 * MiB, young: 32 * MiB, busy: 0.9 }, 10_000)).toBe(false);
  // Old space steady but the event loop busy (an enrollment burst: short-lived objects): not yet.
  expect(d.shouldTrim({ size: 110 * MiB, used: 100 * MiB, young: 32 * MiB, busy: 0.6 }, 20_000)).toBe(false);
  // Steady and quiet: collect for the young generation.
  expect(d.shouldTrim({ size: 110 * MiB, used: 100 * MiB, young: 32 * MiB, busy: 0.05 }, 20_000)).toBe(true);
  d.trimmed(31 * MiB);
  // It stayed small: nothing to do, and the minute's spacing stands.
  expect(d.shouldTrim({ size: 110 * MiB, used: 100 * MiB, young: 1 * MiB }, 30_000)).toBe(false);
  expect(d.shouldTrim({ size: 110 * MiB, used: 100 * MiB, young: 32 * MiB }, 80_001)).toBe(true);
  d.trimmed(31 * MiB);
  // Grown again by the next look: the load needs it; the next collection for it comes after two minutes.
  expect(d.shouldTrim({ size: 110 * MiB, used: 100 * MiB, young: 32 * MiB }, 90_001)).toBe(false);
  expect(d.shouldTrim({ size: 110 * MiB, used: 100 * MiB, young: 32 * MiB }, 80_001 + 60_000)).toBe(false);
  expect(d.shouldTrim({ size: 110 * MiB, used: 100 * MiB, young: 32 * MiB }, 80_001 + 120_000)).toBe(true);
  // A small young generation and dense old space: nothing.
  const quiet = new TrimDecider({ minFreeBytes: 32 * MiB, minFreeShare: 0.3, growingShare: 0.05, spacingMs: 0, maxSpacingMs: 0, minYoungBytes: 8 * MiB });
  quiet.shouldTrim({ size: 110 * MiB, used: 100 * MiB, young: 4 * MiB }, 0);
  expect(quiet.shouldTrim({ size: 110 * MiB, used: 100 * MiB, young: 4 * MiB }, 1)).toBe(false);
});

test('the collection the trim runs shrinks a grown young generation', () => {
  const gc = gcFunction()!;
  const young = (): number => getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')!.physical_space_size;
  // Short-lived objects with a few survivors at a time: scavenges with survivors grow the young generation.
  let keep: unknown[] = [];
  for (let i = 0; i < 2_000_000; i++) {
    keep.push({ i, s: `x${i}` });
    if (keep.length > 20_000) keep = [];
  }
  const grown = young();
  gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  expect(grown).toBeGreaterThan(4 * MiB);
  expect(young()).toBeLessThan(grown / 2);
});

test('without --expose-gc the trim has its own gc(), and the collection it runs gives a burst\'s old-space pages back', () => {
  const gc = gcFunction();
  expect(typeof gc).toBe('function');
  const old = (): number => getHeapSpaceStatistics().find((s) => s.space_name === 'old_space')!.space_size;
  // A burst: objects that live long enough to be promoted, then nearly all die, a few survivors on every page.
  const burst: unknown[][] = [];
  for (let i = 0; i < 200; i++) burst.push(Array.from({ length: 2000 }, (_, k) => ({ k, s: `x${k}` })));
  gc!({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  const peak = old();
  const keep = burst.map((a) => a[0]);
  burst.length = 0;
  gc!({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  // The burst was ~30 MiB of objects; most of its pages go back (other tests share this heap).
  expect(peak - old()).toBeGreaterThan(10 * MiB);
  expect(keep).toHaveLength(200);
});

test('once start-up is over (old space no longer growing) one collection is due, only while old space is start-up sized', () => {
  const policy = { minFreeBytes: 16 * MiB, minFreeShare: 0.25, growingShare: 0.05, spacingMs: 60_000, maxSpacingMs: 240_000 };
  const d = new TrimDecider(policy);
  const look = (used: number, size = 12 * MiB): boolean => {
    const startup = d.startupSettled({ size, used });
    d.shouldTrim({ size, used }, 0);
    return startup;
  };
  // First look: nothing to compare with; then still loading (6 → 8 MiB used).
  expect(look(6 * MiB)).toBe(false);
  expect(look(8 * MiB)).toBe(false);
  // Steady: collect, once.
  expect(look(8 * MiB)).toBe(true);
  expect(look(8 * MiB)).toBe(false);
  // A server already in a burst when it settles (old space past 32 MiB) is left to the burst rule.
  const busy = new TrimDecider(policy);
  busy.shouldTrim({ size: 200 * MiB, used: 150 * MiB }, 0);
  expect(busy.startupSettled({ size: 200 * MiB, used: 150 * MiB })).toBe(false);
  expect(busy.startupSettled({ size: 12 * MiB, used: 8 * MiB })).toBe(false);
});

test('cluster workers look at their heaps at different moments of the interval, a single process at once', () => {
  expect(trimPhaseMs(1, 1)).toBe(0);
  const phases = [1, 2, 3, 4, 5, 6].map((slot) => trimPhaseMs(slot, 6));
  expect(phases[0]).toBe(0);
  expect(new Set(phases).size).toBe(6);
  for (let i = 1; i < 6; i++) expect(phases[i]! - phases[i - 1]!).toBeGreaterThanOrEqual(1600);
  expect(Math.max(...phases)).toBeLessThan(TRIM_EVERY_MS);
  // A replacement worker takes its slot's phase again.
  expect(trimPhaseMs(7, 6)).toBe(phases[0]);
});

test('the looks keep to the phase of the grid, even after one came late', () => {
  expect(nextLookInMs(0, 1000, 400)).toBe(400);
  expect(nextLookInMs(400, 1000, 400)).toBe(1000);
  // A look that ran at 2,901 (its event loop busy since 400): the next is at 3,400, on the grid.
  expect(nextLookInMs(2901, 1000, 400)).toBe(499);
  expect(nextLookInMs(1_764_000_000_123, TRIM_EVERY_MS, 0)).toBe(TRIM_EVERY_MS - 123);
});

test('the first look waits for the phase, then comes every interval, and none after the stop', () => {
  jest.useFakeTimers({ now: 0 });
  try {
    const looks: number[] = [];
    const decider = new TrimDecider();
    const spy = jest.spyOn(decider, 'startupSettled').mockImplementation(() => {
      looks.push(Date.now());
      return false;
    });
    const stop = startMemoryTrim(pino({ level: 'silent' }), 1000, decider, 400);
    jest.advanceTimersByTime(399);
    expect(looks).toEqual([]);
    jest.advanceTimersByTime(1001);
    expect(looks).toEqual([400, 1400]);
    stop();
    jest.advanceTimersByTime(5000);
    expect(looks).toEqual([400, 1400]);
    spy.mockRestore();
  } finally {
    jest.useRealTimers();
  }
});

test('by default a collection may follow another after 30 s: one made as a burst ended does not hold back the one after the next wave', () => {
  const d = new TrimDecider();
  d.shouldTrim({ size: 95 * MiB, used: 40 * MiB, young: 27 * MiB, busy: 0.03 }, 0);
  // The end of the first check-ins (a worker waiting on the primary looks quiet): it collects.
  expect(d.shouldTrim({ size: 95 * MiB, used: 50 * MiB, young: 27 * MiB, busy: 0.03 }, 10_000)).toBe(true);
  d.trimmed(49 * MiB);
  // The polling wave grows it again, then ends.
  expect(d.shouldTrim({ size: 160 * MiB, used: 120 * MiB, young: 32 * MiB, busy: 0.9 }, 20_000)).toBe(false);
  expect(d.shouldTrim({ size: 160 * MiB, used: 121 * MiB, young: 32 * MiB, busy: 0.02 }, 30_000)).toBe(false);
  expect(d.shouldTrim({ size: 160 * MiB, used: 122 * MiB, young: 32 * MiB, busy: 0.02 }, 40_000)).toBe(true);
});

test('the event loop is asked about only when the heap calls for a collection', () => {
  // A look whose busy share counts its readers: the trim loads perf_hooks for that answer.
  let asked = 0;
  const look = (size: number, used: number, young = 0): HeapLook => ({ size, used, young, get busy() { asked++; return 0.05; } });
  const d = new TrimDecider({ minFreeBytes: 16 * MiB, minFreeShare: 0.25, growingShare: 0.05, spacingMs: 30_000, maxSpacingMs: 60_000 });
  d.shouldTrim(look(12 * MiB, 8 * MiB), 0);
  d.shouldTrim(look(12 * MiB, 9 * MiB), 10_000);
  expect(asked).toBe(0);
  d.shouldTrim(look(240 * MiB, 100 * MiB), 20_000);
  expect(d.shouldTrim(look(240 * MiB, 101 * MiB), 30_000)).toBe(true);
  expect(asked).toBe(2);
});

test('the loop meter calls its first answer busy, then measures from one look to the next', async () => {
  const meter = new LoopMeter();
  expect(meter.sinceLast()).toBe(1);
  // Idle between these looks: the event loop waits on a timer.
  await new Promise((r) => setTimeout(r, 200));
  const idle = meter.sinceLast();
  expect(idle).toBeGreaterThanOrEqual(0);
  expect(idle).toBeLessThan(0.5);
  // Busy: the loop is blocked from one look to the next.
  meter.skip();
  const until = Date.now() + 100;
  while (Date.now() < until) { /* holding the loop */ }
  expect(meter.sinceLast()).toBeGreaterThan(0.5);
});
