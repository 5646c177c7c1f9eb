// Exponential backoff with jitter, as upstream's Elasticsearch client retries: start, double up to a
// cap, each wait randomised by ±50 % so that many instances do not retry in step.
export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
}

export class Backoff {
  private attempt = 0;

  constructor(private readonly opts: BackoffOptions = { initialMs: 500, maxMs: 10_000 }) {}

  /** The next wait. */
  next(): number {
    const base = Math.min(this.opts.maxMs, this.opts.initialMs * 2 ** this.attempt++);
    return Math.round(base * (0.5 + Math.random()));
  }

  reset(): void {
    this.attempt = 0;
  }

  get attempts(): number {
    return this.attempt;
  }
}

/** Sleeps `ms`, or less when `signal` aborts. The timer keeps the process alive: a CLI retrying must not exit mid-way. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
