// The PGP key agents verify upgrade packages with (upstream's api/handlePGPRequest.go): the bytes of
// <server.pgp.dir>/default.pgp, which must be private to the server (mode 0600), cached 30 minutes
// per path. Upstream downloads server.pgp.upstream_url when the file is missing; this server does not
// reach the internet, so a missing file is an error the operator fixes by installing the key.
import { constants } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { fsAsync } from '../util/fs-async';
import { join } from 'node:path';
import { LruCache } from '../util/lru';
import { HttpError } from './errors';

const TTL_MS = 30 * 60_000;
const FILE = 'default.pgp';

/** Per path: one in practice (server.pgp.dir), a few across reconfigurations. */
const cache = new LruCache<string, Buffer>(16);

export async function readPgpKey(dir: string, now = Date.now()): Promise<Buffer> {
  const path = join(dir, FILE);
  const hit = cache.get(path, now);
  if (hit) return hit;
  let fh: FileHandle;
  try {
    // Non-blocking: a FIFO put in the key's place would otherwise hold a thread-pool thread in open()
    // until a writer came (every request for the key taking another). A regular file reads as ever.
    fh = await fsAsync().open(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new HttpError('PgpKeyMissing', `${path} does not exist: install the key there (mode 0600) or set server.pgp.dir`);
    }
    throw err;
  }
  try {
    // Checked on the open file, so the bytes read are those of the file whose mode was checked.
    const st = await fh.stat();
    if (!st.isFile()) throw new HttpError('PgpKeyMissing', `${path} is not a regular file`);
    const mode = st.mode & 0o777;
    // Windows has no POSIX modes to check.
    if (process.platform !== 'win32' && mode !== 0o600) {
      throw new HttpError('PgpKeyUnsafe', `${path} has mode 0${mode.toString(8)}; it must be 0600 (chmod 600 ${path})`);
    }
    const bytes = await fh.readFile();
    cache.set(path, bytes, TTL_MS, now);
    return bytes;
  } finally {
    await fh.close();
  }
}
