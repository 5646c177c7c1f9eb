import type { Store } from './port';

/** `store` with some of its methods replaced by `own`'s; every other member is the store's own. */
export function overlayStore(store: Store, own: Partial<Store>): Store {
  return new Proxy(store, {
    get: (target, key) => (typeof key === 'string' && Object.hasOwn(own, key) ? own[key as keyof Store] : Reflect.get(target, key)),
  });
}
