// The WAL flusher (store/sqlite/errors.ts FileFlusher): its descriptor is closed only after the flushes
// already asked for have run; a raw descriptor closed under a running fdatasync fails it (EBADF) or,
// once its number is reused, flushes another file.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileFlusher } from '../../src/store/sqlite/errors';
import { StoreUnavailableError } from '../../src/store/port';

test('close waits for the flushes under way and queued; a flush after close is refused', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'flusher-'));
  try {
    const file = join(dir, 'wal');
    writeFileSync(file, 'x'.repeat(4096));
    for (let i = 0; i < 200; i++) {
      const f = new FileFlusher(file);
      // One running, one queued behind it, then the close: all three settle, the flushes without error.
      const flushes = [f.flush(), f.flush(), f.flush()];
      await f.close();
      await expect(Promise.all(flushes)).resolves.toBeDefined();
      await expect(f.flush()).rejects.toBeInstanceOf(StoreUnavailableError);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
