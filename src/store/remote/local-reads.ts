// A cluster worker's embedded store: every call goes to the database's owner (client.ts) except the reads
// each check-in and rollout makes, which the worker runs on a read-only connection of its own
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
  /** The read on the local connection; the owner's answer when it fails there. */
  const local = <A extends unknown[], R>(read: (...args: A) => R, owner: (...args: A) => Promise<R>) => async (...args: A): Promise<R> => {
    try {
      return read.apply(reads, args);
    } catch (err) {
      fellBack(err);
      return owner.apply(store, args);
    }
  };
  const own: Partial<Store> = {
    getAgent: local(reads.getAgent, store.getAgent),
    checkApiKey: local(reads.checkApiKey, store.checkApiKey),
    getSecret: local(reads.getSecret, store.getSecret),
    getApiKeyRoles: local(reads.getApiKeyRoles, store.getApiKeyRoles),
    // Keys of this database (no remote output) are read here too; a remote cluster's are the owner's to reach.
    apiKeysFor: (remote) => (remote === undefined ? proxy : store.apiKeysFor(remote)),
    close: async () => {
      reads.close();
      await store.close();
    },
  };
  const proxy: Store = new Proxy(store, {
    get: (target, key) => (typeof key === 'string' && Object.hasOwn(own, key) ? own[key as keyof Store] : Reflect.get(target, key)),
  });
  return proxy;
}
