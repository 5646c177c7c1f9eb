// Elasticsearch mode's secrets shared between cluster workers through the primary (runtime/shared-secrets.ts),
// with the IPC channel replaced by direct calls.
import { SecretShareClient, SecretShareHost, withSharedSecrets, type SecretShareRequest } from '../../src/runtime/shared-secrets';
import { SqliteStore } from '../../src/store/sqlite/store';

describe('secrets shared by the workers through the primary', () => {
  let backing: SqliteStore;
  let reads: string[];
  beforeEach(() => {
    backing = new SqliteStore(':memory:');
    reads = [];
    const getSecret = backing.getSecret.bind(backing);
    backing.getSecret = (id) => (reads.push(id), getSecret(id));
  });
  afterEach(() => backing.close());

  /** A worker's store, its requests answered by `host` (or never, when it is undefined). */
  function worker(host: SecretShareHost | undefined, waitMs?: number) {
    const client: SecretShareClient = new SecretShareClient((m: SecretShareRequest) => {
      const answer = host?.handle(m);
      if (answer) queueMicrotask(() => client.answered(answer));
    }, waitMs);
    return withSharedSecrets(backing, client);
  }

  test('a secret one worker minted or read is not read from the store by another; a deleted one is forgotten', async () => {
    const host = new SecretShareHost();
    const [a, b, c] = [worker(host), worker(host), worker(host)];
    const id = await a.createSecret('key-1:secret');
    expect(await b.getSecret(id)).toBe('key-1:secret');
    expect(reads).toEqual([]);
    // Made behind the share's back (another Fleet Server instance): read once, then shared.
    const other = await backing.createSecret('key-2:secret');
    expect(await b.getSecret(other)).toBe('key-2:secret');
    expect(await c.getSecret(other)).toBe('key-2:secret');
    expect(reads).toEqual([other]);
    await c.deleteSecrets([id]);
    expect(host.size).toBe(1);
    expect(await b.getSecret(id)).toBeUndefined();
    expect(reads).toEqual([other, id]);
    // Other members are the store's own.
    expect(a.kind).toBe('sqlite');
  });

  test('a primary that does not answer costs a wait, then the store is asked', async () => {
    const silent = worker(undefined, 20);
    const id = await backing.createSecret('key-3:secret');
    expect(await silent.getSecret(id)).toBe('key-3:secret');
    expect(reads).toEqual([id]);
  });
});
