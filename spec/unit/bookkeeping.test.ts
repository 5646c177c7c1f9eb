// Check-in bookkeeping as the server stops: the last flush writes the records with news, and leaves
// out held polls' timestamp refreshes (their agents check in again wherever they reconnect).
import pino from 'pino';
import { Bookkeeper } from '../../src/fleet/bookkeeping';
import type { AgentDoc } from '../../src/store/documents';
import type { DocUpdate, Store } from '../../src/store/port';

function recording(): { store: Store; writes: DocUpdate<AgentDoc>[][] } {
  const writes: DocUpdate<AgentDoc>[][] = [];
  return { writes, store: { bulkUpdateAgents: async (u: DocUpdate<AgentDoc>[]) => void writes.push(u) } as unknown as Store };
}

test('the last flush leaves out records that are only timestamp refreshes; a refresh over news keeps it', async () => {
  const { store, writes } = recording();
  const b = new Bookkeeper(store, 60_000, pino({ level: 'silent' }));
  b.touch('held-only', 'online', 'Running');
  b.enqueue('news', { status: 'degraded', message: 'a unit failed', components: [{ id: 'c' }] });
  b.enqueue('news-then-touched', { status: 'online', message: 'Running', policyRevisionIdx: 3 });
  b.touch('news-then-touched', 'online', 'Running');
  b.touch('touched-then-news', 'online', 'Running');
  b.enqueue('touched-then-news', { status: 'error', message: 'down' });
  await b.stop();
  expect(writes).toHaveLength(1);
  expect(writes[0]!.map((u) => u.id).sort()).toEqual(['news', 'news-then-touched', 'touched-then-news']);
  expect(writes[0]!.find((u) => u.id === 'news-then-touched')!.doc).toMatchObject({ policy_revision_idx: 3 });
  expect(b.size).toBe(0);
});

test('while serving, timestamp refreshes are written like any record', async () => {
  const { store, writes } = recording();
  const b = new Bookkeeper(store, 60_000, pino({ level: 'silent' }));
  b.touch('held', 'online', 'Running');
  await b.flush();
  expect(writes).toEqual([[expect.objectContaining({ id: 'held', doc: expect.objectContaining({ last_checkin_status: 'online' }) })]]);
});
