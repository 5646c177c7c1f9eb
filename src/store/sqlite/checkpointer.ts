// WAL checkpoints without waiting for the disk on the event loop. SQLite's automatic checkpoint runs
// inside the COMMIT that takes the WAL past 1,000 pages and, with synchronous=NORMAL, fsyncs twice on
// the way (the WAL before copying its pages into the database, the database after): ~23 ms per 1,000
// pages on this machine, of which copying is ~2 ms. Under first check-ins that was a stall every few
// hundred milliseconds, and in a cluster every worker's writes waited behind it.
//
// Here the writer's connection never checkpoints on its own (wal_autocheckpoint=0, database.ts), and a
// cycle, started right after a COMMIT that wrote pages, does SQLite's steps in SQLite's order with the
// waits on the thread pool:
//   1. a second connection opens a read transaction (the pin): its snapshot is every frame committed so
//      far, and a checkpoint never copies past a reader's snapshot;
//   2. the WAL is flushed to disk (FileFlusher): every frame the pin sees is durable — what SQLite's
//      own sync before a checkpoint ensures;
//   3. a third connection, synchronous=OFF, runs a PASSIVE checkpoint: it copies those frames into the
//      database file (page-cache writes) and waits for nothing, not even the writer;
//   4. the database file is flushed to disk, and only then the pin is let go: while a reader holds a
//      WAL snapshot SQLite never rewrites the WAL from its start, so no frame is overwritten before its
//      copy is on disk — what SQLite's own sync after a checkpoint ensures.
// Under steady writes a cycle never catches up with the newest frames, and SQLite restarts the WAL only
// after a checkpoint has copied all of it; so once the WAL has grown past `restartFrames`, the writer's
// connection checkpoints itself once, right after a COMMIT (SQLite's own, syncing on the event loop —
// but nearly every page is copied and on disk already, so there is little to wait for), and the WAL is
// rewritten from its start again. Mirrors the pager's checkpoint in SQLite's wal.c.
import { DatabaseSync } from 'node:sqlite';

/** Flushes a file's data to disk off the event loop (errors.ts FileFlusher). */
export interface Flusher {
  flush(): Promise<void>;
}

export interface CheckpointerOptions {
  /** Least time between the end of one cycle and the start of the next (default 200 ms). */
  spacingMs?: number;
  /** WAL frames past which the writer checkpoints once itself so the WAL restarts (default 4,000: ~16 MiB). */
  restartFrames?: number;
  now?: () => number;
}

interface CheckpointResult {
  busy: number;
  /** Frames in the WAL. */
  log: number;
  /** Frames of it copied into the database. */
  checkpointed: number;
}

export class WalCheckpointer {
  private readonly pin: DatabaseSync;
  private readonly copier: DatabaseSync;
  private running: Promise<void> | undefined;
  private lastEndAt = Number.NEGATIVE_INFINITY;
  private restartDue = false;
  /** No more cycles: the store is closing, or a copy could not be flushed. */
  private stopped = false;
  /**
   * Set for good once a copy could not be flushed to disk and checkpoints stopped: the pin is held until
   * the writer has closed, and the WAL grows until the server restarts, so the store keeps this as its
   * write fault (healthy writes do not clear it).
   */
  stuckFault: string | undefined;
  private readonly spacingMs: number;
  private readonly restartFrames: number;
  private readonly now: () => number;
  /** Cycles run, and the writer's own catch-up checkpoints (for tests and the curious). */
  cycles = 0;
  catchUps = 0;

  constructor(
    path: string,
    private readonly writer: DatabaseSync,
    private readonly wal: Flusher,
    private readonly database: Flusher,
    private readonly onError: (err: unknown) => void,
    opts: CheckpointerOptions = {},
  ) {
    this.spacingMs = opts.spacingMs ?? 200;
    this.restartFrames = opts.restartFrames ?? 4000;
    this.now = opts.now ?? Date.now;
    this.pin = new DatabaseSync(path, { readOnly: true });
    let copier: DatabaseSync | undefined;
    try {
      // As the check-in readers: a reader waits only for the rare moments the WAL index is rebuilt.
      this.pin.exec('PRAGMA busy_timeout = 50');
      copier = new DatabaseSync(path);
      copier.exec('PRAGMA synchronous = OFF');
      copier.exec('PRAGMA wal_autocheckpoint = 0');
      copier.exec('PRAGMA busy_timeout = 0');
    } catch (err) {
      this.pin.close();
      copier?.close();
      throw err;
    }
    this.copier = copier;
  }

