// Group commit for the embedded store. With synchronous=FULL every COMMIT waits for an fsync (~0.7 ms
// here), on the event loop: one transaction per write capped first check-ins (key, secret, agent
// update: three commits) at a few hundred a second and stalled every held poll meanwhile. Writes made in
// one turn of the event loop now share one transaction, each in its own savepoint (a failing write
// undoes only itself), and all of them are acknowledged once that transaction has committed — so an
// acknowledged write is still durable, and a busy turn costs one fsync instead of hundreds.
import type { DatabaseSync } from 'node:sqlite';

interface Waiter {
  resolve(): void;
  reject(err: unknown): void;
}

interface Group {
  waiters: Waiter[];
  changed: Set<string>;
  /** SQLite's total_changes() when the transaction began. */
  changesBefore: number;
}

export interface GroupCommitHooks {
  /** Maps a SQLite failure to the store's error (and records a write fault). */
  failed(err: unknown): unknown;
  /** SQLite's total_changes(): rows changed by this connection so far. */
  totalChanges(): number;
  /** After a commit: the tables written (for the change feeds), and whether any row changed. */
  committed(changed: Set<string>, rowsChanged: boolean): void;
}

/** The longest a write waits for its group to fill (the commit it waits for takes about as long). */
const MAX_GATHER_MS = 10;

export class GroupCommit {
  private group: Group | undefined;
  /** How long the last COMMIT took: while the disk is slow, groups gather for as long, and grow. */
  private lastCommitMs = 0;

  constructor(private readonly db: DatabaseSync, private readonly hooks: GroupCommitHooks) {}

  /** Runs fn now, inside the turn's transaction; resolves with its result once that has committed. */
  write<T>(fn: () => T, changed: readonly string[] = []): Promise<T> {
    let g: Group;
    try {
      g = this.open();
    } catch (err) {
      return Promise.reject(this.hooks.failed(err));
    }
    let out: T;
    try {
      this.db.exec('SAVEPOINT w');
      out = fn();
      this.db.exec('RELEASE w');
    } catch (err) {
      const e = this.hooks.failed(err);
      if (this.db.isTransaction) {
        try {
          this.db.exec('ROLLBACK TO w');
          this.db.exec('RELEASE w');
        } catch {
          this.abort(g, e);
        }
      } else {
        // SQLite rolled the whole transaction back (I/O error, disk full): the turn's other writes are gone too.
        this.abort(g, e);
      }
      return Promise.reject(e);
    }
    for (const t of changed) g.changed.add(t);
    return new Promise<T>((resolve, reject) => g.waiters.push({ resolve: () => resolve(out), reject }));
  }

  /** Commits what is pending now (before closing the database). */
  flush(): void {
    if (this.group) this.commit(this.group);
  }

  private open(): Group {
    if (this.group) return this.group;
    // BEGIN IMMEDIATE takes the write lock up front, avoiding upgrade deadlocks with another process.
    this.db.exec('BEGIN IMMEDIATE');
    const g: Group = { waiters: [], changed: new Set(), changesBefore: this.hooks.totalChanges() };
    this.group = g;
    // An fsync that takes milliseconds (a busy disk) blocks the event loop that long per commit: gathering
    // writes for about as long makes each commit carry more, so the time spent committing stays a
    // bounded share of the loop. A fast disk commits after the turn, as before.
    const gather = Math.min(MAX_GATHER_MS, Math.floor(this.lastCommitMs));
    if (gather < 1) setImmediate(() => this.commit(g));
    else setTimeout(() => this.commit(g), gather);
    return g;
  }

  private commit(g: Group): void {
    if (this.group !== g) return;
    this.group = undefined;
    const started = performance.now();
    try {
      this.db.exec('COMMIT');
      this.lastCommitMs = performance.now() - started;
    } catch (err) {
      this.rollback();
      const e = this.hooks.failed(err);
      for (const w of g.waiters) w.reject(e);
      return;
    }
    this.hooks.committed(g.changed, this.hooks.totalChanges() > g.changesBefore);
    for (const w of g.waiters) w.resolve();
  }

  private abort(g: Group, err: unknown): void {
    if (this.group === g) this.group = undefined;
    this.rollback();
    for (const w of g.waiters) w.reject(err);
    g.waiters.length = 0;
  }

  private rollback(): void {
    if (!this.db.isTransaction) return;
    try {
      this.db.exec('ROLLBACK');
    } catch {
      // Already rolled back by SQLite; the first error is the one reported.
    }
  }
}
