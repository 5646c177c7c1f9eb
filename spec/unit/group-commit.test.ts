// Group commit in the embedded store: writes of one event-loop turn share one transaction, each is
// acknowledged only once that transaction has committed (another connection sees it by then), and a
// failing write undoes only itself.
import { DatabaseSync } from 'node:sqlite';
import { GroupCommit } from '../../src/store/sqlite/group-commit';
import { removeDir, tempDir } from '../support/fleet-server';

let dir: string;
let db: DatabaseSync;
let other: DatabaseSync;
let commits: { tables: string[]; rowsChanged: boolean }[];
let gc: GroupCommit;
/** What the next flush does; by default it succeeds at once. */
let flush: () => Promise<void>;
let flushes: number;
/** Commits that reported writing pages (the checkpointer's cue). */
let wrote: number;
/** What the lost hook says: set once a flush has failed for good. */
let lostError: Error | undefined;

beforeEach(() => {
  dir = tempDir();
  db = new DatabaseSync(`${dir}/t.db`);
  db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)');
  other = new DatabaseSync(`${dir}/t.db`);
  commits = [];
  flushes = 0;
  wrote = 0;
  lostError = undefined;
  flush = () => Promise.resolve();
  gc = new GroupCommit(db, {
    durable: () => {
      flushes++;
      return flush();
    },
    failed: (err) => err,
    totalChanges: () => Number((db.prepare('SELECT total_changes() AS n').get() as { n: number }).n),
    committed: (tables, rowsChanged) => commits.push({ tables: [...tables], rowsChanged }),
    wrote: () => wrote++,
    lost: () => lostError,
  });
});
afterEach(() => {
  gc.flush();
  db.close();
  other.close();
  removeDir(dir);
});

