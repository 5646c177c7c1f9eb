// One server per data directory. Node has no flock, so the lock is SQLite's own: an exclusive
// transaction held open on a small lock file for as long as the server runs. The operating system
// drops the file lock when the process dies, so there is no stale lock to clean up and no pid to
// mistake; nothing is ever written, so the file stays empty. The admin CLI does not take it: it opens
// fleet-server.db beside a running server, as WAL allows.
import { DatabaseSync } from 'node:sqlite';
import { join } from 'node:path';
import { StoreUnavailableError } from '../port';
import { isBusy } from './errors';
import { ensurePrivateDbFiles, ensurePrivateDir } from './files';

export const LOCK_FILE = 'fleet-server.lock';

export class DataDirLock {
  private constructor(private readonly db: DatabaseSync) {}

  static acquire(dir: string): DataDirLock {
    const file = join(dir, LOCK_FILE);
    ensurePrivateDir(dir);
    ensurePrivateDbFiles(file);
    const db = new DatabaseSync(file);
    try {
      db.exec('PRAGMA busy_timeout = 0');
      // Nothing is written, so no rollback journal is needed beside it.
      db.exec('PRAGMA journal_mode = MEMORY');
      db.exec('BEGIN EXCLUSIVE');
    } catch (err) {
      db.close();
      if (isBusy(err)) {
        throw new StoreUnavailableError(`another fleet-server is already running on path.data ${dir} (it holds ${file}); stop it first, or give this one another path.data`);
      }
      throw err;
    }
    return new DataDirLock(db);
  }

  release(): void {
    if (this.db.isOpen) this.db.close();
  }
}
