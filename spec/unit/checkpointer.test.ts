// The WAL checkpointer (src/store/sqlite/checkpointer.ts): SQLite's checkpoint steps in SQLite's order,
// the disk waits off the event loop — nothing is copied before the WAL is on disk, and the WAL is not
// rewritten before the copies are.
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { WalCheckpointer, type Flusher } from '../../src/store/sqlite/checkpointer';
import { SqliteStore } from '../../src/store/sqlite/store';

/** A flusher whose flushes end when the test says so. */
class HeldFlusher implements Flusher {
  calls = 0;
  private pending: (() => void)[] = [];
  flush(): Promise<void> {
    this.calls++;
    return new Promise((resolve) => this.pending.push(resolve));
  }
  release(): void {
    for (const r of this.pending.splice(0)) r();
  }
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ckpt-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function writer(path: string): DatabaseSync {
  const db = new DatabaseSync(path);
  db.exec('PRAGMA journal_mode = WAL');
  db.exec('PRAGMA synchronous = NORMAL');
  db.exec('PRAGMA wal_autocheckpoint = 0');
  db.exec('PRAGMA busy_timeout = 0');
  db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
  return db;
}

test('copies only after the WAL is flushed, and holds the WAL until the copies are flushed', async () => {
  const path = join(dir, 'db');
  const db = writer(path);
  db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
  const wal = new HeldFlusher();
  const file = new HeldFlusher();
  const errors: unknown[] = [];
  const cp = new WalCheckpointer(path, db, wal, file, (e) => errors.push(e), { spacingMs: 0 });
  const before = statSync(path).size;
  db.prepare('INSERT INTO t (v) VALUES (?)').run('x'.repeat(200_000));

  cp.committed();
  await tick();
  // The WAL flush is under way: nothing copied yet.
  expect(wal.calls).toBe(1);
  expect(file.calls).toBe(0);
  expect(statSync(path).size).toBe(before);

  wal.release();
  await tick();
  // Copied into the database file, whose flush is now under way.
  expect(file.calls).toBe(1);
  expect(statSync(path).size).toBeGreaterThan(before + 150_000);
  // Until it ends the WAL cannot be rewritten from its start: a checkpoint that would reset it is refused.
  let done = false;
  const idle = cp.idle().then(() => (done = true));
  await tick();
  expect(done).toBe(false);
  expect((db.prepare('PRAGMA wal_checkpoint(TRUNCATE)').get() as { busy: number }).busy).toBe(1);

  file.release();
  await idle;
  expect((db.prepare('PRAGMA wal_checkpoint(TRUNCATE)').get() as { busy: number }).busy).toBe(0);
  expect(statSync(`${path}-wal`).size).toBe(0);
  expect(errors).toEqual([]);
  cp.close();
  db.close();
});

test('once the WAL has grown past the restart size, the writer checkpoints once itself and the WAL starts over', async () => {
  const path = join(dir, 'db');
  const db = writer(path);
  const wal = new HeldFlusher();
  const file = new HeldFlusher();
  const cp = new WalCheckpointer(path, db, wal, file, (e) => { throw e; }, { spacingMs: 0, restartFrames: 20 });
  const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
  insert.run('y'.repeat(200_000));
  cp.committed();
  await tick();
  wal.release();
  await tick();
  file.release();
  await cp.idle();
  expect(cp.cycles).toBe(1);
  // The next commit: the writer's own checkpoint (SQLite's, synced), not another cycle.
  insert.run('z');
  cp.committed();
  expect(cp.catchUps).toBe(1);
  expect(cp.cycles).toBe(1);
  const size = statSync(`${path}-wal`).size;
  // Everything copied, nobody reading the WAL: the next commit writes at its start, the file does not grow.
  insert.run('w');
  expect(statSync(`${path}-wal`).size).toBe(size);
  cp.close();
  db.close();
});

test('a server store writing steadily keeps its WAL bounded and every acknowledged row', async () => {
  const path = join(dir, 'fleet-server.db');
  let store = new SqliteStore(path, { server: true, secretsKey: 'k'.repeat(40) });
  let maxWal = 0;
  const ids: string[] = [];
  // 60 turns of 100 agents with ~3 KiB documents each: ~18 MiB written, over the 16 MiB restart size.
  for (let turn = 0; turn < 60; turn++) {
    const writes: Promise<unknown>[] = [];
    for (let i = 0; i < 100; i++) {
      const id = `agent-${turn}-${i}`;
      ids.push(id);
      writes.push(store.createAgent(id, { agent: { id, version: '9.5.0' }, active: true, policy_id: 'p', local_metadata: { pad: 'p'.repeat(3000) } } as never));
    }
    await Promise.all(writes);
    maxWal = Math.max(maxWal, statSync(`${path}-wal`).size);
  }
  await store.close();
  expect(maxWal).toBeLessThan(48 * 1024 * 1024);
  store = new SqliteStore(path, { server: true, secretsKey: 'k'.repeat(40) });
  for (const id of [ids[0]!, ids[3000]!, ids[ids.length - 1]!]) expect((await store.getAgent(id))?._id).toBe(id);
  await store.close();
});
