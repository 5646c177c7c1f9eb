// On the embedded store the primary is the one writer: every acknowledged write of every worker (output
// keys at first check-ins, acks, check-in records) waits for its commits, and it also answers the
// workers' reads that need the writer. Competing for the CPU as an equal of each worker, it got one
// process's share of a busy box — a seventh of it with six workers — and the whole server waited on it.
// So a worker on the embedded store runs below the primary's priority (nice +5: CFS weight 335 against
// the primary's 1,024): when the primary has work it runs, and the workers share the rest. Measured at
// 30,000 agents on six workers (2026-12-04, two alternating pairs, load 1–5): rollout to 100 % 6.1 / 5.7 s
// → 3.1 / 3.6 s, first check-ins 1,669 / 2,012 → 1,747 / 2,145 per second (the load generators at nice 0).
// With Elasticsearch the workers are peers that need nothing from the primary, and keep its priority.
//
// A nice value belongs to a thread on Linux; Node's own threads (V8's platform workers for GC and
// compilation) start before any JavaScript runs, so each of the process's threads is set. Threads made
// later (libuv's pool) inherit it from the main thread.
import { readdirSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';

/** How far below the primary's priority a worker runs (nice steps). */
export const WORKER_NICE_STEP = 5;

/**
 * Lowers this process's priority, each of its threads, WORKER_NICE_STEP nice steps below the one it was
 * started with (the primary's), at most to 19.
 */
export function lowerOwnPriority(): void {
  const nice = Math.min(19, getPriority(0) + WORKER_NICE_STEP);
  let threads: number[];
  try {
    threads = readdirSync('/proc/self/task').map(Number).filter((t) => Number.isInteger(t) && t > 0);
  } catch {
    threads = [0]; // no /proc: the main thread only
  }
  for (const tid of threads) {
    try {
      setPriority(tid, nice);
    } catch {
      // A thread that ended meanwhile, or a system that refuses: the others still go.
    }
  }
}

/** A process's nice value (its main thread's), undefined if it cannot be read. */
export function niceOf(pid: number | undefined): number | undefined {
  try {
    return pid === undefined ? undefined : getPriority(pid);
  } catch {
    return undefined;
  }
}
