// A cluster worker's embedded store: every call goes to the database's owner (client.ts) except the two
// reads each check-in makes, which the worker runs on a read-only connection of its own
// (sqlite/check-in-reads.ts). A read that fails there is asked of the owner, so a reader's trouble costs
// a round trip, never a check-in.
import type { Logger } from 'pino';
import type { Store } from '../port';
import type { CheckinReads } from '../sqlite/check-in-reads';

export function withLocalReads(store: Store, reads: CheckinReads, log: Logger): Store {
  let warned = false;
  const fellBack = (err: unknown): void => {
    if (warned) return;
    warned = true;
    log.warn({ err }, 'a read on the local connection failed; asking the store owner instead');
  };
  const own: Partial<Store> = {
    getAgent: async (id) => {
      try {
        return reads.getAgent(id);
      } catch (err) {
        fellBack(err);
        return store.getAgent(id);
      }
    },
    checkApiKey: async (id, secret) => {
      try {
        return reads.checkApiKey(id, secret);
      } catch (err) {
        fellBack(err);
        return store.checkApiKey(id, secret);
      }
    },
    close: async () => {
      reads.close();
      await store.close();
    },
  };
  return new Proxy(store, {
    get: (target, key) => (typeof key === 'string' && Object.hasOwn(own, key) ? own[key as keyof Store] : Reflect.get(target, key)),
  });
}
