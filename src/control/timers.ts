// The timers agent mode arms (a failed server's restart, the bootstrap output's re-test), behind a seam
// so that tests move them by hand instead of sleeping.

export interface Timers {
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

/** Unref'd: a pending retry must not keep a process that is otherwise done alive. */
export const realTimers: Timers = {
  set: (fn, ms) => setTimeout(fn, ms).unref(),
  clear: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** Upstream's agent-mode `Run` loop re-runs a server that failed 2 s later. */
export const RESTART_FIRST_MS = 2_000;
/**
 * Upstream retries every 2 s for ever; a fault that lasts (a port taken by another process, a missing
 * certificate) would then log an error and flap STARTING/FAILED every 2 s. The wait doubles up to this.
 */
export const RESTART_MAX_MS = 30_000;

/**
 * One pending retry at most, with a growing wait: arming again replaces the pending one, `cancel` drops
 * it, `reset` (a start that succeeded, a new configuration) also returns the wait to its first value.
 * A retry that fired is `due` until taken, so that whoever acts first (the retry, or a change queued
 * before it) spends it.
 */
export class RetryTimer {
  private handle: unknown;
  private armed = false;
  private due = false;
  private nextMs: number;

  constructor(private readonly timers: Timers, private readonly firstMs = RESTART_FIRST_MS, private readonly maxMs = RESTART_MAX_MS) {
    this.nextMs = firstMs;
  }

  get pending(): boolean {
    return this.armed;
  }

  /** Whether a retry fired and was not taken yet; taking it clears it. */
  takeDue(): boolean {
    const due = this.due;
    this.due = false;
    return due;
  }

  /** Runs `fn` after the current wait; returns that wait. */
  arm(fn: () => void): number {
    this.cancel();
    const ms = this.nextMs;
    this.nextMs = Math.min(ms * 2, this.maxMs);
    this.armed = true;
    this.handle = this.timers.set(() => {
      this.armed = false;
      this.handle = undefined;
      this.due = true;
      fn();
    }, ms);
    return ms;
  }

  cancel(): void {
    if (this.armed) this.timers.clear(this.handle);
    this.armed = false;
    this.due = false;
    this.handle = undefined;
  }

  reset(): void {
    this.cancel();
    this.nextMs = this.firstMs;
  }
}
