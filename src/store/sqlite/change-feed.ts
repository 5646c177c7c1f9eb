// Change notification for the embedded store. Writes in this process wake waiters at once; writes by
// other processes (the admin CLI) are noticed through PRAGMA data_version, polled on one timer for the
// whole store, so a held agent costs a waiter in memory, never a query.
import type { DatabaseSync } from 'node:sqlite';
import type { Hit } from '../documents';
import type { ChangeFeed } from '../port';

const POLL_MS = 250;

export class ChangeWatcher {
  private version: number;
  private readonly listeners = new Map<() => void, string>();
  private timer: NodeJS.Timeout | undefined;

  private polling = false;

  /**
   * `external`: runs when another process's write is noticed, before anyone is told, and again at each
   * poll while `behind` says an earlier run could not finish.
   */
  constructor(private readonly db: DatabaseSync, private readonly external: () => Promise<void> = async () => undefined,
    private readonly behind: () => boolean = () => false) {
    this.version = this.dataVersion();
  }

  private dataVersion(): number {
    return Number((this.db.prepare('PRAGMA data_version').get() as { data_version: number }).data_version);
  }

  /** fn runs after a write to `table` in this process, or any write by another process. */
  subscribe(table: string, fn: () => void): () => void {
    this.listeners.set(fn, table);
    if (!this.timer) {
      this.timer = setInterval(() => this.poll(), POLL_MS);
      this.timer.unref();
    }
    return () => {
      this.listeners.delete(fn);
      if (this.listeners.size === 0 && this.timer) {
        clearInterval(this.timer);
        this.timer = undefined;
      }
    };
  }

  private poll(): void {
    if (this.polling) return;
    let v: number;
    try {
      v = this.dataVersion();
    } catch {
      return; // database closed
    }
    if (v === this.version && !this.behind()) return;
    this.polling = true;
    this.external().then(() => {
      this.polling = false;
      this.version = v;
      this.notify();
    }, () => {
      this.polling = false; // the version is kept: tried again at the next poll
    });
  }

  /** Called after a local write commits; without a table, everyone is told. */
  notify(tables?: readonly string[]): void {
    for (const [fn, table] of [...this.listeners]) if (!tables || tables.includes(table)) fn();
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.listeners.clear();
  }
}

export class SqliteChangeFeed<T> implements ChangeFeed<T> {
  constructor(
    private readonly watcher: ChangeWatcher,
    private readonly table: string,
    private readonly maxSeq: () => number,
    private readonly since: (after: number, upTo: number) => Hit<T>[],
  ) {}

  async checkpoint(): Promise<number> {
    return this.maxSeq();
  }

  next(after: number, timeoutMs: number, signal: AbortSignal): Promise<{ checkpoint: number; hits: Hit<T>[] }> {
    const ready = (): { checkpoint: number; hits: Hit<T>[] } | undefined => {
      const cp = this.maxSeq();
      return cp > after ? { checkpoint: cp, hits: this.since(after, cp) } : undefined;
    };
    const now = ready();
    if (now) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      let unsubscribe = (): void => {};
      const finish = (value?: { checkpoint: number; hits: Hit<T>[] }, err?: unknown): void => {
        clearTimeout(timer);
        unsubscribe();
        signal.removeEventListener('abort', onAbort);
        if (err !== undefined) reject(err);
        else resolve(value ?? { checkpoint: after, hits: [] });
      };
      const onAbort = (): void => finish(undefined, signal.reason);
      const timer = setTimeout(() => finish(), timeoutMs);
      unsubscribe = this.watcher.subscribe(this.table, () => {
        try {
          const r = ready();
          if (r) finish(r);
        } catch (err) {
          finish(undefined, err);
        }
      });
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }
}
