// The primary's judgement of its workers' exits (src/runtime/cluster-supervision.ts): replacements, giving
// up when none can start, a stop's verdict, and a signal during start-up.
import {
  afterExit, cleanStopExit, FAILED_STARTS_TO_GIVE_UP, markReady, mayBeGroupStop, slotRecord, STABLE_MS, uncleanStopExits, type SlotRecord,
} from '../../src/runtime/cluster-supervision';

const slotsOf = (n: number): SlotRecord[] => Array.from({ length: n }, (_, i) => slotRecord(i + 1));

describe('afterExit: replacing a worker', () => {
  it('measures stability from ready, not from the fork: a slow start that crashed soon after is backed off', () => {
    const [a, b] = slotsOf(2) as [SlotRecord, SlotRecord];
    markReady(b, 0);
    // Forked at 0, ready at 9 s, crashed at 11 s: 11 s after its fork, but served 2 s.
    markReady(a, 9_000);
    const next = afterExit(a, [a, b], 1, 11_000);
    expect(next).toEqual({ restartInMs: expect.any(Number) });
    expect((next as { restartInMs: number }).restartInMs).toBeGreaterThan(0);
    expect(a.failedStarts).toBe(0); // it was ready: not a failed start
  });

  it('replaces at once a worker that served STABLE_MS, and starts its back-off again', () => {
    const [a, b] = slotsOf(2) as [SlotRecord, SlotRecord];
    markReady(b, 0);
    a.backoff.next();
    a.backoff.next();
    markReady(a, 1_000);
    expect(afterExit(a, [a, b], 1, 1_000 + STABLE_MS)).toEqual({ restartInMs: 0 });
    expect(a.backoff.attempts).toBe(0);
  });

  it('with another worker serving, a slot that keeps failing is retried (the server still serves)', () => {
    const [a, b] = slotsOf(2) as [SlotRecord, SlotRecord];
    markReady(b, 0);
    for (let i = 0; i < 10; i++) expect(afterExit(a, [a, b], 1, 1000 * i)).toHaveProperty('restartInMs');
    expect(a.failedStarts).toBe(10);
  });

  it('gives up once no worker serves and every slot failed its last starts', () => {
    const [a, b] = slotsOf(2) as [SlotRecord, SlotRecord];
    const verdicts: unknown[] = [];
    for (let i = 0; i < FAILED_STARTS_TO_GIVE_UP; i++) {
      verdicts.push(afterExit(a, [a, b], 0, i));
      verdicts.push(afterExit(b, [a, b], 0, i));
    }
    expect(verdicts.slice(0, -1).every((v) => 'restartInMs' in (v as object))).toBe(true);
    expect(verdicts.at(-1)).toEqual({ giveUp: expect.stringContaining('no worker is serving') });
  });

  it('a serving worker that dies gets its replacement first, even beside a slot that never starts', () => {
    const [a, b] = slotsOf(2) as [SlotRecord, SlotRecord];
    for (let i = 0; i < FAILED_STARTS_TO_GIVE_UP; i++) afterExit(a, [a, b], 1, i);
    markReady(b, 0);
    expect(afterExit(b, [a, b], 0, 60_000)).toEqual({ restartInMs: 0 });
    // Its replacement fails as well, with nobody serving: now every slot has failed.
    for (let i = 1; i < FAILED_STARTS_TO_GIVE_UP; i++) expect(afterExit(b, [a, b], 0, 60_000 + i)).toHaveProperty('restartInMs');
    expect(afterExit(b, [a, b], 0, 70_000)).toHaveProperty('giveUp');
  });

  it('a ready worker clears its failed starts', () => {
    const [a] = slotsOf(1) as [SlotRecord];
    afterExit(a, [a], 1, 0);
    afterExit(a, [a], 1, 1);
    markReady(a, 2);
    expect(a.failedStarts).toBe(0);
  });
});

describe("the stop's verdict on the workers' exits", () => {
  it('clean: exit 0, or killed by the stop signal before its handlers (it served nothing)', () => {
    expect(cleanStopExit({ slot: 1, pid: 10, code: 0, signal: null })).toBe(true);
    expect(cleanStopExit({ slot: 1, pid: 10, code: null, signal: 'SIGTERM' })).toBe(true);
    expect(cleanStopExit({ slot: 1, pid: 10, code: null, signal: 'SIGINT' })).toBe(true);
    expect(uncleanStopExits([{ slot: 1, pid: 10, code: 0, signal: null }, { slot: 2, pid: 11, code: null, signal: 'SIGTERM' }])).toBeUndefined();
  });

  it('not clean: a drain that overran or failed (exit 1), or a crash mid-drain; each named', () => {
    expect(uncleanStopExits([
      { slot: 1, pid: 10, code: 0, signal: null },
      { slot: 2, pid: 11, code: 1, signal: null },
      { slot: 3, pid: 12, code: null, signal: 'SIGKILL' },
    ])).toBe('worker 2 (pid 11) exited with code 1, worker 3 (pid 12) was killed by SIGKILL during the stop');
  });
});

test("a worker killed during start-up by a stop signal may be a group stop's first casualty; anything else fails the start", () => {
  expect(mayBeGroupStop('SIGTERM')).toBe(true);
  expect(mayBeGroupStop('SIGINT')).toBe(true);
  expect(mayBeGroupStop(null)).toBe(false); // exit 1: its start failed
  expect(mayBeGroupStop('SIGKILL')).toBe(false);
});
