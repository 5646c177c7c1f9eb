// Chunk bytes of the embedded store as files under the data directory, `files/<kind>/<owner>/<n>` beside
// the database (a private temporary directory for `:memory:`), so no chunk is ever whole in memory and
// the database stays small. A chunk is written to a temporary file, fsynced, renamed into place and its
// directory fsynced: a chunk whose write resolved survives a crash, a replaced chunk is never seen half
// written, and a write that fails leaves nothing. Files are 0600 and directories 0700, as the database.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { fsAsync } from '../../util/fs-async';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
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

/** A chunk file being written: bytes go to a temporary file until commit renames it into place. */
export class BlobWriter {
  private size = 0;

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

  /** fsync, rename over the chunk, fsync the directory: durable once this resolves. Returns the size. */
  async commit(): Promise<number> {
    try {
      await this.fh.sync();
      await this.fh.close();
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
  private readonly busy = new Map<string, Promise<unknown>>();

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
   * Streams `data` into chunk n of owner, replacing an earlier copy, then runs `record` with the size
   * (the chunk's row) while no other write of that chunk can interleave. If `data` or `record` fails,
   * no new file is left behind.
   */
  async put<T>(kind: BlobKind, owner: string, n: number, data: AsyncIterable<Uint8Array>, record: (size: number) => Promise<T>): Promise<T> {
    return this.serial(this.path(kind, owner, n), async () => {
      const w = await this.writer(kind, owner, n);
      try {
        for await (const piece of data) await w.write(piece);
      } catch (err) {
        await w.abort();
        throw err;
      }
      const size = await w.commit();
      try {
        return await record(size);
      } catch (err) {
        await this.unlink(kind, owner, n).catch(() => {});
        throw err;
      }
    });
  }

  /** Runs `forget` (the row) and then removes chunk n's file; a file already gone is fine. */
  async remove(kind: BlobKind, owner: string, n: number, forget: () => Promise<void>): Promise<void> {
    await this.serial(this.path(kind, owner, n), async () => {
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

  private async serial<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.busy.get(key);
    const run = (prev ?? Promise.resolve()).catch(() => {}).then(fn);
    this.busy.set(key, run);
    try {
      return await run;
    } finally {
      if (this.busy.get(key) === run) this.busy.delete(key);
    }
  }

  /** A temporary directory (`:memory:` databases) goes with the store. */
  close(): void {
    if (this.temporary) rmSync(this.root, { recursive: true, force: true });
  }
}
