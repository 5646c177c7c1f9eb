// The WAL flusher (store/sqlite/errors.ts FileFlusher): its descriptor is closed only after the flushes
// already asked for have run; a raw descriptor closed under a running fdatasync fails it (EBADF) or,
// once its number is reused, flushes another file.
import fs, { mkdtempSync, readdirSync, readlinkSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileFlusher } from '../../src/store/sqlite/errors';

/** How many of this process's descriptors are open on `file` (Linux: /proc/self/fd). */
function openDescriptorsOf(file: string): number {
  return readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === file;
    } catch {
      return false;
    }
  }).length;
}

test('close waits for the flushes under way and queued; one after the close keeps no descriptor', async () => {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'flusher-')));
  try {
    const file = join(dir, 'wal');
    writeFileSync(file, 'x'.repeat(4096));
    for (let i = 0; i < 200; i++) {
      const f = new FileFlusher(file);
      // One running, one queued behind it, then the close: all three settle, the flushes without error.
      const flushes = [f.flush(), f.flush(), f.flush()];
      await f.close();
      await expect(Promise.all(flushes)).resolves.toBeDefined();
      expect(openDescriptorsOf(file)).toBe(0);
      // A write committed as the store closed is flushed all the same, and leaves no descriptor open.
      await f.flush();
      expect(openDescriptorsOf(file)).toBe(0);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a failed fdatasync is final: every later flush fails with it, though the disk would take it now', async () => {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'flusher-')));
  const failing = jest.spyOn(fs, 'fdatasync').mockImplementationOnce(((_fd: number, cb: (err: NodeJS.ErrnoException | null) => void) =>
    cb(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }))) as typeof fs.fdatasync);
  try {
    const file = join(dir, 'wal');
    writeFileSync(file, 'x'.repeat(4096));
    const f = new FileFlusher(file);
    await expect(f.flush()).rejects.toMatchObject({ name: 'StoreUnavailableError', message: expect.stringMatching(/refused until fleet-server restarts/) });
    expect(f.lost?.message).toMatch(/EIO/);
    failing.mockRestore();
    await expect(f.flush()).rejects.toBe(f.lost);
    await f.close();
    expect(openDescriptorsOf(file)).toBe(0);
  } finally {
    failing.mockRestore();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the file\'s directory is synced once, when the flusher opens the file (its entry on disk before any write relies on it)', async () => {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'flusher-')));
  const synced: string[] = [];
  const real = fs.fsync;
  const spy = jest.spyOn(fs, 'fsync').mockImplementation(((fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
    synced.push(readlinkSync(`/proc/self/fd/${fd}`));
    real(fd, cb);
  }) as typeof fs.fsync);
  try {
    const file = join(dir, 'wal');
    writeFileSync(file, 'x');
    const f = new FileFlusher(file);
    await f.flush();
    await f.flush();
    await f.close();
    expect(synced).toEqual([dir]);
  } finally {
    spy.mockRestore();
    rmSync(dir, { recursive: true, force: true });
  }
});
