// Replace-token hashes (fleet/replace-token.ts) go through a per-process gate: at most two run on the
// thread pool at once, a bounded number wait, and beyond that the enroll is refused 429 MaxLimit with
// Retry-After. Counted with an injected hasher, not timed.
import { FleetError } from '../../src/fleet/errors';
import { HashGate, hashReplaceToken, replaceTokenHashes, replaceTokenMatches, type Pbkdf2Fn } from '../../src/fleet/replace-token';
import { classify } from '../../src/http/errors';

/** A hasher whose calls are held until released; counts how many run at once. */
function heldHasher() {
  const pending: (() => void)[] = [];
  const state = { running: 0, maxRunning: 0, calls: 0 };
  const fn: Pbkdf2Fn = (_p, _s, _i, keyLength) => new Promise((resolve) => {
    state.calls++;
    state.running++;
    state.maxRunning = Math.max(state.maxRunning, state.running);
    pending.push(() => {
      state.running--;
      resolve(Buffer.alloc(keyLength, 7));
    });
  });
  const releaseAll = async (): Promise<void> => {
    while (pending.length) {
      pending.shift()!();
      for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    }
  };
  return { fn, state, releaseAll };
}

const turns = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
};

test('no more hashes run at once than the gate allows; the rest wait their turn and all complete', async () => {
  const h = heldHasher();
  const gate = new HashGate(2, 64, h.fn);
  const all = Array.from({ length: 20 }, () => gate.hash('t', Buffer.from('salt'), 1000, 32));
  await turns();
  expect(h.state.running).toBe(2);
  expect(gate.queued).toBe(18);
  await h.releaseAll();
  expect((await Promise.all(all)).every((b) => b.length === 32)).toBe(true);
  expect(h.state).toEqual({ running: 0, maxRunning: 2, calls: 20 });
  expect(gate.queued).toBe(0);
});

test('beyond the queue a hash is refused at once, 429 MaxLimit with Retry-After; slots free again once hashes end', async () => {
  const h = heldHasher();
  const gate = new HashGate(2, 3, h.fn);
  const admitted = Array.from({ length: 5 }, () => gate.hash('t', Buffer.from('salt'), 1000, 32));
  await turns();
  const refused = await gate.hash('t', Buffer.from('salt'), 1000, 32).then(() => undefined, (e: unknown) => e);
  expect(refused).toBeInstanceOf(FleetError);
  expect(classify(refused)).toMatchObject({ status: 429, error: 'MaxLimit' });
  expect(classify(refused).retryAfter).toBeGreaterThan(0);
  expect(h.state.calls).toBe(2);
  await h.releaseAll();
  await Promise.all(admitted);
  const later = gate.hash('t', Buffer.from('salt'), 1000, 32);
  await h.releaseAll();
  await expect(later).resolves.toHaveLength(32);
  expect(h.state.maxRunning).toBe(2);
});

test('a hasher that fails gives its slot back', async () => {
  let calls = 0;
  const gate = new HashGate(1, 1, async () => {
    calls++;
    throw new Error('pool error');
  });
  await expect(gate.hash('t', Buffer.alloc(4), 1, 32)).rejects.toThrow('pool error');
  await expect(gate.hash('t', Buffer.alloc(4), 1, 32)).rejects.toThrow('pool error');
  expect(calls).toBe(2);
});

test('hashing and checking a replace token both pass through the gate; the process gate admits two at once', async () => {
  const h = heldHasher();
  const gate = new HashGate(2, 64, h.fn);
  const hashed = hashReplaceToken('swap', { iterations: 1000, keyLength: 32, saltLength: 16 }, gate);
  await turns();
  await h.releaseAll();
  const stored = await hashed;
  expect(stored).toMatch(/^\$pbkdf2-sha512\$1000\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/);
  const checked = replaceTokenMatches('swap', stored, gate);
  await turns();
  await h.releaseAll();
  await expect(checked).resolves.toBe(true);
  expect(h.state.calls).toBe(2);
  // The real one, with real hashes: three at once, two running.
  const real = Array.from({ length: 3 }, () => hashReplaceToken('swap', { iterations: 1000, keyLength: 32, saltLength: 16 }));
  expect(replaceTokenHashes.queued).toBe(1);
  await Promise.all(real);
  expect(replaceTokenHashes.queued).toBe(0);
});
