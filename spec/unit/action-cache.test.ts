// Upstream's action cache, shared by acks and upgrade details: hits for ttl_action, misses a minute and
// apart from the hits, one store lookup per action however many ask at once.
import { ActionCache } from '../../src/fleet/action-cache';
import type { ActionDoc, Hit } from '../../src/store/documents';
import type { Store } from '../../src/store/port';
import { ManualClock } from '../support/manual-clock';

interface FakeStore {
  store: Store;
  lookups: string[];
  /** Lookups wait until release(). */
  hold(): void;
  release(): void;
}

function fakeStore(known: Set<string>): FakeStore {
  const lookups: string[] = [];
  let held: Promise<void> | undefined;
  let release = (): void => undefined;
  const store = {
    findAction: async (id: string): Promise<Hit<ActionDoc> | undefined> => {
      lookups.push(id);
      if (held) await held;
      return known.has(id) ? { _id: `doc-${id}`, _source: { action_id: id, type: 'SETTINGS' } as ActionDoc } : undefined;
    },
  } as unknown as Store;
  return {
    store, lookups,
    hold: () => { held = new Promise((r) => (release = r)); },
    release: () => release(),
  };
}

test('many asking at once for one action cost one lookup; hits last ttl_action, misses a minute', async () => {
  const clock = new ManualClock(0);
  const f = fakeStore(new Set(['a']));
  const cache = new ActionCache(f.store, 300_000, 10_000, clock);
  f.hold();
  const asks = Array.from({ length: 1000 }, () => cache.find('a'));
  f.release();
  // Old: one lookup each (the acks of a rollout for one action, all at once).
  expect((await Promise.all(asks)).every((a) => a?.type === 'SETTINGS')).toBe(true);
  expect(f.lookups).toEqual(['a']);
  expect(await cache.find('gone')).toBeUndefined();
  expect(await cache.find('gone')).toBeUndefined();
  expect(f.lookups).toEqual(['a', 'gone']);
  clock.advance(61_000);
  await cache.find('gone');
  await cache.find('a');
  expect(f.lookups).toEqual(['a', 'gone', 'gone']);
  clock.advance(300_000);
  await cache.find('a');
  expect(f.lookups).toEqual(['a', 'gone', 'gone', 'a']);
});

test('a flood of unknown ids does not push a known action out', async () => {
  const f = fakeStore(new Set(['known']));
  const cache = new ActionCache(f.store, 300_000, 100);
  await cache.find('known');
  for (let i = 0; i < 5000; i++) await cache.find(`unknown-${i}`);
  f.lookups.length = 0;
  // Old: misses shared the LRU with the hits, so 100 unknown ids evicted it.
  expect((await cache.find('known'))?.id).toBe('known');
  expect(f.lookups).toEqual([]);
});

test('a store fault is thrown to every asker and not remembered', async () => {
  let fail = true;
  const store = { findAction: async (id: string) => {
    if (fail) throw new Error('store down');
    return { _id: 'd', _source: { action_id: id, type: 'UPGRADE' } };
  } } as unknown as Store;
  const cache = new ActionCache(store, 300_000);
  await expect(Promise.all([cache.find('x'), cache.find('x')])).rejects.toThrow('store down');
  fail = false;
  expect((await cache.find('x'))?.type).toBe('UPGRADE');
});
