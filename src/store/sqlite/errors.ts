// SQLite failures as the store port names them: a database that cannot take a write (disk full, I/O
// error, read-only, cannot open, locked) is unavailable — agents are told 503 and retry — never a
// request error. The message names the cause and the file, for the operator reading the log; agents
// are told the cause only.
import type { SQLInputValue, StatementSync } from 'node:sqlite';
import { StoreUnavailableError } from '../port';
import { close, fdatasync, fsync, open } from 'node:fs';
import { dirname } from 'node:path';

const SQLITE_BUSY = 5;
const SQLITE_LOCKED = 6;
const SQLITE_READONLY = 8;
const SQLITE_IOERR = 10;
const SQLITE_CORRUPT = 11;
const SQLITE_FULL = 13;
const SQLITE_CANTOPEN = 14;
const SQLITE_NOTADB = 26;

const UNAVAILABLE: ReadonlyMap<number, string> = new Map([
  [SQLITE_BUSY, 'database is locked'],
  [SQLITE_LOCKED, 'database table is locked'],
  [SQLITE_READONLY, 'attempt to write a readonly database'],
  [SQLITE_IOERR, 'disk I/O error'],
  [SQLITE_CORRUPT, 'database disk image is malformed'],
  [SQLITE_FULL, 'database or disk is full'],
  [SQLITE_CANTOPEN, 'unable to open database file'],
  [SQLITE_NOTADB, 'file is not a database'],
]);

interface SqliteError {
  code: 'ERR_SQLITE_ERROR';
  errcode: number;
  errstr?: string;
}

function sqliteCode(err: unknown): number | undefined {
  const e = err as Partial<SqliteError> | null;
  return e && e.code === 'ERR_SQLITE_ERROR' && typeof e.errcode === 'number' ? e.errcode & 0xff : undefined;
}

/** Another connection holds the lock. */
export function isBusy(err: unknown): boolean {
  return sqliteCode(err) === SQLITE_BUSY;
}

/** The primary result code names a damaged file (not a transient condition). */
export function isCorruption(err: unknown): boolean {
  const code = sqliteCode(err);
  return code === SQLITE_CORRUPT || code === SQLITE_NOTADB;
}

/** A StoreUnavailableError naming the cause and the file, or the error unchanged when it is not one of those. */
export function storeError(err: unknown, path: string): unknown {
  const code = sqliteCode(err);
  const cause = code === undefined ? undefined : UNAVAILABLE.get(code);
  if (!cause) return err;
  // The client learns what is wrong, not where the database lives.
  return new StoreUnavailableError(`${(err as SqliteError).errstr || cause}: ${path}`, { cause: err, clientMessage: `the embedded store cannot be used: ${cause}` });
}

/** The statement calls the store makes. */
export type Statement = Pick<StatementSync, 'get' | 'all' | 'run'>;

/**
 * A statement whose failures are classified here, reads included: a failing disk or a damaged page
 * fails a read as surely as a write, and agents are told 503, not 500.
 */
export function guarded(st: Statement, path: string): Statement {
  const call = <R>(fn: () => R): R => {
    try {
      return fn();
    } catch (err) {
      throw storeError(err, path);
    }
  };
  // Positional parameters only, as the store binds them.
  type Params = SQLInputValue[];
  return {
    get: (...args: Params) => call(() => st.get(...args)),
    all: (...args: Params) => call(() => st.all(...args)),
    run: (...args: Params) => call(() => st.run(...args)),
  } as Statement;
}

/** File-system faults under the chunk files (blobs.ts) that mean the store cannot work, as SQLite's above. */
const FS_UNAVAILABLE: ReadonlyMap<string, string> = new Map([
  ['ENOSPC', 'no space left on device'],
  ['EDQUOT', 'disk quota exceeded'],
  ['EIO', 'disk I/O error'],
  ['EROFS', 'read-only file system'],
  ['EACCES', 'permission denied'],
  ['EPERM', 'operation not permitted'],
  ['EMFILE', 'too many open files'],
  ['ENFILE', 'too many open files'],
]);

/** A StoreUnavailableError for a file-system fault (the operator's message names the file), or the error unchanged. */
export function fileError(err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  const cause = code === undefined ? undefined : FS_UNAVAILABLE.get(code);
  if (!cause) return err;
  return new StoreUnavailableError((err as Error).message, { cause: err, clientMessage: `the embedded store cannot be used: ${cause}` });
}

