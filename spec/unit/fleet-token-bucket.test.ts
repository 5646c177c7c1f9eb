// The pacer behind policy_limit and action_limit (util/token-bucket.ts): waiters in arrival order from one
// timer, and a waiter an AbortSignal takes out of the queue at once. Timers and Date on jest's clock.
import { TokenBucket } from '../../src/util/token-bucket';

beforeEach(() => jest.useFakeTimers());
afterEach(() => jest.useRealTimers());

/** One token per 100 ms, burst 1, read from the faked Date; the first token already taken. */
async function drained(): Promise<TokenBucket> {
  const bucket = new TokenBucket(100, 1, () => Date.now());
  await bucket.take();
  return bucket;
}

test('waiters are served in arrival order from one timer; a newcomer does not take the token the oldest waits for', async () => {
  const bucket = await drained();
  const order: string[] = [];
  const waiting = ['a', 'b', 'c'].map((n) => bucket.take().then(() => order.push(n)));
  expect(jest.getTimerCount()).toBe(1);
  // The next token is due, but the timer that serves the queue has not run yet: a newcomer queues behind.
  jest.setSystemTime(Date.now() + 100);
  expect(bucket.tryTake()).toBe(false);
  waiting.push(bucket.take().then(() => order.push('late')));
  expect(jest.getTimerCount()).toBe(1);
  await jest.advanceTimersByTimeAsync(400);
  await Promise.all(waiting);
  expect(order).toEqual(['a', 'b', 'c', 'late']);
  expect(jest.getTimerCount()).toBe(0);
});

test('an aborted waiter leaves at once with the signal\'s reason; the token goes to the next; no timer outlives the queue', async () => {
  const bucket = await drained();
  const order: string[] = [];
  const ac = new AbortController();
  void bucket.take(ac.signal).then(() => order.push('first'), (err: unknown) => order.push(`first: ${String(err)}`));
  void bucket.take().then(() => order.push('second'));
  ac.abort('gone');
  await jest.advanceTimersByTimeAsync(0);
  expect(order).toEqual(['first: gone']);
  expect(bucket.queued).toBe(1);
  await jest.advanceTimersByTimeAsync(100);
  expect(order).toEqual(['first: gone', 'second']);
  expect(jest.getTimerCount()).toBe(0);

  // The only waiter cancelled: its timer goes with it.
  const alone = new AbortController();
  const cancelled = bucket.take(alone.signal).catch((err: unknown) => `cancelled: ${String(err)}`);
  expect(jest.getTimerCount()).toBe(1);
  alone.abort('closed');
  expect(await cancelled).toBe('cancelled: closed');
  expect(jest.getTimerCount()).toBe(0);
  // An already aborted signal never queues.
  await expect(bucket.take(AbortSignal.abort('late'))).rejects.toBe('late');
  expect(bucket.queued).toBe(0);
});

test('an unlimited bucket never waits', async () => {
  const bucket = new TokenBucket(0, 5, () => Date.now());
  for (let i = 0; i < 10; i++) await bucket.take();
  expect(bucket.tryTake()).toBe(true);
  expect(jest.getTimerCount()).toBe(0);
});
