// Opening the embedded database: WAL for concurrent readers (the admin CLI may run beside the server),
// migrations applied in one transaction, then synchronous=NORMAL with the WAL flushed before a write is
// acknowledged (group-commit.ts), so an acknowledged write survives power loss.
// Private file modes, an integrity check for the server, and the key that seals stored secrets are
// settled here, before anything reads or writes a row.
import { DatabaseSync } from 'node:sqlite';
import { dirname } from 'node:path';
import { isCorruption, storeError } from './errors';
import { ensurePrivateDbFiles, ensurePrivateDir } from './files';
import { LAST_SEALING_VERSION, MIGRATIONS, REPAIRS } from './schema';
import { KEY_ENV, KEY_FILE, resolveSecretBox, SecretBox } from './secret-box';

export interface OpenOptions {
  /** Key material from configuration or the environment; otherwise the key file beside the database. */
  secretsKey?: string;
  /** PRAGMA quick_check before use (the server; the admin CLI skips the full read). */
  verify?: boolean;
}

export interface OpenDatabase {
  db: DatabaseSync;
  box: SecretBox;
}

const KEY_CHECK = 'fleet-server key check';

export function openDatabase(path: string, opts: OpenOptions = {}): OpenDatabase {
  const memory = path === ':memory:';
  if (!memory) {
    ensurePrivateDir(dirname(path));
    ensurePrivateDbFiles(path);
  }
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(path);
  } catch (err) {
    throw storeError(err, path);
  }
  try {
    db.exec('PRAGMA busy_timeout = 10000');
    // Before anything writes to the file or reads its key check (journal mode, a key file made): a newer
    // build's database is refused as such, not changed, nor blamed on a key whose check it reads otherwise.
    refuseNewer(schemaVersion(db), path);
    db.exec('PRAGMA journal_mode = WAL');
    // No connection checkpoints on its own, an admin command's neither: the server's checkpointer does,
    // off the event loop's disk waits, and relies on being the only one (checkpointer.ts); SQLite still
    // does when the last connection closes.
    db.exec('PRAGMA wal_autocheckpoint = 0');
    db.exec('PRAGMA synchronous = FULL');
    db.exec('PRAGMA foreign_keys = ON');
    if (opts.verify) quickCheck(db, path);
    const check = keyCheck(db);
    const box = memory ? SecretBox.ephemeral() : resolveSecretBox(dirname(path), opts.secretsKey, () => check === undefined);
    if (check !== undefined && box.open(check, 'key_check') !== KEY_CHECK) {
      throw new Error(`the encryption key from ${box.source} does not open the secrets in ${path}: give the key it was written with (${KEY_ENV}, inputs.0.server.secrets.key, or the ${KEY_FILE} made beside it)`);
    }
    migrate(db, box, path);
    // From here on every write goes through group commit, which flushes the WAL itself before a write
    // is acknowledged (group-commit.ts): COMMIT need not wait for the disk on the event loop.
    db.exec('PRAGMA synchronous = NORMAL');
    // Each time the WAL starts over, its file is cut back to 64 MiB.
    db.exec('PRAGMA journal_size_limit = 67108864');
    return { db, box };
  } catch (err) {
    db.close();
    if (isCorruption(err)) throw corrupted(path, (err as Error).message);
    // SQLite's own words name no file ("unable to open database file", "database is locked"): the
    // operator reading the start-up error is told which one.
    throw storeError(err, path);
  }
}

function corrupted(path: string, detail: string): Error {
  return new Error(`the database ${path} is damaged (${detail}): restore it from a backup, or move it aside together with its -wal and -shm files to start with an empty one`);
}

/** A damaged file is refused before the server reports itself healthy on it. */
function quickCheck(db: DatabaseSync, path: string): void {
  const row = db.prepare('PRAGMA quick_check(1)').get() as { quick_check: string } | undefined;
  const result = row?.quick_check ?? 'no result';
  if (result !== 'ok') throw corrupted(path, `quick_check: ${result.replace(/\s*\n\s*/g, ' ')}`);
}

function keyCheck(db: DatabaseSync): string | undefined {
  if (!db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").get()) return undefined;
  const row = db.prepare("SELECT value FROM meta WHERE key = 'key_check'").get() as { value: string } | undefined;
  return row?.value;
}

function schemaVersion(db: DatabaseSync): number {
  return Number((db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version);
}

function refuseNewer(version: number, path: string): void {
  if (version > MIGRATIONS.length) {
    throw new Error(`the database ${path} was written by a newer fleet-server (schema version ${version}; this one supports up to ${MIGRATIONS.length}): run that version or a later one, or restore a backup made before the upgrade`);
  }
}

function migrate(db: DatabaseSync, box: SecretBox, path: string): void {
  const current = schemaVersion(db);
  refuseNewer(current, path);
  if (current === MIGRATIONS.length && !REPAIRS.some((r) => r.needed(db))) return;
  // Rows rewritten by a sealing migration (2, 6: plaintext credentials) leave no old bytes behind in the
  // pages; the other migrations rewrite nothing and need no VACUUM.
  const rewrites = current > 0 && current < LAST_SEALING_VERSION;
  if (rewrites) db.exec('PRAGMA secure_delete = ON');
  transaction(db, () => {
    // Another process (the admin CLI, perhaps of an older build) may have migrated between the read
    // above and this write lock: the migrations start from where it left the schema.
    const from = schemaVersion(db);
    refuseNewer(from, path);
    for (let v = from; v < MIGRATIONS.length; v++) {
      const m = MIGRATIONS[v]!;
      if (typeof m === 'string') db.exec(m);
      else m(db, { box, keyCheck: box.seal(KEY_CHECK, 'key_check') });
    }
    if (from !== MIGRATIONS.length) db.exec(`PRAGMA user_version = ${MIGRATIONS.length}`);
    for (const r of REPAIRS) if (r.needed(db)) r.apply(db);
  });
  if (rewrites) {
    db.exec('PRAGMA secure_delete = OFF');
    // Free pages, and the unused space of pages in use, may still hold plaintext deleted or overwritten
    // before this migration (secure_delete zeroes only what it frees itself: an expired MIGRATE action's
    // token, a number a build before 5203390 kept): VACUUM rewrites the file without them, once.
    db.exec('VACUUM');
    // Old page images stay in the WAL until a checkpoint copies the new ones over them.
    db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
  }
}

/** Runs fn in a write transaction (BEGIN IMMEDIATE takes the write lock up front, avoiding upgrade deadlocks). */
export function transaction<T>(db: DatabaseSync, fn: () => T): T {
  if (db.isTransaction) return fn();
  db.exec('BEGIN IMMEDIATE');
  try {
    const out = fn();
    db.exec('COMMIT');
    return out;
  } catch (err) {
    if (db.isTransaction) {
      try {
        db.exec('ROLLBACK');
      } catch {
        // SQLite has rolled back already (an I/O error at commit); the first error is the one to report.
      }
    }
    throw err;
  }
}
