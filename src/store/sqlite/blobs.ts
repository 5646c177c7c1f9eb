// Chunk bytes of the embedded store as files under the data directory, `files/<kind>/<owner>/<n>` beside
// the database (a private temporary directory for `:memory:`), so no chunk is ever whole in memory and
// the database stays small. A chunk is written to a temporary file, fsynced, renamed into place and its
// directory fsynced: a chunk whose write resolved survives a crash, a replaced chunk is never seen half
// written, and a write that fails leaves nothing. Files are 0600 and directories 0700, as the database.
import { createHash, randomBytes } from 'node:crypto';
import { lstatSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { fsAsync } from '../../util/fs-async';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { OrphanSweep } from '../file-ports';
import { NotFoundError, StoreUnavailableError } from '../port';
import { fileError } from './errors';

export type BlobKind = 'uploads' | 'deliveries';

const FILE_MODE = 0o600;
const DIR_MODE = 0o700;
/** Reads hand out pieces of this size (as fs streams do). */
const PIECE = 64 * 1024;

/** Owner ids are client input (an upload's `<action_id>.<agent_id>`): kept as the directory name only when harmless. */
const SAFE_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$/;

/** The directory name for an owner id; '~' (never in a kept name) marks a hashed one, so the two cannot collide. */
export function ownerDirName(owner: string): string {
  return SAFE_NAME.test(owner) ? owner : `~${createHash('sha256').update(owner).digest('hex')}`;
}

/** Whether ownerDirName keeps this id as it is (else the directory is named by the id's hash). */
export function keptAsName(owner: string): boolean {
  return SAFE_NAME.test(owner);
}

const HASHED_NAME = /^~[0-9a-f]{64}$/;
/** Where the sweep moves a directory before removing it: a name ownerDirName never gives ('.' never starts a kept name). */
const SWEPT_NAME = /^\.swept-[0-9a-f]{16}$/;

export interface SweepOptions {
  /**
   * Whether a row owns the directory of this name. Asked in the same turn as the directory is moved
   * away, so a row written meanwhile on this store's connection is seen.
   */
  owned: (name: string) => boolean;
  /** Directories changed at or after this time (Unix ms) are left: a write may be under way there. */
  changedBefore: number;
  /** At most this many entries are looked at: the work of one sweep is bounded, whatever a crash left. */
  maxEntries: number;
}


/** Runs the calls of one key one at a time, in order (calls of other keys do not wait). */
export class KeyedTurns {
  private readonly busy = new Map<string, Promise<unknown>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.busy.get(key);
    const run = (prev ?? Promise.resolve()).catch(() => {}).then(fn);
    this.busy.set(key, run);
    try {
      return await run;
    } finally {
      if (this.busy.get(key) === run) this.busy.delete(key);
    }
  }
}

/** A chunk file being written: bytes go to a temporary file until commit renames it into place. */
export class BlobWriter {
  private size = 0;
  private sealed = false;

  private constructor(private readonly fh: FileHandle, private readonly tmp: string, private readonly target: string,
    private readonly fault: (err: unknown) => unknown) {}

  static async create(target: string, fault: (err: unknown) => unknown): Promise<BlobWriter> {
    const tmp = join(dirname(target), `.${randomBytes(8).toString('hex')}.tmp`);
    try {
      return new BlobWriter(await fsAsync().open(tmp, 'wx', FILE_MODE), tmp, target, fault);
    } catch (err) {
      throw fault(err);
    }
  }

  get written(): number {
    return this.size;
  }

  async write(piece: Uint8Array): Promise<void> {
    try {
      for (let off = 0; off < piece.length;) off += (await this.fh.write(piece, off, piece.length - off)).bytesWritten;
    } catch (err) {
      throw this.fault(err);
    }
    this.size += piece.length;
  }

