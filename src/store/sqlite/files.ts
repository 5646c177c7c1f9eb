// The embedded store's files are the fleet's credentials at rest: the data directory is made (or
// narrowed to) 0700 and the database, its -wal and -shm files 0600, whatever the umask. SQLite creates
// -wal and -shm with the mode of the database file (and fixes it against the umask), so creating that
// one right suffices; files an older version left readable are tightened.
import { chmodSync, closeSync, openSync, statSync } from 'node:fs';
import { makeDirsSync } from '../../util/make-dirs';

const FILE_MODE = 0o600;
const DIR_MODE = 0o700;

/** Creates `dir` 0700 when missing; narrows an existing one to its owner's bits. */
export function ensurePrivateDir(dir: string): void {
  // mkdir applies the umask, which can only remove bits from 0700.
  makeDirsSync(dir, DIR_MODE);
  // mkdir leaves the mode of a directory that exists (made by hand, by a package, by an older build)
  // as it is. Best effort, as for the key file (secret-box.ts): one not ours to change, or on a read-only
  // mount, is used as it is. A sticky directory (/tmp) is shared by design and never narrowed.
  try {
    const mode = statSync(dir).mode;
    if ((mode & 0o077) !== 0 && (mode & 0o1000) === 0) chmodSync(dir, mode & DIR_MODE);
  } catch {
    // Left as it is (see above).
  }
}

/** Creates `path` 0600 when missing; narrows an existing file (and its -wal, -shm) to 0600. */
export function ensurePrivateDbFiles(path: string): void {
  // Never open an existing database here: closing any descriptor of a file drops every POSIX lock this
  // process holds on it, SQLite's included.
  try {
    closeSync(openSync(path, 'wx', FILE_MODE));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  for (const f of [path, `${path}-wal`, `${path}-shm`]) {
    try {
      if ((statSync(f).mode & 0o777) !== FILE_MODE) chmodSync(f, FILE_MODE);
    } catch (err) {
      // Missing, or not ours to change (an admin CLI run by another user): the owner's server tightens it.
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'EPERM') throw err;
    }
  }
}
