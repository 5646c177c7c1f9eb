// Gives back the memory a burst leaves behind. After enrollments, first check-ins or a rollout, V8 keeps
// the old-space pages it grew into: a cluster worker holding 10,000 polls had 198 MiB of old space for
// 87 MiB of live objects (a forced ordinary full GC changed little: 150 MiB) and 556 MiB of RSS. A
// memory-reducing collection (V8's "last resort" flavour, as under memory pressure: compacting, returning
// free pages, and finalising the native objects of dead wrappers so malloc can hand their pages back)
// brought it to 87 MiB of old space and 323 MiB of RSS, in a 0.5 s pause. V8's own memory reducer waits
// for an idle process, which a server holding thousands of polls never is. So: when old space holds much
// more than it uses and has stopped growing (the burst is over: V8 holds no more old space than at the
// last look), collect once that way; at most once every 30 s, less often while collections give little back.
// The young generation too: a burst grows it to its maximum (two 16 MiB semi-spaces with the shipped
// --max-semi-space-size=16), and V8 shrinks it only in a memory-reducing collection — an ordinary full
// one leaves it. A process holding 10,000 polls kept 32 MiB of it committed for ~14 MiB of objects
// (3 KiB per held agent; seven such processes at 100,000 agents, 2 KiB). So a grown young generation
// is a reason to collect that way as well, once the burst is over. Old space alone does not tell that
// (an enrollment burst allocates mostly short-lived objects: old space barely grows while the young
// generation is at its peak, and collecting then only made V8 grow it again; 100,000 agents polling at
// once had workers pausing 0.6 s mid-wave), so for either reason the event loop must also have been
// mostly idle since the last look, as V8's own memory reducer waits for an idle isolate. If the young
// generation is grown again at the next look, the load itself needs it and the next such collection
// waits twice as long.
// Old space V8 has already shrunk by itself is a reason too. An ordinary full collection gives the pages
// it no longer needs to V8's page pool, not to the system: old space looks small again, but the pages
// stay in RSS until a memory-reducing collection releases the pool. The primary applying a batch of
// 10,000 check-ins with changed components (after a rollout) grew old space to 48 MiB; V8 brought it back
// to 19 MiB within seconds, and RSS stayed 40 MiB above where a memory-reducing collection took it (113
// against 73 MiB). So the largest heap held since the last collection is kept, and a drop from it as big
// as free old space would have to be counts as free.
// Once after start-up too: loading and compiling the program leaves garbage and a grown young generation
// that no collection reclaims in a process that then sits idle (V8's memory reducer starts only after a
// full collection, and start-up makes none): ~3.5 MiB of RSS in every process, the primary and each worker.
import type { EventLoopUtilization, Performance } from 'node:perf_hooks';
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import type { Logger } from 'pino';
import { monotonicMs } from '../util/clock';

type GcOptions = { type: 'major'; execution: 'sync'; flavor: 'last-resort' };
type Gc = (options?: GcOptions) => void;

/** One look at the heap: old space, the young generation, and how busy the event loop has been. */
export interface HeapLook {
  /** Bytes V8 holds for old space. */
  size: number;
  /** Bytes of it in use (live, or garbage not yet collected). */
  used: number;
  /** Bytes the young generation (new space) holds, committed. */
  young?: number;
  /** The event loop's utilisation since the last look (0–1); read only when the rest calls for a collection. */
  busy?: number;
}

export interface TrimPolicy {
  /** Free old space worth a collection: this many bytes, and this share of what is used. */
  minFreeBytes: number;
  minFreeShare: number;
  /** Old space that grew by more than this share since the last look is still in a burst. */
  growingShare: number;
  /** A young generation holding at least this much committed is worth a collection (default 8 MiB). */
  minYoungBytes?: number;
  /** Collect only if the event loop was busy at most this share of the time since the last look (default 0.25). */
  quietShare?: number;
  /** At most one collection this often; doubled (up to maxSpacingMs) after one that gave back little. */
  spacingMs: number;
  maxSpacingMs: number;
  /**
   * The start-up collection is made only while old space is at most this big (default 32 MiB): a bigger
   * one is already serving a burst, whose pause is the burst rule's to weigh.
   */
  startupMaxBytes?: number;
}

/**
 * 30 s between collections: a worker whose event loop waits on the primary's writes looks quiet in the
 * middle of first check-ins and may collect there; with a minute between collections, one made as the
 * first check-ins ended kept that worker from collecting after the polling wave that followed (100,000
 * agents: 434 MiB held against its siblings' 359–368).
 */
