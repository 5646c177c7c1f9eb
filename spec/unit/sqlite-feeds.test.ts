// The embedded store's change feeds read what has committed, never the rows of a group of writes still
// open on the writer's connection (src/store/sqlite/store.ts, feedDb): an action handed to agents from
// there could be taken back by a COMMIT that fails, and its seq given to the next action.
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { ActionDoc } from '../../src/store/documents';
import { SqliteStore } from '../../src/store/sqlite/store';
import { removeDir, tempDir } from '../support/fleet-server';

test('a feed sees an action once its write committed, not while its transaction is open', async () => {
  const dir = tempDir();
  const store = new SqliteStore(join(dir, 'fleet-server.db'), { server: true });
  try {
    const now = Date.now();
    const doc = (): ActionDoc => ({ action_id: randomUUID(), '@timestamp': new Date(now).toISOString(), type: 'SETTINGS',
      expiration: new Date(now + 3600e3).toISOString(), agents: ['a1'] });
    const before = await store.actionChanges.checkpoint();
    const created = store.createActions([doc()]);
    // The INSERT ran in this turn's transaction, which commits in a later turn.
    expect(await store.actionChanges.checkpoint()).toBe(before);
    const [hit] = await created;
    expect(await store.actionChanges.checkpoint()).toBe(hit!._seq_no);
    const next = await store.actionChanges.next(before, 1000, new AbortController().signal);
    expect(next.hits.map((h) => h._id)).toEqual([hit!._id]);
  } finally {
    await store.close();
    removeDir(dir);
  }
});

describe('a feed reads only what is durable', () => {
  interface Wal { lost: Error | undefined }
  const action = (): ActionDoc => ({ action_id: randomUUID(), '@timestamp': new Date().toISOString(), type: 'SETTINGS',
    expiration: new Date(Date.now() + 3600e3).toISOString(), agents: ['a1'] });
  let dir: string;
  let store: SqliteStore;
  let wal: Wal;
  beforeEach(() => {
    dir = tempDir();
    store = new SqliteStore(join(dir, 'fleet-server.db'), { server: true });
    wal = (store as unknown as { wal: Wal }).wal;
  });
  afterEach(async () => {
    await store.close().catch(() => undefined);
    removeDir(dir);
  });

  /**
   * The next group's WAL flush waits for the returned function (the group commit's, not the
   * checkpointer's); called with an error, the flush fails for good, as a failed fdatasync does.
   */
  function holdNextFlush(): (err?: Error) => void {
    const hooks = (store as unknown as { commits: { hooks: { durable(): Promise<void> } } }).commits.hooks;
    const real = hooks.durable;
    let end!: (err?: Error) => void;
    hooks.durable = () => new Promise<void>((resolve, reject) => {
      hooks.durable = real;
      end = (err) => {
        if (!err) return void real().then(resolve, reject);
        wal.lost = err;
        reject(err);
      };
    });
    return (err) => end(err);
  }

  test('an action committed while its WAL flush runs is handed out once the flush has ended', async () => {
    const before = await store.actionChanges.checkpoint();
    const release = holdNextFlush();
    const created = store.createActions([action()]);
    const waiting = store.actionChanges.next(before, 5000, new AbortController().signal);
    await new Promise((r) => setTimeout(r, 50)); // the COMMIT has run: another connection sees the row
    expect((store as unknown as { maxSeq(t: string): number }).maxSeq('actions')).toBeGreaterThan(before);
    expect(await store.actionChanges.checkpoint()).toBe(before);
    release();
    const [hit] = await created;
    expect((await waiting).hits.map((h) => h._id)).toEqual([hit!._id]);
    expect(await store.actionChanges.checkpoint()).toBe(hit!._seq_no);
  });

  test('an action whose WAL flush failed is never handed out', async () => {
    const before = await store.actionChanges.checkpoint();
    const release = holdNextFlush();
    const created = store.createActions([action()]);
    await new Promise((r) => setTimeout(r, 50));
    release(new Error('EIO'));
    await expect(created).rejects.toThrow();
    expect(await store.actionChanges.checkpoint()).toBe(before);
    expect((await store.actionChanges.next(before, 300, new AbortController().signal)).hits).toEqual([]);
  });

  test('the latest policy revision is read only once durable, as its feed hands it out', async () => {
    const doc = (rev: number) => ({ '@timestamp': new Date().toISOString(), policy_id: 'p1', revision_idx: rev, coordinator_idx: 1,
      default_fleet_server: false, data: { id: 'p1', revision: rev, outputs: {} } });
    await store.addPolicyRevision(doc(1));
    const release = holdNextFlush();
    const second = store.addPolicyRevision(doc(2));
    await new Promise((r) => setTimeout(r, 50));
    expect((await store.latestPolicy('p1'))!._source.revision_idx).toBe(1);
    expect((await store.latestPolicies()).map((h) => h._source.revision_idx)).toEqual([1]);
    release();
    await second;
    expect((await store.latestPolicy('p1'))!._source.revision_idx).toBe(2);
    expect((await store.latestPolicies()).map((h) => h._source.revision_idx)).toEqual([2]);
  });

  test('another process\'s write is handed out only once a flush of the WAL has covered it', async () => {
    const before = await store.actionChanges.checkpoint();
    // The WAL cannot be flushed: what the other process wrote may not be on disk.
    wal.lost = new Error('EIO');
    const cli = new SqliteStore(join(dir, 'fleet-server.db'));
    await cli.createActions([action()]);
    await cli.close();
    expect((await store.actionChanges.next(before, 700, new AbortController().signal)).hits).toEqual([]);
    wal.lost = undefined;
    expect((await store.actionChanges.next(before, 5000, new AbortController().signal)).hits).toHaveLength(1);
  });

  test('another process\'s write (the admin CLI) is handed out when noticed', async () => {
    const before = await store.actionChanges.checkpoint();
    const waiting = store.actionChanges.next(before, 5000, new AbortController().signal);
    const cli = new SqliteStore(join(dir, 'fleet-server.db'));
    const [hit] = await cli.createActions([action()]);
    await cli.close();
    expect((await waiting).hits.map((h) => h._id)).toEqual([hit!._id]);
  });
});
