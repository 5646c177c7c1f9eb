// The primary's judgement of its workers' exits (cluster.ts does the forking and killing): when to start a
// replacement, when to give up because none can start, whether a stop went cleanly, and whether a worker
// killed by a signal during start-up means the start failed or the server is being stopped.
import { Backoff } from '../util/backoff';

/** A worker that served at least this long (from its ready) is replaced at once; sooner, after a growing pause. */
export const STABLE_MS = 10_000;
/**
 * A worker not ready this long after its fork is killed, and counts as a failed start (at start-up: the
 * start fails). Generous: a worker is ready once its listeners are open and, on the embedded store, its
 * fleet logic started, which takes a second or two; Elasticsearch being down does not delay it.
 */
export const READY_TIMEOUT_MS = 60_000;
/** With no worker serving, the primary exits 1 once every slot's last this-many starts failed. */
export const FAILED_STARTS_TO_GIVE_UP = 3;

/** One worker slot's start history. */
export interface SlotRecord {
  index: number;
  backoff: Backoff;
  /** When its current worker said it was ready; undefined while it starts (or has no worker). */
  readyAt?: number;
  /** Starts in a row that ended before the worker was ready. */
  failedStarts: number;
}

export function slotRecord(index: number): SlotRecord {
  return { index, backoff: new Backoff({ initialMs: 500, maxMs: 30_000 }), failedStarts: 0 };
}

export function markReady(slot: SlotRecord, now: number): void {
  slot.readyAt = now;
  slot.failedStarts = 0;
}

export type AfterExit = { restartInMs: number } | { giveUp: string };

/**
 * What to do once `slot`'s worker exited, the server not stopping. `serving`: workers ready now (this one
 * no longer counted). Stability is measured from ready, not from the fork: a worker that took 9 s to start
 * and crashed 1 s later was not stable. Giving up is only after a failed start, so a serving worker that
 * dies always gets its replacement's chance first.
 */
export function afterExit(slot: SlotRecord, slots: readonly SlotRecord[], serving: number, now: number): AfterExit {
  const readyAt = slot.readyAt;
  slot.readyAt = undefined;
  if (readyAt !== undefined && now - readyAt >= STABLE_MS) {
    slot.backoff.reset();
    return { restartInMs: 0 };
  }
  if (readyAt === undefined) {
    slot.failedStarts++;
    if (serving === 0 && slots.every((s) => s.failedStarts >= FAILED_STARTS_TO_GIVE_UP)) {
      return { giveUp: `no worker is serving and the last ${FAILED_STARTS_TO_GIVE_UP} starts of every worker failed` };
    }
  }
  return { restartInMs: slot.backoff.next() };
}

/** A worker's end as its 'exit' or 'close' event says it. */
export interface WorkerExit {
  slot: number;
  pid: number | undefined;
  code: number | null;
  signal: string | null;
}

/**
 * Whether a worker's exit during the server's stop was clean: it drained and exited 0, or the stop's
 * SIGTERM/SIGINT killed it before its handlers were installed (still loading: it had served nothing; once
 * installed, those signals drain it). An exit 1 (its drain overran or failed, or its start failed) or
 * any other signal (SIGKILL: out of memory, or killed by hand) is not.
 */
export function cleanStopExit(e: WorkerExit): boolean {
  return e.code === 0 || e.signal === 'SIGTERM' || e.signal === 'SIGINT';
}

/** The workers whose stop was not clean, said in one sentence; undefined when all were. */
export function uncleanStopExits(exits: readonly WorkerExit[]): string | undefined {
  const bad = exits.filter((e) => !cleanStopExit(e));
  if (bad.length === 0) return undefined;
  return `worker ${bad.map((e) => `${e.slot} (pid ${e.pid ?? '?'}) ${e.signal ? `was killed by ${e.signal}` : `exited with code ${e.code}`}`)
    .join(', worker ')} during the stop`;
}

/**
 * Whether a worker killed during start-up by `signal` may be the first a stop signal to the whole process
 * group (systemd's stop, Ctrl-C) reached: its exit can be seen before the primary's own signal handler
 * has run. Then the start is failed only if the primary's stop does not begin shortly after.
 */
export function mayBeGroupStop(signal: string | null): boolean {
  return signal === 'SIGTERM' || signal === 'SIGINT';
}
