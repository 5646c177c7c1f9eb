// The API-key cache (fleet/auth.ts): a key is checked in the store once, then answered from the cache
// (a peppered digest of its secret); another secret for the same id goes back to the store.
import { Authenticator } from '../../src/fleet/auth';
import type { Store } from '../../src/store/port';

function setup() {
  const checks: string[] = [];
  const store = {
    checkApiKey: async (id: string, secret: string) => {
      checks.push(`${id}:${secret}`);
      return secret === 'right' ? 'valid' : 'invalid';
    },
  } as unknown as Store;
  return { checks, auth: new Authenticator(store, { ttlApiKeyMs: 60_000, jitterApiKeyMs: 1000 }) };
}

test('a key checked once is answered from the cache; a wrong secret for it is not', async () => {
  const { checks, auth } = setup();
  await auth.authenticate({ id: 'k1', key: 'right' });
  await auth.authenticate({ id: 'k1', key: 'right' });
  expect(checks).toEqual(['k1:right']);
  expect(auth.stats).toEqual({ hits: 1, misses: 1 });
  await expect(auth.authenticate({ id: 'k1', key: 'wrong' })).rejects.toMatchObject({ code: 'Unauthorized' });
  expect(checks).toEqual(['k1:right', 'k1:wrong']);
  // The right secret still passes from the cache.
  await auth.authenticate({ id: 'k1', key: 'right' });
  expect(checks).toHaveLength(2);
});

test('a remembered (freshly minted) key needs no store lookup; a forgotten one does', async () => {
  const { checks, auth } = setup();
  auth.remember('k2', 'right');
  await auth.authenticate({ id: 'k2', key: 'right' });
  expect(checks).toEqual([]);
  await expect(auth.authenticate({ id: 'k2', key: 'wrong' })).rejects.toMatchObject({ code: 'Unauthorized' });
  auth.forget(['k2']);
  await auth.authenticate({ id: 'k2', key: 'right' });
  expect(checks).toEqual(['k2:wrong', 'k2:right']);
});
