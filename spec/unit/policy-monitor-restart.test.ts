// A Fleet start that fails part-way (the store answered the policy monitor, then failed the action
// monitor's checkpoint) is retried by the server instance: the retry must not start a second policy loop.
import type { ChangeFeed } from '../../src/store/port';
import { esPolicy, InProcessFleet, until } from '../support/in-process-fleet';

/** Counts the waits on a change feed in flight: one per loop that follows it. */
function waitsOn<T>(feed: ChangeFeed<T>): { now: number } {
  const waits = { now: 0 };
  const next = feed.next.bind(feed);
  feed.next = async (...args) => {
    waits.now++;
    try {
      return await next(...args);
    } finally {
      waits.now--;
    }
  };
  return waits;
}

async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
}

test('a retried Fleet.start whose first try failed after the policy monitor started runs one policy loop', async () => {
  const f = new InProcessFleet();
  await f.admin.putPolicy(esPolicy('p1'));
  // Policy-change waits in flight: one per running loop.
  const waits = waitsOn(f.store.policyChanges);
  const checkpoint = f.store.actionChanges.checkpoint.bind(f.store.actionChanges);
  let failures = 1;
  f.store.actionChanges.checkpoint = () => (failures-- > 0 ? Promise.reject(new Error('store unavailable')) : checkpoint());

  try {
    await expect(f.fleet.start()).rejects.toThrow('store unavailable');
    await f.fleet.start();
    await settle();
    expect(waits.now).toBe(1);
    // The one loop still follows the policies.
    await f.admin.putPolicy(esPolicy('p1', { inputs: [{ id: 'i1', type: 'logfile' }] }));
    await until(async () => (await f.fleet.policies.latest('p1'))?.revisionIdx === 2);
  } finally {
    await f.stop();
  }
  expect(waits.now).toBe(0);
});

test('the action dispatcher, started twice, runs one loop', async () => {
  const f = new InProcessFleet();
  const waits = waitsOn(f.store.actionChanges);
  const abort = new AbortController();
  try {
    await f.fleet.dispatcher.start(abort.signal);
    await f.fleet.dispatcher.start(abort.signal);
    await settle();
    // Old: two loops, each waiting on the action feed (every action pushed twice).
    expect(waits.now).toBe(1);
  } finally {
    abort.abort();
    await f.stop();
  }
});
