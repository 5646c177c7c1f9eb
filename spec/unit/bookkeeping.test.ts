// Check-in bookkeeping as the server stops: once it lets its held polls go, flushes write the records
// with news and leave out held polls' timestamp refreshes (their agents check in again wherever they
// reconnect).
import pino from 'pino';
import { Bookkeeper } from '../../src/fleet/bookkeeping';
import { StoreUnavailableError, type DocUpdate, type Store } from '../../src/store/port';
import type { AgentDoc } from '../../src/store/documents';

function recording(): { store: Store; writes: DocUpdate<AgentDoc>[][] } {
  const writes: DocUpdate<AgentDoc>[][] = [];
  return { writes, store: { bulkUpdateAgents: async (u: DocUpdate<AgentDoc>[]) => void writes.push(u) } as unknown as Store };
}

const ids = (w: DocUpdate<AgentDoc>[] | undefined): string[] => (w ?? []).map((u) => u.id).sort();

test('once released, only records with news are written; a refresh over news keeps it', async () => {
  const { store, writes } = recording();
  const b = new Bookkeeper(store, 60_000, pino({ level: 'silent' }));
  b.touch('held-only', 'online', 'Running');
  b.enqueue('news-then-touched', { status: 'online', message: 'Running', policyRevisionIdx: 3 });
  b.touch('news-then-touched', 'online', 'Running');
  b.touch('touched-then-news', 'online', 'Running');
  b.enqueue('touched-then-news', { status: 'error', message: 'down' });
  b.release();
  b.touch('refreshed-after', 'online', 'Running');
  b.enqueue('news-after', { status: 'degraded', message: 'a unit failed', components: [{ id: 'c' }] });
  await b.stop();
  expect(writes).toHaveLength(1);
  expect(ids(writes[0])).toEqual(['news-after', 'news-then-touched', 'touched-then-news']);
  expect(writes[0]!.find((u) => u.id === 'news-then-touched')!.doc).toMatchObject({ policy_revision_idx: 3 });
  expect(b.size).toBe(0);
});

test('a batch that fails after the release is put back without its refreshes', async () => {
  const writes: DocUpdate<AgentDoc>[][] = [];
  let started!: () => void;
  const inFlight = new Promise<void>((r) => (started = r));
  let fail!: () => void;
  let calls = 0;
  const store = {
    bulkUpdateAgents: (u: DocUpdate<AgentDoc>[]) => {
      if (calls++ > 0) return Promise.resolve(void writes.push(u));
      started();
      return new Promise<void>((_, reject) => (fail = () => reject(new StoreUnavailableError('database or disk is full'))));
    },
  } as unknown as Store;
  const b = new Bookkeeper(store, 60_000, pino({ level: 'silent' }));
  b.touch('held', 'online', 'Running');
  b.enqueue('acked', { status: 'online', message: 'Running', policyRevisionIdx: 2 });
  const first = b.flush();
  await inFlight;
  // The server starts stopping while the batch with the refresh is being written; the write fails.
  b.release();
  fail();
  await first;
  await b.stop();
  expect(writes.map(ids)).toEqual([['acked']]);
});

test('while serving, timestamp refreshes are written like any record', async () => {
  const { store, writes } = recording();
  const b = new Bookkeeper(store, 60_000, pino({ level: 'silent' }));
  b.touch('held', 'online', 'Running');
  await b.flush();
  expect(writes).toEqual([[expect.objectContaining({ id: 'held', doc: expect.objectContaining({ last_checkin_status: 'online' }) })]]);
});

test('plain refreshes of the same second, status and message share one document; any other field gets its own', async () => {
  const { store, writes } = recording();
  let now = Date.UTC(2026, 11, 5, 4, 0, 0, 100);
  const b = new Bookkeeper(store, 60_000, pino({ level: 'silent' }), { now: () => now });
  b.touch('a', 'online', 'Running');
  b.touch('b', 'online', 'Running');
  b.enqueue('c', { status: 'online', message: 'Running' });
  b.touch('other-status', 'degraded', 'Running');
  b.enqueue('with-news', { status: 'online', message: 'Running', policyRevisionIdx: 2 });
  b.enqueue('unhealthy', { status: 'online', message: 'Running', unhealthyReason: ['input'] });
  // Held polls of agents that keep a reason share one too (old: a document each).
  b.touch('unhealthy-held-1', 'online', 'Running', { unhealthyReason: ['input'] });
  b.touch('unhealthy-held-2', 'online', 'Running', { unhealthyReason: ['input'] });
  b.touch('unhealthy-held-3', 'online', 'Running', { unhealthyReason: ['output'] });
  b.enqueue('audit-cleared', { status: 'online', message: 'Running', clearAudit: true });
  // The agents' own texts: no pair of them may be taken for another pair.
  b.touch('texts-1', 'online\nX', 'Y');
  b.touch('texts-2', 'online', 'X\nY');
  now += 1000;
  b.touch('next-second', 'online', 'Running');
  await b.flush();
  const doc = (id: string): object => writes[0]!.find((u) => u.id === id)!.doc;
  expect(doc('b')).toBe(doc('a'));
  expect(doc('c')).toBe(doc('a'));
  expect(doc('a')).toEqual({
    updated_at: '2026-12-05T04:00:01Z', last_checkin: '2026-12-05T04:00:00Z', last_checkin_status: 'online',
    last_checkin_message: 'Running', unhealthy_reason: null, sequence_num: 0,
  });
  for (const id of ['other-status', 'with-news', 'unhealthy', 'audit-cleared', 'next-second']) expect(doc(id)).not.toBe(doc('a'));
  expect(writes[0]!.find((u) => u.id === 'audit-cleared')!.unset).toContain('audit_unenrolled_reason');
  expect(doc('texts-1')).toMatchObject({ last_checkin_status: 'online\nX', last_checkin_message: 'Y' });
  expect(doc('texts-2')).toMatchObject({ last_checkin_status: 'online', last_checkin_message: 'X\nY' });
  expect(Object.isFrozen(doc('a'))).toBe(true);
  expect(doc('with-news')).toMatchObject({ last_checkin: '2026-12-05T04:00:00Z', policy_revision_idx: 2 });
  expect(doc('unhealthy')).toMatchObject({ unhealthy_reason: ['input'] });
  expect(doc('unhealthy-held-1')).toBe(doc('unhealthy'));
  expect(doc('unhealthy-held-2')).toBe(doc('unhealthy'));
  expect(doc('unhealthy-held-3')).toMatchObject({ unhealthy_reason: ['output'] });
  expect(doc('unhealthy-held-3')).not.toBe(doc('unhealthy'));
  expect(doc('next-second')).toMatchObject({ last_checkin: '2026-12-05T04:00:01Z' });
});
