// The primary's judgement of its workers' exits (cluster.ts does the forking and killing): when to start a
// replacement, when to give up because none can start, whether a stop went cleanly, and whether a worker
// killed by a signal during start-up means the start failed or the server is being stopped; and which
// ready worker has been silent so long that it is hung.
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
/**
 * A ready worker that sent the primary nothing this long is hung (its event loop blocked for good: an
 * endless loop, a deadlocked native call) and is killed: with SO_REUSEPORT the kernel would go on dealing it
 * new connections nobody answers, and it would keep its agents' held polls forever. A ready worker speaks
 * every 0.5 s (its room, with SO_REUSEPORT) or every ALIVE_EVERY_MS (cluster.ts), from its event loop, so
 * silence is the loop's longest turn. The longest seen are of seconds, not tens of seconds: a
 * memory-reducing collection of a 200 MiB old space paused 0.5 s (docs/workers.md, Memory after bursts);
 * the longest stall on record is one just past read_header's 5 s, a worker of the 100,000-agent bench
 * taking thousands of reconnecting agents at once on a starved box (docs/compatibility.md, 408s after
 * restarts); a sweep's check-in bookkeeping batch of 16,000 agents is one loop over them in one turn
 * (bookkeeping.ts), then a write the loop does not wait on. A minute is ten times the worst of them, as
 * READY_TIMEOUT_MS is past a start, and still well inside a held poll's five minutes, so a hung worker's
 * agents are sent to the others before their own poll would time out.
 * Not configurable: a test moves a fake clock past it.
 */
export const SILENT_LIMIT_MS = 60_000;
/** How often the primary looks for silent workers; a look this much later than due judges nobody (below). */
export const WATCHDOG_EVERY_MS = 5_000;
/** A worker draining alone exits by itself this long after timeouts.drain (serve.ts): not killed for silence before. */
export const DRAIN_OWN_DEADLINE_MS = 5_000;

/** One worker slot's start history. */
export interface SlotRecord {
  index: number;
  backoff: Backoff;
  /** When its current worker said it was ready; undefined while it starts (or has no worker). */
  readyAt?: number;
  /** Starts in a row that ended before the worker was ready. */
  failedStarts: number;
  /** When its current worker last sent the primary anything (set from its ready on). */
  heardAt?: number;
  /** When its current worker said it closed its listeners (draining) outside the whole server's stop. */
  closedAt?: number;
  /** Its current worker was killed as hung: when it was last heard, the end of its useful life. */
  hungSince?: number;
}

export function slotRecord(index: number): SlotRecord {
  return { index, backoff: new Backoff({ initialMs: 500, maxMs: 30_000 }), failedStarts: 0 };
}

export function markReady(slot: SlotRecord, now: number): void {
  slot.readyAt = now;
  slot.heardAt = now;
  slot.failedStarts = 0;
}

/** `slot`'s worker is new, or gone: nothing heard of it, and it is neither draining nor hung. */
export function clearWorker(slot: SlotRecord): void {
  slot.heardAt = undefined;
  slot.closedAt = undefined;
  slot.hungSince = undefined;
}

/**
 * The primary's watchdog over its ready workers' silence (SILENT_LIMIT_MS). The whole server's stop is not
 * its business (its own deadline kills whoever overruns it); a worker stopped alone, draining, is left
 * to its own deadline first. A look that comes late means the primary's own loop was blocked (or the
 * wall clock jumped): its workers' messages may be waiting unread in their channels, so it judges nobody,
 * and the next look, after the primary has read them, does.
 */
export class SilenceWatch {
  private lastLook: number;

  constructor(now: number, private readonly drainMs: number) {
    this.lastLook = now;
  }

  /** Of the ready `slots`, those to kill as hung now (each marked, and returned once). */
  look<S extends SlotRecord>(slots: readonly S[], now: number): S[] {
    const late = now - this.lastLook > 2 * WATCHDOG_EVERY_MS;
    this.lastLook = now;
    if (late) return [];
    const hung = slots.filter((s) => s.readyAt !== undefined && s.heardAt !== undefined && s.hungSince === undefined
      && now - s.heardAt >= SILENT_LIMIT_MS
      && (s.closedAt === undefined || now - s.closedAt >= this.drainMs + DRAIN_OWN_DEADLINE_MS));
    for (const s of hung) s.hungSince = s.heardAt;
    return hung;
  }
}

export type AfterExit = { restartInMs: number } | { giveUp: string };

/**
 * What to do once `slot`'s worker exited, the server not stopping. `serving`: workers ready now (this one
 * no longer counted). Stability is measured from ready, not from the fork: a worker that took 9 s to start
 * and crashed 1 s later was not stable; nor was one that hung a second after its ready, though it was
 * killed for it a minute later (its life ended when it was last heard), so a worker that hangs at every
 * start is replaced at the growing pace of a crash loop. Giving up is only after a failed start, so a
 * serving worker that dies always gets its replacement's chance first.
 */
export function afterExit(slot: SlotRecord, slots: readonly SlotRecord[], serving: number, now: number): AfterExit {
  const readyAt = slot.readyAt;
  const end = slot.hungSince ?? now;
  slot.readyAt = undefined;
  clearWorker(slot);
  if (readyAt !== undefined && end - readyAt >= STABLE_MS) {
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