  /**
   * Right after the writer's COMMIT wrote pages, before anything else runs on it: some frames are not
   * yet copied (no other connection checkpoints while the server runs: wal_autocheckpoint=0 on all of
   * them, and this class is the server's), so the pin's snapshot is of the WAL, not of the database
   * alone — the cap that keeps the copy to frames already flushed. A snapshot of the database alone
   * would cap nothing (SQLite's read mark 0): hence "wrote pages", not merely "committed".
   */
  wrote(): void {
    if (this.stopped) return;
    if (this.restartDue && !this.running) {
      this.restartDue = false;
      this.catchUps++;
      try {
        this.writer.prepare('PRAGMA wal_checkpoint(PASSIVE)').get();
      } catch (err) {
        this.onError(err);
      }
      return;
    }
    if (this.running || this.now() - this.lastEndAt < this.spacingMs) return;
    try {
      this.pin.exec('BEGIN');
      this.pin.prepare('SELECT 1 FROM sqlite_schema LIMIT 1').get();
    } catch {
      // Busy for a moment (the WAL index being rebuilt): a later commit starts the cycle.
      this.endPin();
      return;
    }
    this.running = this.cycle().finally(() => {
      this.running = undefined;
      this.lastEndAt = this.now();
    });
  }

  /** Waits for a cycle under way. */
  async idle(): Promise<void> {
    await this.running;
  }

  /** Starts no more cycles and waits for one under way (before the store closes). */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
  }

  /**
   * Closes the connections around the writer's: after a failed database flush the pin is still held,
   * and closes only after the writer, which then cannot checkpoint on closing (it would need the
   * database to itself); the next open reads the whole WAL again.
   */
  close(closeWriter: () => void): void {
    if (this.copier.isOpen) this.copier.close();
    if (this.stuckFault === undefined && this.pin.isOpen) this.pin.close();
    closeWriter();
    if (this.pin.isOpen) this.pin.close();
  }

  private async cycle(): Promise<void> {
    this.cycles++;
    try {
      await this.wal.flush();
    } catch (err) {
      // Nothing copied: the frames stay in the WAL, and the writes that wait on this flush fail with it.
      this.endPin();
      this.onError(err);
      return;
    }
    let r: CheckpointResult;
    try {
      r = this.copier.prepare('PRAGMA wal_checkpoint(PASSIVE)').get() as unknown as CheckpointResult;
    } catch (err) {
      // A copy that failed (disk full, an I/O error writing the database file) counts no frame as copied:
      // SQLite moves the WAL's backfill mark only once every frame is written (walCheckpoint in wal.c), so
      // the WAL keeps them all and cannot start over past them. The next cycle copies them again; stopping
      // for good here left the WAL growing until a restart after the disk had room again.
      this.endPin();
      this.onError(err);
      return;
    }
    try {
      await this.database.flush();
    } catch (err) {
      // SQLite counts the frames as copied whether or not the copies reached the disk (this connection
      // does not sync); it would copy them no more, and a WAL started over would lose the only good copy.
      // So the pin is kept for good: the WAL never starts over in this process, and no more cycles run.
      this.stopped = true;
      const reason = err instanceof Error ? err.message : String(err);
      this.stuckFault = `checkpoints stopped after the database file failed to flush (${reason}); the WAL grows until the server restarts`;
      this.onError(err);
      return;
    }
    this.endPin();
    if (r.log >= this.restartFrames) this.restartDue = true;
  }

  private endPin(): void {
    try {
      if (this.pin.isTransaction) this.pin.exec('COMMIT');
    } catch {
      // A read transaction that cannot end ends when the connection closes.
    }
  }
}
