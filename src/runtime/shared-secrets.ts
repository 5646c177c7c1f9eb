// Fleet secrets read once per box, not once per worker, in Elasticsearch mode. Each worker keeps the plain
// output keys it minted or read (fleet/output-keys.ts), but an agent's connections land on any worker: the
// poll that takes a rollout is often held by a worker that has never seen the agent's key, and there every
// such agent cost a `GET _fleet/secret/<id>` (5,039 of them in a rollout to 10,000 agents on two workers,
// where upstream, which keeps keys in the agent document, reads none). So the primary keeps the secrets
// every worker minted or read, and a worker asks it before Elasticsearch. A secret never changes (a new
// key gets a new secret id), so what the primary holds stays true until the secret is deleted.
// (The embedded store needs none of this: each worker reads secrets on its own read-only connection.)
import { overlayStore } from '../store/overlay';
import type { Store } from '../store/port';
import { LruCache } from '../util/lru';

/** Secrets the primary keeps: one per agent of the largest limit profile, twice over (~240 B each, measured). */
const SHARED_SECRETS_CAPACITY = 200_000;
/**
 * How long a worker waits for the primary's answer before asking Elasticsearch. The primary answers at
 * once, but in a rollout the answers queue behind the worker's own work: with a 1 s wait, 4,367 of a
 * rollout's 5,066 recalls at 10,000 agents timed out and were read from Elasticsearch after all.
 */
const RECALL_WAIT_MS = 10_000;

/** worker → primary */
export type SecretShareRequest =
  | { t: 'secret-keep'; id: string; value: string }
  | { t: 'secret-recall'; n: number; id: string }
  | { t: 'secret-forget'; ids: string[] };
/** primary → worker */
export type SecretShareAnswer = { t: 'secret-recalled'; n: number; value?: string };

/** The primary's side: the secrets the workers have seen. */
export class SecretShareHost {
  private readonly secrets = new LruCache<string, string>(SHARED_SECRETS_CAPACITY);

  /** The answer to send back, if the request calls for one. */
  handle(m: SecretShareRequest): SecretShareAnswer | undefined {
    switch (m.t) {
      case 'secret-keep':
        this.secrets.set(m.id, m.value);
        return undefined;
      case 'secret-forget':
        for (const id of m.ids) this.secrets.delete(id);
        return undefined;
      case 'secret-recall': {
        const value = this.secrets.get(m.id);
        return value === undefined ? { t: 'secret-recalled', n: m.n } : { t: 'secret-recalled', n: m.n, value };
      }
    }
  }

  get size(): number {
    return this.secrets.size;
  }
}

/** A worker's side: asks the primary, tells it what this worker learned. */
export class SecretShareClient {
  private next = 0;
  private readonly waiting = new Map<number, (value: string | undefined) => void>();

  constructor(private readonly post: (m: SecretShareRequest) => void, private readonly waitMs = RECALL_WAIT_MS) {}

  keep(id: string, value: string): void {
    this.post({ t: 'secret-keep', id, value });
  }

  forget(ids: string[]): void {
    if (ids.length > 0) this.post({ t: 'secret-forget', ids });
  }

  /** The primary's copy; undefined when it has none or does not answer in time. */
  recall(id: string): Promise<string | undefined> {
    const n = ++this.next;
    return new Promise((resolve) => {
      this.waiting.set(n, resolve);
      setTimeout(() => this.answered({ t: 'secret-recalled', n }), this.waitMs).unref();
      this.post({ t: 'secret-recall', n, id });
    });
  }

  answered(m: SecretShareAnswer): void {
    const resolve = this.waiting.get(m.n);
    if (!resolve) return;
    this.waiting.delete(m.n);
    resolve(m.value);
  }
}

/** `store` with its secrets shared through `share`: asked of the primary first, and told it once known. */
export function withSharedSecrets(store: Store, share: SecretShareClient): Store {
  const own: Partial<Store> = {
    getSecret: async (id) => {
      const shared = await share.recall(id);
      if (shared !== undefined) return shared;
      const value = await store.getSecret(id);
      if (value !== undefined) share.keep(id, value);
      return value;
    },
    createSecret: async (value) => {
      const id = await store.createSecret(value);
      share.keep(id, value);
      return id;
    },
    deleteSecrets: async (ids) => {
      share.forget(ids);
      await store.deleteSecrets(ids);
    },
  };
  return overlayStore(store, own);
}
