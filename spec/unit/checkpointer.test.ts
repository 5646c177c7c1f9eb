// The WAL checkpointer (src/store/sqlite/checkpointer.ts): SQLite's checkpoint steps in SQLite's order,
// the disk waits off the event loop — nothing is copied before the WAL is on disk, nothing committed
// after the cycle began is copied in it, and the WAL is not rewritten before the copies are on disk.
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { WalCheckpointer, type Flusher } from '../../src/store/sqlite/checkpointer';
import { FileFlusher } from '../../src/store/sqlite/errors';
import { SqliteStore } from '../../src/store/sqlite/store';

/** A flusher whose flushes end (or fail) when the test says so. */
class HeldFlusher implements Flusher {
  calls = 0;
  private pending: { resolve(): void; reject(err: Error): void }[] = [];
  flush(): Promise<void> {
    this.calls++;
    return new Promise((resolve, reject) => this.pending.push({ resolve, reject }));
  }
  release(): void {
    for (const p of this.pending.splice(0)) p.resolve();
  }
  fail(err: Error): void {
    for (const p of this.pending.splice(0)) p.reject(err);
  }
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

let dir: string;
let path: string;
let db: DatabaseSync;
let wal: HeldFlusher;
let file: HeldFlusher;
let errors: unknown[];
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ckpt-'));
  path = join(dir, 'db');
  db = new DatabaseSync(path);
  db.exec('PRAGMA journal_mode = WAL');
  db.exec('PRAGMA synchronous = NORMAL');
  db.exec('PRAGMA wal_autocheckpoint = 0');
  db.exec('PRAGMA busy_timeout = 0');
  db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
  db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
  wal = new HeldFlusher();
  file = new HeldFlusher();
  errors = [];
});
afterEach(() => {
  if (db.isOpen) db.close();
  rmSync(dir, { recursive: true, force: true });
});

const insert = (bytes: number): void => {
  db.prepare('INSERT INTO t (v) VALUES (?)').run('x'.repeat(bytes));
};
/** One whole cycle of `cp` after a commit: the WAL flushed, the pages copied, the database file flushed. */
async function fullCycle(cp: WalCheckpointer): Promise<void> {
  cp.wrote();
  await tick();
  wal.release();
  await tick();
  file.release();
  await cp.idle();
}
const truncateBusy = (): number => (db.prepare('PRAGMA wal_checkpoint(TRUNCATE)').get() as { busy: number }).busy;

test('copies only what was committed before the WAL flush, only after it, and holds the WAL until the copies are flushed', async () => {
  const cp = new WalCheckpointer(path, db, wal, file, (e) => errors.push(e), { spacingMs: 0 });
  const before = statSync(path).size;
  insert(200_000);
  cp.wrote();
  // Committed while the WAL flush is under way: not flushed by it, so not to be copied in this cycle.
  insert(400_000);
  await tick();
  expect(wal.calls).toBe(1);
  expect(file.calls).toBe(0);
  expect(statSync(path).size).toBe(before);

  wal.release();
  await tick();
  // The first row's pages copied into the database file, not the second's; the file's flush is under way.
  expect(file.calls).toBe(1);
  const copied = statSync(path).size - before;
  expect(copied).toBeGreaterThan(150_000);
  expect(copied).toBeLessThan(350_000);
  // Until it ends the WAL cannot be rewritten from its start: a checkpoint that would reset it is refused.
  let done = false;
  const idle = cp.idle().then(() => (done = true));
  await tick();
  expect(done).toBe(false);
  expect(truncateBusy()).toBe(1);

  file.release();
  await idle;
  expect(truncateBusy()).toBe(0);
  expect(statSync(`${path}-wal`).size).toBe(0);
  expect(errors).toEqual([]);
  cp.close(() => db.close());
});

