// Group commit for the embedded store. With synchronous=FULL every COMMIT waits for an fsync (0.7 ms
// on an idle disk, several on a busy one), on the event loop: one transaction per write capped first
// check-ins (key, secret, agent update: three commits) at a few hundred a second and stalled every held
// poll meanwhile. Writes made in one turn of the event loop now share one transaction, each in its own
// savepoint (a failing write undoes only itself). The COMMIT itself does not wait for the disk
// (synchronous=NORMAL: it only writes the WAL); the WAL is then flushed on the thread pool (`durable`),
// and only then are the turn's writes acknowledged — so an acknowledged write is durable, and the event
// loop never waits for the disk. While a flush is under way, the transaction stays open and takes every
// write until it ends: those writes could not be acknowledged before the next flush anyway, and one
// COMMIT for all of them writes each page they share (an index, a table's last page) to the WAL once.
// Under load a first check-in arrived about once per turn, so each had a COMMIT of its own.
// A COMMIT also starts at least COMMIT_GAP_MS after the one before: on a disk that flushes in ~0.2 ms a
// group was otherwise a write or two, and every COMMIT costs its WAL pages, a flush (a disk operation:
// cloud volumes cap them per second) and a checkpoint's share. A lone write after a quiet spell still
// commits in its own turn; under load the writes of the gap share one COMMIT. Measured at 30,000 agents on
// six workers, alternating (load 3-4): device flushes over the run 9,250 -> 3,570, first check-ins
// 1,561 / 1,988 / 1,928 -> 1,722 / 2,144 / 2,137 per second; a write waits at most the gap longer.
import type { DatabaseSync } from 'node:sqlite';
import { monotonicMs } from '../../util/clock';
import { ConflictError, StoreUnavailableError } from '../port';
import { isBusy } from './errors';

/** The writes of a group whose transaction SQLite rolled back under it: not made. */
function rolledBack(): StoreUnavailableError {
  return new StoreUnavailableError('SQLite rolled back the transaction of these writes after an error; they were not made',
    { clientMessage: 'the embedded store cannot be used: a write was rolled back' });
}

interface Waiter {
  resolve(): void;
  reject(err: unknown): void;
}

interface Group {
  waiters: Waiter[];
  changed: Set<string>;
  /** SQLite's total_changes() when the transaction began. */
  changesBefore: number;
  /** Changes made by writes that failed and were undone: total_changes() still counts them. */
  changesUndone: number;
}

export interface GroupCommitHooks {
  /** Maps a SQLite failure to the store's error (and records a write fault). */
  failed(err: unknown): unknown;
  /** SQLite's total_changes(): rows changed by this connection so far. */
  totalChanges(): number;
  /** After a commit: the tables written (for the change feeds), and whether any row changed. */
  committed(changed: Set<string>, rowsChanged: boolean): void;
  /** Makes what has been committed durable (flushes the WAL to disk), off the event loop. */
  durable(): Promise<void>;
  /**
   * After durable() failed: the error if it failed for good (FileFlusher's `lost`). The writes waiting
   * for the next commit are then undone and every later write fails with it, since no flush can make
   * them durable any more.
   */
  lost?(): unknown;
  /**
   * A flush has not ended within the stall bound (the fault to show), or the stalled flush ended
   * (undefined). Meanwhile writes fail at once (those waiting for the next commit too, undone) instead of
   * piling up behind a disk that does not answer.
   */
  stalled?(fault: string | undefined): void;
  /**
   * Right after a COMMIT that changed rows (kept ones: so it wrote pages to the WAL), before anything
   * else runs on the connection (checkpointer.ts).
   */
  wrote?(): void;
}

/** Least time from one COMMIT's start to the next (see the top of this file). */
export const COMMIT_GAP_MS = 5;

/**
 * A WAL flush not ended after this long is a stalled disk (a lost network volume, a failing device):
 * fdatasync takes milliseconds, a few hundred on a busy cloud volume.
 */
export const FLUSH_STALL_MS = 10_000;

/**
 * After BEGIN found the database locked by another process (its busy wait spent), writes fail at once for
 * this long. BEGIN waits on the event loop: each write trying again had it wait the whole busy timeout
 * once more, so a lock held elsewhere (a stuck `sqlite3` shell, a backup tool) stalled every request
 * the server had, a busy timeout per write.
 */
export const LOCKED_RETRY_MS = 1000;

export interface GroupCommitOptions {
  /** Least time from one COMMIT's start to the next (default COMMIT_GAP_MS). */
  gapMs?: number;
  /** How long writes fail at once after BEGIN found the database locked (default LOCKED_RETRY_MS). */
  lockedRetryMs?: number;
  /** How long a flush may take before it counts as stalled (default FLUSH_STALL_MS). */
  stallMs?: number;
  /** A monotonic clock in milliseconds (tests). */
  now?: () => number;
}

export class GroupCommit {
  private group: Group | undefined;
  /** A committed group's flush is under way: the open group commits when it ends. */
  private flushing = false;
  private lastCommitAt = Number.NEGATIVE_INFINITY;
  private timer: NodeJS.Timeout | undefined;
  private readonly gapMs: number;
  private readonly now: () => number;
  /** Why writes can no longer be made durable (hooks.lost), once they cannot. */
  private broken: unknown;
  private readonly stallMs: number;
  /** Set while the flush under way has outlasted stallMs: the error new writes fail with. */
  private stall: StoreUnavailableError | undefined;
  private readonly lockedRetryMs: number;
  /** The error of a BEGIN that found the database locked, and until when writes fail with it at once. */
  private locked: { error: unknown; until: number } | undefined;