export const DEFAULT_TRIM: TrimPolicy = {
  minFreeBytes: 16 * 1024 * 1024, minFreeShare: 0.25, growingShare: 0.05, spacingMs: 30_000, maxSpacingMs: 30 * 60_000,
};

/** Decides, from two looks at old space, whether to collect now. Pure: the timer and V8 are the caller's. */
export class TrimDecider {
  private previousUsed: number | undefined;
  private previousSize: number | undefined;
  private lastTrimAt = Number.NEGATIVE_INFINITY;
  private startupPending = true;
  private spacingMs: number;
  /** The last collection was for a grown young generation: see whether it stays small. */
  private youngTrimmed = false;
  /** The most old space and young generation held at a look since the last collection (see the top). */
  private peakHeld = 0;

  constructor(private readonly policy: TrimPolicy = DEFAULT_TRIM) {
    this.spacingMs = policy.spacingMs;
  }

  /**
   * What a collection gave back. One that gave back little (the free space was not fragmentation a
   * compaction removes) makes the next wait twice as long, so a steady server does not pause for nothing.
   */
  trimmed(freedBytes: number): void {
    this.spacingMs = freedBytes >= this.policy.minFreeBytes ? this.policy.spacingMs : Math.min(this.spacingMs * 2, this.policy.maxSpacingMs);
  }

  /**
   * Whether start-up is over and its leftovers are worth one collection: true once, at the first look
   * at which old space has stopped growing, if it is still start-up sized. Asked before shouldTrim,
   * which moves the previous look on.
   */
  startupSettled(space: HeapLook): boolean {
    const previous = this.previousUsed;
    if (!this.startupPending || previous === undefined || space.used > previous * (1 + this.policy.growingShare)) return false;
    this.startupPending = false;
    return space.size <= (this.policy.startupMaxBytes ?? 32 * 1024 * 1024);
  }

  shouldTrim(space: HeapLook, now: number): boolean {
    const previous = this.previousSize;
    this.previousUsed = space.used;
    this.previousSize = space.size;
    const youngGrown = (space.young ?? 0) >= (this.policy.minYoungBytes ?? 8 * 1024 * 1024);
    const held = space.size + (space.young ?? 0);
    this.peakHeld = Math.max(this.peakHeld, held);
    if (this.youngTrimmed) {
      // Grown again since: the load keeps it so, and the next collection for it is worth less.
      this.youngTrimmed = false;
      if (youngGrown) this.trimmed(0);
    }
    if (now - this.lastTrimAt < this.spacingMs) return false;
    const free = space.size - space.used;
    const worthFreeing = (bytes: number): boolean => bytes >= this.policy.minFreeBytes && bytes >= space.used * this.policy.minFreeShare;
    const oldWorth = worthFreeing(free);
    const pooledWorth = worthFreeing(this.peakHeld - held);
    if (!oldWorth && !youngGrown && !pooledWorth) return false;
    // Still busy (an enrollment burst barely grows old space; a reconnect wave does not either): a
    // collection now would pause the burst and be undone by it.
    if ((space.busy ?? 0) > (this.policy.quietShare ?? 0.25)) return false;
    // Still growing: collecting now would be undone by the next second of the burst. Judged by the old
    // space V8 holds, not by what is used of it: used space also grows with garbage awaiting the next full
    // collection, which after a burst may be minutes away — at 100,000 agents the workers' used space
    // crept up >5 % per look for 35 s after all polls were held, and none collected before then.
    if (previous === undefined || space.size > previous * (1 + this.policy.growingShare)) return false;
    this.lastTrimAt = now;
    this.youngTrimmed = !oldWorth && !pooledWorth;
    this.peakHeld = 0;
    return true;
  }
}

/**
 * The event loop's utilisation from one look to the next. perf_hooks is loaded at the first question,
 * which only a process with a heap worth collecting asks: Node's whole performance-timeline API comes
 * with it (util/clock.ts), which an idle process would then keep. The first question has no
 * look before it to measure from (the loop's whole life would call a burst after an idle hour quiet), so
 * its answer is "busy": the collection waits a look, and the next answer covers that look's interval.
 */
export class LoopMeter {
  private perf: Performance | undefined;
  private last: EventLoopUtilization | undefined;

  sinceLast(): number {
    this.perf ??= (require('node:perf_hooks') as typeof import('node:perf_hooks')).performance;
    const now = this.perf.eventLoopUtilization();
    const busy = this.last === undefined ? 1 : this.perf.eventLoopUtilization(now, this.last).utilization;
    this.last = now;
    return busy;
  }

