// The WAL flusher (store/sqlite/errors.ts FileFlusher): its descriptor is closed only after the flushes
// already asked for have run; a raw descriptor closed under a running fdatasync fails it (EBADF) or,
// once its number is reused, flushes another file.
import { mkdtempSync, readdirSync, readlinkSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
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