  constructor(private readonly db: DatabaseSync, private readonly hooks: GroupCommitHooks, opts: GroupCommitOptions = {}) {
    this.gapMs = opts.gapMs ?? COMMIT_GAP_MS;
    this.stallMs = opts.stallMs ?? FLUSH_STALL_MS;
    this.lockedRetryMs = opts.lockedRetryMs ?? LOCKED_RETRY_MS;
    this.now = opts.now ?? monotonicMs;
  }

  /** Runs fn now, inside the turn's transaction; resolves with its result once that has committed. */
  write<T>(fn: () => T, changed: readonly string[] = []): Promise<T> {
    if (this.broken !== undefined) return Promise.reject(this.broken);
    if (this.stall) return Promise.reject(this.stall);
    if (this.locked && this.now() < this.locked.until) return Promise.reject(this.locked.error);
    let g: Group;
    try {
      g = this.open();
    } catch (err) {
      const e = this.hooks.failed(err);
      if (isBusy(err)) this.locked = { error: e, until: this.now() + this.lockedRetryMs };
      return Promise.reject(e);
    }
    let out: T;
    const changesAtStart = this.hooks.totalChanges();
    try {
      this.db.exec('SAVEPOINT w');
      out = fn();
      this.db.exec('RELEASE w');
    } catch (err) {
      const e = this.hooks.failed(err);
      g.changesUndone += this.hooks.totalChanges() - changesAtStart;
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
      // A write refused by its own condition (ConflictError) was decided on the group's writes, which are
      // not durable, nor visible to other connections, until it commits: answered then, the writer reads
      // what refused it anywhere (a worker reads through a connection of its own), or learns that it failed.
      if (e instanceof ConflictError && this.group === g) {
        return new Promise<T>((_resolve, reject) => g.waiters.push({ resolve: () => reject(e), reject }));
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
    // SQLite rolls a transaction back by itself after some errors (I/O, disk full, out of memory), also
    // those of a read made on this connection; the group's writes are gone, and a write made now would
    // run and commit alone, outside any group.
    if (this.group && !this.db.isTransaction) this.abort(this.group, this.hooks.failed(rolledBack()));
    if (this.group) return this.group;
    // BEGIN IMMEDIATE takes the write lock up front, avoiding upgrade deadlocks with another process.
    this.db.exec('BEGIN IMMEDIATE');
    const g: Group = { waiters: [], changed: new Set(), changesBefore: this.hooks.totalChanges(), changesUndone: 0 };
    this.group = g;
    if (!this.flushing) this.schedule(g);
    return g;
  }

  private commit(g: Group): void {
    if (this.group !== g) return;
    this.group = undefined;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.lastCommitAt = this.now();
    if (!this.db.isOpen) {
      // A write that came in while the store was closing, after its last flush(): it fails, never hangs.
      const e = this.hooks.failed(new Error('the database was closed before this write committed'));
      for (const w of g.waiters) w.reject(e);
      return;
    }
    if (!this.db.isTransaction) {
      const e = this.hooks.failed(rolledBack());
      for (const w of g.waiters) w.reject(e);
      return;
    }
    try {
      this.db.exec('COMMIT');
    } catch (err) {
      this.rollback();
      const e = this.hooks.failed(err);
      for (const w of g.waiters) w.reject(e);
      return;
    }
    // Rows that stayed changed: the COMMIT wrote pages to the WAL (what the checkpointer relies on).
    const rowsChanged = this.hooks.totalChanges() - g.changesUndone > g.changesBefore;
    if (rowsChanged) this.hooks.wrote?.();
    this.flushing = true;
    const watch = setTimeout(() => {
      this.stall = new StoreUnavailableError(`the write-ahead log has not finished flushing to disk for ${this.stallMs / 1000} s; writes are refused until it does`,
        { clientMessage: 'the embedded store cannot be used: the disk is not responding' });
      this.hooks.stalled?.(this.stall.message);
      // The writes waiting for the next commit would wait on the same disk: they fail now, undone.
      if (this.group) this.abort(this.group, this.stall);
    }, this.stallMs);
    watch.unref();
    const ended = (): void => {
      clearTimeout(watch);
      if (!this.stall) return;
      this.stall = undefined;
      this.hooks.stalled?.(undefined);
    };
    this.hooks.durable().then(() => {
      ended();
      this.flushed();
      this.hooks.committed(g.changed, rowsChanged);
      for (const w of g.waiters) w.resolve();
    }, (err: unknown) => {
      ended();
      const lost = this.hooks.lost?.();
      const e = this.hooks.failed(lost ?? err);
      if (lost === undefined) {
        this.flushed();
      } else {
        this.broken = e;
        this.flushing = false;
        if (this.group) this.abort(this.group, e);
      }
      for (const w of g.waiters) w.reject(e);
    });
  }

  /** The writes that came in during the flush commit next, in a turn of their own (more may join it). */
  private flushed(): void {
    this.flushing = false;
    const next = this.group;
    if (next) this.schedule(next);
  }

  private schedule(g: Group): void {
    const wait = this.lastCommitAt + this.gapMs - this.now();
    if (wait > 0) this.timer = setTimeout(() => this.commit(g), wait);
    else setImmediate(() => this.commit(g));
  }

  private abort(g: Group, err: unknown): void {
    if (this.group === g) {
      this.group = undefined;
      clearTimeout(this.timer);
      this.timer = undefined;
    }
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