  /** fsync and close: the bytes are on disk, not yet in place (commit puts them there). */
  async seal(): Promise<void> {
    if (this.sealed) return;
    try {
      await this.fh.sync();
      await this.fh.close();
    } catch (err) {
      await this.abort();
      throw this.fault(err);
    }
    this.sealed = true;
  }

  /** seal, rename over the chunk, fsync the directory: durable once this resolves. Returns the size. */
  async commit(): Promise<number> {
    await this.seal();
    try {
      await fsAsync().rename(this.tmp, this.target);
      await syncDir(dirname(this.target));
    } catch (err) {
      await this.abort();
      throw this.fault(err);
    }
    return this.size;
  }

  /** Drops the temporary file (the chunk in place, if any, is untouched). */
  async abort(): Promise<void> {
    await this.fh.close().catch(() => {});
    await fsAsync().unlink(this.tmp).catch(() => {});
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await fsAsync().open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export class BlobDir {
  /** Writes and removals of one chunk run one at a time, so a chunk's file and its row cannot cross. */
  private readonly turns = new KeyedTurns();

  /**
   * `onWriteFault` hears a write the file system refused (disk full, I/O error), as the store reports
   * SQLite's; a later successful write clears it there.
   */
  private constructor(readonly root: string, private readonly temporary: boolean, private readonly onWriteFault: (message: string) => void) {}

  static forDatabase(path: string, onWriteFault: (message: string) => void): BlobDir {
    if (path === ':memory:') return new BlobDir(mkdtempSync(join(tmpdir(), 'fleet-server-files-')), true, onWriteFault);
    return new BlobDir(join(dirname(path), 'files'), false, onWriteFault);
  }

  dir(kind: BlobKind, owner: string): string {
    return join(this.root, kind, ownerDirName(owner));
  }

  path(kind: BlobKind, owner: string, n: number): string {
    return join(this.dir(kind, owner), String(n));
  }

  private readonly writeFault = (err: unknown): unknown => {
    const e = fileError(err);
    if (e instanceof StoreUnavailableError) this.onWriteFault(e.message);
    return e;
  };

  /** Makes the owner's directory, its new entries durable too. */
  async ensureDir(kind: BlobKind, owner: string): Promise<string> {
    const dir = this.dir(kind, owner);
    try {
      const first = await fsAsync().mkdir(dir, { recursive: true, mode: DIR_MODE });
      if (first !== undefined) {
        for (let p = dir; p !== dirname(first); p = dirname(p)) await syncDir(dirname(p));
      }
    } catch (err) {
      throw this.writeFault(err);
    }
    return dir;
  }

  /** A writer for chunk n of owner (the caller commits or aborts it). */
  async writer(kind: BlobKind, owner: string, n: number): Promise<BlobWriter> {
    await this.ensureDir(kind, owner);
    return BlobWriter.create(this.path(kind, owner, n), this.writeFault);
  }

  /**
   * Streams `data` into a temporary file for chunk n of owner and syncs it, then runs `publish` with
   * `place`, which renames it over the chunk (replacing an earlier copy) and returns its size, while no
   * other write of that chunk can interleave. `publish` checks what must hold before the chunk is
   * replaced, places it and records its row. If `data` fails (a body cut short, or bytes the caller's
   * iterable finds wrong at its end) or `publish` refuses before placing, the earlier copy stands and
   * no new file is left; if `publish` fails after placing, the new file goes again.
   */
  async put<T>(kind: BlobKind, owner: string, n: number, data: AsyncIterable<Uint8Array>,
    publish: (place: () => Promise<number>) => Promise<T>): Promise<T> {
    return this.turns.run(this.path(kind, owner, n), async () => {
      const w = await this.writer(kind, owner, n);
      try {
        for await (const piece of data) await w.write(piece);
        // The data sync, the slow part, happens before publish (which may hold a lock of the caller's).
        await w.seal();
      } catch (err) {
        await w.abort();
        throw err;
      }
      let placed = false;
      try {
        return await publish(async () => {
          const size = await w.commit();
          placed = true;
          return size;
        });
      } catch (err) {
        if (placed) await this.unlink(kind, owner, n).catch(() => {});
        else await w.abort();
        throw err;
      }
    });
  }

  /** Runs `forget` (the row) and then removes chunk n's file; a file already gone is fine. */
  async remove(kind: BlobKind, owner: string, n: number, forget: () => Promise<void>): Promise<void> {
    await this.turns.run(this.path(kind, owner, n), async () => {
      await forget();
      await this.unlink(kind, owner, n);
    });
  }

  private async unlink(kind: BlobKind, owner: string, n: number): Promise<void> {
    try {
      await fsAsync().unlink(this.path(kind, owner, n));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw this.writeFault(err);
    }
  }

  /** Removes every chunk of owner (and temporary files a crash left there). */
  async removeAll(kind: BlobKind, owner: string): Promise<void> {
    try {
      await fsAsync().rm(this.dir(kind, owner), { recursive: true, force: true });
    } catch (err) {
      throw this.writeFault(err);
    }
  }

  /** Chunk n's bytes in pieces of 64 KiB; NotFoundError when the file is missing. */
  async *read(kind: BlobKind, owner: string, n: number): AsyncIterable<Uint8Array> {
    let fh: FileHandle;
    try {
      fh = await fsAsync().open(this.path(kind, owner, n), 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`chunk ${n} of ${owner} not found`);
      throw fileError(err);
    }
    try {
      for (;;) {
        const buf = Buffer.allocUnsafe(PIECE);
        let bytesRead: number;
        try {
          ({ bytesRead } = await fh.read(buf, 0, PIECE, null));
        } catch (err) {
          throw fileError(err);
        }
        if (bytesRead === 0) return;
        yield buf.subarray(0, bytesRead);
      }
    } finally {
      await fh.close();
    }
  }

  /**
   * Removes the directories under `<kind>/` that no row owns: what a crash left between a row and its
   * files (an upload's row deleted before its directory, a delivery's chunks written before its row).
   * Only what this store makes is touched: directories (never symlinks, never followed) named as
   * ownerDirName names them, and the sweep's own leftovers. Each directory is moved aside in the same
   * turn as its owner is looked up, so a row written after the look-up finds no directory to lose,
   * then removed.
   */
  async sweep(kind: BlobKind, opts: SweepOptions): Promise<OrphanSweep> {
    const fs = fsAsync();
    const base = join(this.root, kind);
    const result: OrphanSweep = { removed: 0, examined: 0, truncated: false };
    try {
      if (!(await fs.lstat(base)).isDirectory()) return result;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return result;
      throw fileError(err);
    }
    try {
      for await (const entry of await fs.opendir(base)) {
        if (result.examined === opts.maxEntries) {
          result.truncated = true;
          break;
        }
        result.examined++;
        const leftover = SWEPT_NAME.test(entry.name);
        if (!leftover && !SAFE_NAME.test(entry.name) && !HASHED_NAME.test(entry.name)) continue;
        const path = join(base, entry.name);
        // Synchronous from here to the move: what is seen (type, change time, owner) is what is moved.
        const st = lstatSync(path, { throwIfNoEntry: false });
        if (!st?.isDirectory()) continue;
        let doomed = path;
        if (!leftover) {
          if (st.mtimeMs >= opts.changedBefore || opts.owned(entry.name)) continue;
          doomed = join(base, `.swept-${randomBytes(8).toString('hex')}`);
          try {
            renameSync(path, doomed);
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
            throw err;
          }
        }
        await fs.rm(doomed, { recursive: true, force: true });
        result.removed++;
      }
    } catch (err) {
      throw fileError(err);
    }
    return result;
  }

  /** A temporary directory (`:memory:` databases) goes with the store. */
  close(): void {
    if (this.temporary) rmSync(this.root, { recursive: true, force: true });
  }
}