  /** A look that did not ask: the next answer starts from here (once the meter runs). */
  skip(): void {
    if (this.perf) this.last = this.perf.eventLoopUtilization();
  }
}

function heapLook(): HeapLook {
  const spaces = getHeapSpaceStatistics();
  const s = spaces.find((x) => x.space_name === 'old_space');
  const young = spaces.find((x) => x.space_name === 'new_space');
  return { size: s?.space_size ?? 0, used: s?.space_used_size ?? 0, young: young?.physical_space_size ?? 0 };
}

/**
 * V8's gc(): the one --expose-gc gives, else one made for this (the flag read when a context is created).
 * A made one holds a V8 context (~0.7 MiB): it is made for each collection and let go after it.
 */
export function gcFunction(): Gc | undefined {
  const exposed = (globalThis as { gc?: Gc }).gc;
  if (typeof exposed === 'function') return exposed;
  try {
    setFlagsFromString('--expose-gc');
    const { runInNewContext } = require('node:vm') as typeof import('node:vm');
    const made = runInNewContext('gc') as unknown;
    return typeof made === 'function' ? (made as Gc) : undefined;
  } catch {
    return undefined;
  }
}

/** How often the trim looks at the heap. */
export const TRIM_EVERY_MS = 10_000;

/**
 * Looks at the heap every `everyMs` and trims it when the decider says so. Returns the stop function.
 * The looks keep to a grid of the wall clock shifted by `phaseMs`: cluster workers would otherwise look
 * in the same second and, quiet together after a wave, all pause for their collections at once (six
 * workers, 0.8–1.1 s each, measured at 100,000 agents), so each worker takes its own share of the
 * interval. A grid rather than an interval timer: a wave that keeps every event loop busy makes their
 * timers fire late together, and an interval would then start them all again from the same moment.
 */
export function startMemoryTrim(log: Logger, everyMs = TRIM_EVERY_MS, decider = new TrimDecider(), phaseMs = 0): () => void {
  const loop = new LoopMeter();
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const look = (): void => {
    let busy: number | undefined;
    const before: HeapLook = { ...heapLook(), get busy() { return (busy ??= loop.sinceLast()); } };
    const startup = decider.startupSettled(before);
    const burst = decider.shouldTrim(before, Date.now());
    if (busy === undefined) loop.skip();
    if (!startup && !burst) return;
    const gc = gcFunction();
    if (!gc) {
      log.debug('memory trim unavailable (no gc function)');
      stopped = true;
      return;
    }
    const rss = process.memoryUsage.rss();
    const t0 = monotonicMs();
    gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
    const after = heapLook();
    const fields = {
      'memory.old_space.before': before.size, 'memory.old_space.after': after.size, 'memory.old_space.used': after.used,
      'memory.new_space.before': before.young, 'memory.new_space.after': after.young, 'event_loop.utilization': busy === undefined ? undefined : Number(busy.toFixed(2)),
      'memory.rss.before': rss, 'memory.rss.after': process.memoryUsage.rss(), 'gc.pause_ms': Math.round(monotonicMs() - t0),
    };
    if (!burst) {
      log.debug(fields, 'memory trimmed after start-up');
      return;
    }
    // What the heap gave back, or the system got back: pages of old space V8 had already shrunk (pooled)
    // show only in RSS.
    decider.trimmed(Math.max(before.size - after.size + (before.young ?? 0) - (after.young ?? 0), rss - fields['memory.rss.after']));
    log.info(fields, 'memory trimmed after a burst');
  };
  const schedule = (): void => {
    timer = setTimeout(() => {
      look();
      if (!stopped) schedule();
    }, nextLookInMs(Date.now(), everyMs, phaseMs));
    timer.unref();
  };
  schedule();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

/** Time from `now` to the next point of the grid every `everyMs`, shifted by `phaseMs` (never 0: a look just made waits a whole interval). */
export function nextLookInMs(now: number, everyMs: number, phaseMs: number): number {
  const into = (((now - phaseMs) % everyMs) + everyMs) % everyMs;
  return everyMs - into;
}

/** A cluster worker's share of the trim interval: slots 1..size spread evenly over it. */
export function trimPhaseMs(slot: number, size: number, everyMs = TRIM_EVERY_MS): number {
  return size > 1 ? Math.floor((everyMs * ((slot - 1) % size)) / size) : 0;
}