/**
 * Flushes a file's data to disk (the WAL after group commits) on the thread pool, through one
 * descriptor kept open; calls made while a flush runs share the next one. A disk fault is
 * StoreUnavailableError. Through node:fs's callbacks, not a FileHandle: node:fs/promises would be
 * loaded by the first write of every process that writes (util/fs-async.ts says what it costs).
 *
 * A failed fdatasync is final (`lost`): Linux reports a write-back error once and may have dropped the
 * pages it could not write, so a later flush can succeed without them, and SQLite's recovery stops at
 * the first damaged WAL frame, taking every later commit with it. PostgreSQL stops for the same reason
 * ("fsyncgate", 2018). Every flush after it fails, and the store refuses writes until a restart.
 */
export class FileFlusher {
  private fd: Promise<number> | undefined;
  private running: Promise<void> | undefined;
  private next: Promise<void> | undefined;
  private closed = false;
  /** Set once an fdatasync has failed: the error every later flush fails with. */
  lost: StoreUnavailableError | undefined;
  /** Every release so far, settled once their descriptors are closed. */
  private releasing: Promise<void> = Promise.resolve();

  constructor(private readonly path: string) {}

  flush(): Promise<void> {
    if (this.lost) return Promise.reject(this.lost);
    if (!this.running) return (this.running = this.run());
    // One flush is under way: it may have started before these writes; they take the next one.
    this.next ??= this.running.catch(() => undefined).then(() => {
      this.next = undefined;
      return (this.running = this.run());
    });
    return this.next;
  }

  private async run(): Promise<void> {
    if (this.lost) throw this.lost;
    try {
      this.fd ??= this.open();
      const fd = await this.fd;
      await new Promise<void>((resolve, reject) => fdatasync(fd, (err) => {
        if (!err) return resolve();
        this.lost ??= lostFlush(this.path, err);
        reject(err);
      }));
      // A write that committed as the store was closing (a stop during start-up) is flushed all the same,
      // through a descriptor opened for it alone.
      if (this.closed) await this.release();
    } catch (err) {
      void this.release();
      throw this.lost ?? fileError(err);
    } finally {
      this.running = undefined;
    }
  }

  /**
   * The descriptor, once the file's directory entry is on disk too: SQLite syncs a new WAL's directory
   * only at its own first sync of the WAL, which with synchronous=NORMAL is the first checkpoint, while
   * the writes acknowledged before it rely on this flusher alone.
   */
  private async open(): Promise<number> {
    const fd = await new Promise<number>((resolve, reject) => open(this.path, 'r+', (err, n) => (err ? reject(err) : resolve(n))));
    try {
      await syncDirOf(this.path);
    } catch (err) {
      await new Promise<void>((resolve) => close(fd, () => resolve()));
      throw err;
    }
    return fd;
  }

  /**
   * Waits for the flushes under way or queued, then closes the descriptor: a raw descriptor, unlike a
   * FileHandle, may be closed under a running fdatasync (EBADF, or another file's flush once its number
   * is reused). A flush asked for after this keeps no descriptor open.
   */
  async close(): Promise<void> {
    this.closed = true;
    await this.next?.catch(() => undefined);
    await this.running?.catch(() => undefined);
    await this.release();
    // A failed flush's release may still be closing its descriptor.
    await this.releasing;
  }

  /** Lets the descriptor go (a failed flush opens a new one next time). */
  private release(): Promise<void> {
    const fd = this.fd;
    this.fd = undefined;
    const released = (async () => {
      const n = await fd?.catch(() => undefined);
      if (n !== undefined) await new Promise<void>((resolve) => close(n, () => resolve()));
    })();
    this.releasing = this.releasing.then(() => released);
    return released;
  }
}

/** fsync of the directory holding `file`: its entry for the file is then on disk. */
function syncDirOf(file: string): Promise<void> {
  return new Promise((resolve, reject) => open(dirname(file), 'r', (err, fd) => {
    if (err) return reject(err);
    fsync(fd, (syncErr) => close(fd, () => (syncErr ? reject(syncErr) : resolve())));
  }));
}

/** The final fault of a failed fdatasync (see FileFlusher). */
function lostFlush(path: string, err: NodeJS.ErrnoException): StoreUnavailableError {
  const cause = (err.code && FS_UNAVAILABLE.get(err.code)) || 'disk I/O error';
  return new StoreUnavailableError(
    `${path} failed to flush to disk (${err.message}); writes are refused until fleet-server restarts: a later flush cannot vouch for what this one lost`,
    { cause: err, clientMessage: `the embedded store cannot be used: ${cause}` },
  );
}
