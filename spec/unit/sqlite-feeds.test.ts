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
