// Agents' output keys shared by a cluster's workers through the primary, in Elasticsearch mode. Each worker
// keeps the plain output keys it minted or read (fleet/output-keys.ts), but an agent's connections land on
// any worker: the poll that takes a rollout is often held by a worker that has never seen the agent's key,
// and there every such agent cost a `GET _fleet/secret/<id>` (5,039 of them in a rollout to 10,000 agents
// on two workers, where upstream, which keeps keys in the agent documents, reads none). So the primary keeps
// the keys every worker minted or read, and a worker asks it before Elasticsearch. A key's secret never
// changes (a new key gets a new secret id), so what the primary holds stays true until the secret is
// deleted; this server's own deletes make it forget (other instances' deletes do not, as with each
// worker's own keys). Only output keys: other Fleet secrets (policies', actions') are not sent here.
// (The embedded store needs none of this: each worker reads secrets on its own read-only connection.)
import type { KeyShare } from '../fleet/output-keys';
import { LruCache } from '../util/lru';

/** Keys the primary keeps: as many as each worker keeps (fleet/output-keys.ts PLAIN_KEYS_CAPACITY). */
const SHARED_KEYS_CAPACITY = 200_000;
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

/** The primary's side: the keys the workers have seen. */
export class SecretShareHost {
  private readonly keys = new LruCache<string, string>(SHARED_KEYS_CAPACITY);

  /** The answer to send back, if the request calls for one. */
  handle(m: SecretShareRequest): SecretShareAnswer | undefined {
    switch (m.t) {
      case 'secret-keep':
        this.keys.set(m.id, m.value);
        return undefined;
      case 'secret-forget':
        for (const id of m.ids) this.keys.delete(id);
        return undefined;
      case 'secret-recall': {
        const value = this.keys.get(m.id);
        return value === undefined ? { t: 'secret-recalled', n: m.n } : { t: 'secret-recalled', n: m.n, value };
      }
    }
  }

  get size(): number {
    return this.keys.size;
  }
}

/** A worker's side: asks the primary, tells it what this worker learned. */
export class SecretShareClient implements KeyShare {
  private next = 0;
  private readonly waiting = new Map<number, { resolve: (value: string | undefined) => void; timer: NodeJS.Timeout }>();

  /** `post` sends a request; false when it cannot (the channel to the primary is closed). */
  constructor(private readonly post: (m: SecretShareRequest) => boolean, private readonly waitMs = RECALL_WAIT_MS) {}

  keep(secretId: string, plain: string): void {
    this.post({ t: 'secret-keep', id: secretId, value: plain });
  }

  forget(secretIds: string[]): void {
    if (secretIds.length > 0) this.post({ t: 'secret-forget', ids: secretIds });
  }

  /** The primary's copy; undefined when it has none, cannot be asked, or does not answer in time. */
  recall(secretId: string): Promise<string | undefined> {
    const n = ++this.next;
    return new Promise((resolve) => {
      // Timers run before the loop reads its pipes: an answer already waiting is read first.
      const timer = setTimeout(() => setImmediate(() => this.answered({ t: 'secret-recalled', n })), this.waitMs).unref();
      this.waiting.set(n, { resolve, timer });
      if (!this.post({ t: 'secret-recall', n, id: secretId })) this.answered({ t: 'secret-recalled', n });
    });
  }

  answered(m: SecretShareAnswer): void {
    const pending = this.waiting.get(m.n);
    if (!pending) return;
    this.waiting.delete(m.n);
    clearTimeout(pending.timer);
    pending.resolve(m.value);
  }

  /** Recalls not yet answered. */
  get pending(): number {
    return this.waiting.size;
  }
}