test('a copy whose flush failed keeps the WAL from starting over, and no more cycles run', async () => {
  const cp = new WalCheckpointer(path, db, wal, file, (e) => errors.push(e), { spacingMs: 0 });
  insert(200_000);
  cp.wrote();
  await tick();
  wal.release();
  await tick();
  file.fail(new Error('EIO'));
  await cp.idle();
  expect(errors).toHaveLength(1);
  // SQLite counts those frames as copied; the pin stays, so they are not overwritten.
  expect(truncateBusy()).toBe(1);
  insert(10);
  cp.wrote();
  expect(wal.calls).toBe(1);
  // The writer closes first: it cannot checkpoint or remove the WAL, and the next open reads it again.
  cp.close(() => db.close());
  const again = new DatabaseSync(path);
  expect((again.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n).toBe(2);
  again.close();
});

test('once the WAL has grown past the restart size, the writer checkpoints once itself and the WAL starts over', async () => {
  const cp = new WalCheckpointer(path, db, wal, file, (e) => errors.push(e), { spacingMs: 0, restartFrames: 20 });
  insert(200_000);
  await fullCycle(cp);
  expect(cp.cycles).toBe(1);
  // The next commit: the writer's own checkpoint (SQLite's, synced), not another cycle.
  insert(10);
  cp.wrote();
  expect(cp.catchUps).toBe(1);
  expect(cp.cycles).toBe(1);
  const size = statSync(`${path}-wal`).size;
  // Everything copied, nobody reading the WAL: the next commit writes at its start, the file does not grow.
  insert(10);
  expect(statSync(`${path}-wal`).size).toBe(size);
  expect(errors).toEqual([]);
  cp.close(() => db.close());
});

test('a server store writing steadily keeps its WAL near the restart size and every acknowledged row', async () => {
  db.close();
  const storePath = join(dir, 'fleet-server.db');
  // A cycle after every turn, each waited for: the WAL's bound then follows from the restart size, not
  // from how fast this machine writes against the checkpointer's clock.
  let store = new SqliteStore(storePath, { server: true, secretsKey: 'k'.repeat(40), checkpoints: { spacingMs: 0 } });
  const checkpointer = (store as unknown as { checkpointer: WalCheckpointer }).checkpointer;
  let maxWal = 0;
  const ids: string[] = [];
  // 150 turns of 100 agents with ~3 KiB documents each: ~60 MiB of pages written, ~4 times the restart size.
  for (let turn = 0; turn < 150; turn++) {
    const writes: Promise<unknown>[] = [];
    for (let i = 0; i < 100; i++) {
      const id = `agent-${turn}-${i}`;
      ids.push(id);
      writes.push(store.createAgent(id, { agent: { id, version: '9.5.0' }, active: true, policy_id: 'p', local_metadata: { pad: 'p'.repeat(3000) } } as never));
    }
    await Promise.all(writes);
    await checkpointer.idle();
    maxWal = Math.max(maxWal, statSync(`${storePath}-wal`).size);
  }
  await store.close();
  // Without checkpoints the WAL would hold all ~60 MiB.
  expect(maxWal).toBeLessThan(32 * 1024 * 1024);
  store = new SqliteStore(storePath, { server: true, secretsKey: 'k'.repeat(40) });
  for (const id of [ids[0]!, ids[7500]!, ids[ids.length - 1]!]) expect((await store.getAgent(id))?._id).toBe(id);
  await store.close();
});

test('a server store whose checkpoints stopped keeps saying so while later writes succeed', async () => {
  db.close();
  const storePath = join(dir, 'fleet-server.db');
  const realFlush = FileFlusher.prototype.flush;
  const spy = jest.spyOn(FileFlusher.prototype, 'flush').mockImplementation(function (this: FileFlusher) {
    // The database file fails to flush (its WAL still flushes): the copy is not known to be on disk.
    return (this as unknown as { path: string }).path === storePath
      ? Promise.reject(Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' }))
      : realFlush.call(this);
  });
  const store = new SqliteStore(storePath, { server: true, secretsKey: 'k'.repeat(40) });
  try {
    const faults: (string | undefined)[] = [];
    store.watchWrites((f) => faults.push(f));
    const agent = (id: string) => ({ agent: { id, version: '9.5.0' }, active: true, policy_id: 'p' }) as never;
    await store.createAgent('a1', agent('a1'));
    await (store as unknown as { checkpointer: WalCheckpointer }).checkpointer.idle();
    expect(faults.at(-1)).toMatch(/checkpoints stopped .*EIO.*the WAL grows until the server restarts/);
    // Acknowledged writes still succeed (the WAL keeps them), and the health keeps the fault.
    await store.createAgent('a2', agent('a2'));
    await store.createAgent('a3', agent('a3'));
    expect(faults.at(-1)).toMatch(/checkpoints stopped .*EIO.*the WAL grows until the server restarts/);
    expect(faults).not.toContain(undefined);
    expect((await store.getAgent('a3'))?._id).toBe('a3');
  } finally {
    spy.mockRestore();
    await store.close();
  }
});

test('a copy that failed (disk full) counts nothing copied: the WAL is let go, and the next cycle copies it all', async () => {
  const realPrepare = DatabaseSync.prototype.prepare;
  let full = true;
  const spy = jest.spyOn(DatabaseSync.prototype, 'prepare').mockImplementation(function (this: DatabaseSync, sql: string) {
    // The copier's checkpoint (not the writer's) meets a full disk while writing the database file.
    if (full && this !== db && sql === 'PRAGMA wal_checkpoint(PASSIVE)') {
      throw Object.assign(new Error('database or disk is full'), { code: 'ERR_SQLITE_ERROR', errcode: 13, errstr: 'database or disk is full' });
    }
    return realPrepare.call(this, sql);
  });
  const cp = new WalCheckpointer(path, db, wal, file, (e) => errors.push(e), { spacingMs: 0 });
  try {
    const before = statSync(path).size;
    insert(200_000);
    cp.wrote();
    await tick();
    wal.release();
    await cp.idle();
    expect(errors).toHaveLength(1);
    expect(cp.stuckFault).toBeUndefined();
    expect(file.calls).toBe(0);
    // The pin is let go: no read transaction holds the WAL meanwhile.
    expect((cp as unknown as { pin: DatabaseSync }).pin.isTransaction).toBe(false);
    expect(statSync(path).size).toBe(before);
    insert(200_000);
    // The disk has room again: the next commit's cycle copies and flushes as before.
    full = false;
    await fullCycle(cp);
    expect(cp.cycles).toBe(2);
    expect(file.calls).toBe(1);
    // Both rows' pages: the frames of the failed copy too.
    expect(statSync(path).size - before).toBeGreaterThan(350_000);
    expect(errors).toHaveLength(1);
    expect(truncateBusy()).toBe(0);
  } finally {
    spy.mockRestore();
    cp.close(() => db.close());
  }
});