const count = (): number => Number((other.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n);

test('writes of one turn commit together, and each resolves only after the commit', async () => {
  const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
  const acks = Array.from({ length: 100 }, (_, i) => gc.write(() => Number(insert.run(`v${i}`).lastInsertRowid), ['t']));
  // Not yet committed: another connection sees nothing.
  expect(count()).toBe(0);
  const ids = await Promise.all(acks);
  expect(count()).toBe(100);
  expect(ids).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
  expect(commits).toEqual([{ tables: ['t'], rowsChanged: true }]);
  // The next turn's write is a new transaction.
  await gc.write(() => insert.run('later'));
  expect(commits).toHaveLength(2);
});

test('a failing write undoes only itself; the others of its turn commit', async () => {
  const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
  const first = gc.write(() => insert.run('a'));
  const failing = gc.write(() => {
    insert.run('b');
    insert.run(null as unknown as string); // NOT NULL constraint
  });
  const third = gc.write(() => insert.run('c'));
  await expect(failing).rejects.toThrow(/NOT NULL/);
  await Promise.all([first, third]);
  expect((other.prepare('SELECT v FROM t ORDER BY id').all() as { v: string }[]).map((r) => r.v)).toEqual(['a', 'c']);
});

test('a turn whose only changes were undone writes no pages, and says so (the checkpointer relies on it)', async () => {
  const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
  await expect(gc.write(() => {
    insert.run('b');
    insert.run(null as unknown as string);
  })).rejects.toThrow(/NOT NULL/);
  await new Promise((r) => setImmediate(r));
  expect(wrote).toBe(0);
  expect(commits.at(-1)?.rowsChanged ?? false).toBe(false);
  await gc.write(() => insert.run('a'));
  expect(wrote).toBe(1);
  expect(commits.at(-1)?.rowsChanged).toBe(true);
});

test('writes are acknowledged only once the committed WAL is flushed; a failed flush rejects them all', async () => {
  const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
  let release!: () => void;
  flush = () => new Promise<void>((r) => { release = r; });
  let acked = 0;
  const acks = [gc.write(() => insert.run('a')), gc.write(() => insert.run('b'))].map((p) => p.then(() => acked++));
  await new Promise((r) => setImmediate(r));
  // Committed (visible to another connection) but not yet flushed: not acknowledged.
  expect(count()).toBe(2);
  expect(flushes).toBe(1);
  expect(acked).toBe(0);
  release();
  await Promise.all(acks);
  expect(acked).toBe(2);

  flush = () => Promise.reject(new Error('EIO: i/o error, fdatasync'));
  await expect(gc.write(() => insert.run('c'))).rejects.toThrow(/EIO/);
});

test('a flush that failed for good: the writes waiting for the next commit are undone, and every later write fails', async () => {
  const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
  let fail!: (err: Error) => void;
  flush = () => new Promise<void>((_, reject) => { fail = reject; });
  const turn = (): Promise<unknown> => new Promise((r) => setImmediate(r));
  const a = gc.write(() => insert.run('a'));
  await turn();
  // Written while a's flush runs: in the open transaction.
  const b = gc.write(() => insert.run('b'));
  await turn();
  lostError = new Error('wal failed to flush to disk (EIO); writes are refused until fleet-server restarts');
  fail(new Error('EIO: i/o error, fdatasync'));
  await expect(a).rejects.toThrow(/refused until fleet-server restarts/);
  await expect(b).rejects.toThrow(/refused until fleet-server restarts/);
  // b never committed: no later flush could vouch for it.
  expect((other.prepare('SELECT v FROM t ORDER BY id').all() as { v: string }[]).map((r) => r.v)).toEqual(['a']);
  expect(db.isTransaction).toBe(false);
  // Later writes fail at once, without touching the database.
  let ran = false;
  await expect(gc.write(() => { ran = true; insert.run('c'); })).rejects.toThrow(/refused until fleet-server restarts/);
  expect(ran).toBe(false);
  expect(count()).toBe(1);
});

test('a group whose transaction SQLite rolled back under it fails as unavailable; the next write starts a group of its own', async () => {
  const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
  const a = gc.write(() => insert.run('a'));
  // As SQLite does after an I/O error or a full disk, also one met by a read on this connection.
  db.exec('ROLLBACK');
  const b = gc.write(() => insert.run('b'));
  await expect(a).rejects.toMatchObject({ name: 'StoreUnavailableError', message: expect.stringMatching(/rolled back/) });
  await b;
  expect((other.prepare('SELECT v FROM t ORDER BY id').all() as { v: string }[]).map((r) => r.v)).toEqual(['b']);
  // A group whose transaction went before it committed, with no write after: its writes fail too.
  const c = gc.write(() => insert.run('c'));
  db.exec('ROLLBACK');
  await expect(c).rejects.toMatchObject({ name: 'StoreUnavailableError' });
  expect(count()).toBe(1);
});

test('a flush outlasting the stall bound: the fault is shown, new writes fail at once, and both end with the flush', async () => {
  const faults: (string | undefined)[] = [];
  let stalled!: () => void;
  const seen = new Promise<void>((r) => (stalled = r));
  let release!: () => void;
  const slow = new GroupCommit(db, {
    durable: () => new Promise<void>((r) => { release = r; }), failed: (err) => err, totalChanges: () => 0, committed: () => undefined,
    stalled: (fault) => {
      faults.push(fault);
      if (fault) stalled();
    },
  }, { stallMs: 20 });
  const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
  const a = slow.write(() => insert.run('a'));
  await new Promise((r) => setImmediate(r));
  // Waiting for the next commit, behind the stalled flush: it fails with the stall, undone.
  const waiting = slow.write(() => insert.run('w'));
  await seen;
  await expect(waiting).rejects.toMatchObject({ name: 'StoreUnavailableError' });
  expect(db.isTransaction).toBe(false);
  expect(faults).toEqual([expect.stringMatching(/has not finished flushing to disk/)]);
  let ran = false;
  await expect(slow.write(() => { ran = true; })).rejects.toMatchObject({ name: 'StoreUnavailableError', clientMessage: expect.stringMatching(/disk is not responding/) });
  expect(ran).toBe(false);
  release();
  await a;
  // 'w' was never committed.
  expect(count()).toBe(1);
  expect(faults).toEqual([expect.any(String), undefined]);
  // Writes are taken again.
  const b = slow.write(() => insert.run('b'));
  await new Promise((r) => setTimeout(r, 10));
  release();
  await b;
});

test('writes that come in while a flush is under way share one transaction, committed when it ends', async () => {
  const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
  let release!: () => void;
  flush = () => new Promise<void>((r) => { release = r; });
  const turn = (): Promise<unknown> => new Promise((r) => setImmediate(r));
  const a = gc.write(() => insert.run('a'));
  await turn();
  expect(flushes).toBe(1);
  // Two later turns' writes: not committed yet (another connection does not see them).
  const b = gc.write(() => insert.run('b'));
  await turn();
  const c = gc.write(() => insert.run('c'));
  await turn();
  expect(count()).toBe(1);
  expect(commits).toHaveLength(0);
  flush = () => Promise.resolve();
  release();
  await a;
  await Promise.all([b, c]);
  expect(count()).toBe(3);
  expect(flushes).toBe(2);
  expect(commits).toHaveLength(2);
});

test('flush commits what is pending at once (before closing)', async () => {
  const ack = gc.write(() => db.prepare('INSERT INTO t (v) VALUES (?)').run('x'));
  gc.flush();
  expect(count()).toBe(1);
  await ack;
});

test('a COMMIT comes at least the gap after the one before: writes meanwhile wait for it together', async () => {
  let clock = 0;
  let spacedCommits = 0;
  const spaced = new GroupCommit(db, {
    durable: () => Promise.resolve(), failed: (err) => err, totalChanges: () => 0, committed: () => { spacedCommits++; },
  }, { gapMs: 60_000, now: () => clock });
  const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
  const turn = (): Promise<unknown> => new Promise((r) => setImmediate(r));
  try {
    // The first write after a quiet spell commits in its own turn.
    await spaced.write(() => insert.run('a'));
    expect(count()).toBe(1);
    // Within the gap (a minute from that COMMIT): later turns' writes are held in one open transaction.
    const b = spaced.write(() => insert.run('b'));
    await turn();
    const c = spaced.write(() => insert.run('c'));
    await turn();
    expect(count()).toBe(1);
    // Closing commits what is held at once, in one COMMIT.
    spaced.flush();
    await Promise.all([b, c]);
    expect(count()).toBe(3);
    expect(spacedCommits).toBe(2);
    // Once the gap has run out, a held write commits by itself.
    clock = 59_980;
    await spaced.write(() => insert.run('d'));
    expect(count()).toBe(4);
    expect(spacedCommits).toBe(3);
    // Past the gap, a write commits in its own turn again.
    clock = 200_000;
    await spaced.write(() => insert.run('e'));
    expect(count()).toBe(5);
  } finally {
    spaced.flush();
  }
});

test('a write held for the gap when the database closes fails instead of waiting for ever', async () => {
  const spaced = new GroupCommit(db, {
    durable: () => Promise.resolve(), failed: (err) => err, totalChanges: () => 0, committed: () => undefined,
  }, { gapMs: 20, now: () => 0 });
  await spaced.write(() => db.prepare('INSERT INTO t (v) VALUES (?)').run('a'));
  const held = spaced.write(() => db.prepare('INSERT INTO t (v) VALUES (?)').run('b'));
  db.close();
  await expect(held).rejects.toThrow(/closed before this write committed/);
  db = new DatabaseSync(`${dir}/t.db`);
});

test('a database locked by another process: one busy wait, then writes fail at once for a while, not a wait each', async () => {
  let now = 0;
  const locked = new GroupCommit(db, {
    durable: () => Promise.resolve(), failed: (err) => err, totalChanges: () => 0, committed: () => undefined,
  }, { now: () => now, lockedRetryMs: 1000 });
  db.exec('PRAGMA busy_timeout = 300');
  other.exec('BEGIN IMMEDIATE');
  const insert = (v: string) => () => db.prepare('INSERT INTO t (v) VALUES (?)').run(v);
  const started = Date.now();
  // Each BEGIN waits on the event loop: five waits would hold it 1.5 s.
  const writes = ['a', 'b', 'c', 'd', 'e'].map((v) => locked.write(insert(v)));
  const waited = Date.now() - started;
  for (const w of writes) await expect(w).rejects.toThrow(/locked/);
  expect(waited).toBeLessThan(900);
  other.exec('ROLLBACK');
  // Still within the retry time: refused without waiting.
  await expect(locked.write(insert('f'))).rejects.toThrow(/locked/);
  now += 1000;
  await locked.write(insert('g'));
  expect((other.prepare('SELECT v FROM t').all() as { v: string }[]).map((r) => r.v)).toEqual(['g']);
});
