// Batches document operations the way upstream's bulker does: writes into `_bulk` (a separate queue for
// writes that must be searchable at once), reads into `_mget`, searches into `_msearch` or
// `_fleet/_fleet_msearch`. A queue flushes after `flush_interval`, or at once when it reaches
// `flush_threshold_cnt` operations or `flush_threshold_size` bytes; at most `flush_max_pending` flushes
// are in flight. Past a bound on waiting operations new work is refused (429 to agents), so a slow
// cluster costs agents retries, not this process's memory.
import type { Client } from '@elastic/elasticsearch';
import type { Logger } from 'pino';
import type { BulkConfig } from '../../config/config';
import { Backoff, sleep } from '../../util/backoff';
import { StoreBusyError } from '../port';
import { withRetries } from './connection';
import { EsItemError } from './item-error';

type Obj = Record<string, unknown>;

export interface ItemResult {
  status: number;
  _id: string;
  _index?: string;
  _seq_no?: number;
  result?: string;
  error?: { type: string; reason: string };
}


export interface ReadResult {
  _id: string;
  _seq_no?: number;
  _source: Obj;
}

export interface SearchOptions {
  ignoreUnavailable?: boolean;
  /** Through `_fleet/_fleet_msearch`: the search sees at least every write up to this checkpoint. */
  waitForCheckpoint?: number;
}

interface Pending<T> {
  bytes: number;
  resolve: (v: T) => void;
  reject: (e: unknown) => void;
}

interface WriteOp extends Pending<ItemResult> {
  action: Obj;
  source?: Obj;
  /** Set once Elasticsearch has rejected the operation: its retry schedule. */
  retry?: Backoff;
}

interface ReadOp extends Pending<ReadResult | undefined> {
  index: string;
  id: string;
}

interface SearchOp extends Pending<Obj> {
  header: Obj;
  body: Obj;
}

// Queues hold operations of different result types; the bulker matches results to operations itself.
type AnyPending = Pending<any>;

class Queue<T extends AnyPending> {
  items: T[] = [];
  bytes = 0;
  timer: NodeJS.Timeout | undefined;
  constructor(readonly name: string, readonly send: (batch: T[]) => Promise<void>) {}
}

const MAX_ITEM_RETRIES = 5;

export class Bulker {
  private readonly writes: Queue<WriteOp>;
  private readonly refreshWrites: Queue<WriteOp>;
  private readonly reads: Queue<ReadOp>;
  private readonly refreshReads: Queue<ReadOp>;
  private readonly searches: Queue<SearchOp>;
  private readonly fleetSearches: Queue<SearchOp>;
  private inFlight = 0;
  private readonly slots: (() => void)[] = [];
  private waitingOps = 0;
  private readonly maxWaiting: number;
  readonly stats = { flushes: 0, operations: 0, refused: 0 };

  constructor(private readonly client: Client, private readonly cfg: BulkConfig, private readonly log: Logger) {
    this.maxWaiting = cfg.maxPendingOperations > 0 ? cfg.maxPendingOperations : cfg.flushThresholdCount * cfg.flushMaxPending * 4;
    this.writes = new Queue('bulk', (b) => this.sendBulk(b, false));
    this.refreshWrites = new Queue('bulk-refresh', (b) => this.sendBulk(b, true));
    this.reads = new Queue('mget', (b) => this.sendMget(b, false));
    this.refreshReads = new Queue('mget-refresh', (b) => this.sendMget(b, true));
    this.searches = new Queue('msearch', (b) => this.sendSearch(b, false));
    this.fleetSearches = new Queue('fleet-msearch', (b) => this.sendSearch(b, true));
  }

  /** One `_bulk` operation; resolves with its item (item errors are results, not rejections). */
  write(op: 'index' | 'create' | 'update' | 'delete', index: string, id: string | undefined, source: Obj | undefined,
    opts: { refresh?: boolean; retryOnConflict?: number } = {}): Promise<ItemResult> {
    const action: Obj = { [op]: { ...(id !== undefined ? { _id: id } : {}), _index: index, ...(opts.retryOnConflict ? { retry_on_conflict: opts.retryOnConflict } : {}) } };
    const bytes = JSON.stringify(action).length + (source ? JSON.stringify(source).length : 0) + 2;
    return this.enqueue(opts.refresh ? this.refreshWrites : this.writes, { action, source, bytes } as WriteOp);
  }

  /** A realtime read by id (through `_mget`); undefined when the document or index is missing. */
  read(index: string, id: string, refresh = false): Promise<ReadResult | undefined> {
    return this.enqueue(refresh ? this.refreshReads : this.reads, { index, id, bytes: id.length + index.length + 24 } as ReadOp);
  }

  search(index: string, body: Obj, opts: SearchOptions = {}): Promise<Obj> {
    const header: Obj = { index, ...(opts.ignoreUnavailable ? { ignore_unavailable: true } : {}) };
    if (opts.waitForCheckpoint !== undefined && opts.waitForCheckpoint >= 0) header['wait_for_checkpoints'] = [opts.waitForCheckpoint];
    const fleet = header['wait_for_checkpoints'] !== undefined;
    return this.enqueue(fleet ? this.fleetSearches : this.searches, { header, body, bytes: JSON.stringify(body).length + 64 } as SearchOp);
  }

  private enqueue<T extends Pending<R>, R>(q: Queue<T>, partial: Omit<T, 'resolve' | 'reject'>): Promise<R> {
    if (this.waitingOps >= this.maxWaiting) {
      this.stats.refused++;
      return Promise.reject(new StoreBusyError(`${this.waitingOps} operations are waiting for Elasticsearch`));
    }
    return new Promise<R>((resolve, reject) => {
      this.push(q, { ...partial, resolve, reject } as unknown as T);
    });
  }

  private push<T extends AnyPending>(q: Queue<T>, item: T, counted = false): void {
    if (!counted) this.waitingOps++;
    q.items.push(item);
    q.bytes += item.bytes;
    if (q.items.length >= this.cfg.flushThresholdCount || q.bytes >= this.cfg.flushThresholdBytes) this.flush(q);
    else if (!q.timer) q.timer = setTimeout(() => this.flush(q), this.cfg.flushIntervalMs);
  }

  private flush<T extends AnyPending>(q: Queue<T>): void {
    if (q.timer) clearTimeout(q.timer);
    q.timer = undefined;
    if (q.items.length === 0) return;
    const batch = q.items.splice(0, this.cfg.flushThresholdCount);
    q.bytes = q.items.reduce((s, i) => s + i.bytes, 0);
    if (q.items.length > 0) q.timer = setTimeout(() => this.flush(q), 0);
    void this.run(q, batch);
  }

  private async run<T extends AnyPending>(q: Queue<T>, batch: T[]): Promise<void> {
    if (this.inFlight >= this.cfg.flushMaxPending) await new Promise<void>((r) => this.slots.push(r));
    this.inFlight++;
    this.stats.flushes++;
    this.stats.operations += batch.length;
    try {
      await q.send(batch);
    } catch (err) {
      for (const item of batch) item.reject(err);
    } finally {
      this.waitingOps -= batch.length;
      this.inFlight--;
      this.slots.shift()?.();
    }
  }

  private async sendBulk(batch: WriteOp[], refresh: boolean): Promise<void> {
    const operations: Obj[] = [];
    for (const op of batch) {
      operations.push(op.action);
      if (op.source) operations.push(op.source);
    }
    const res = await withRetries('bulk', () => this.client.bulk({ operations, ...(refresh ? { refresh: true } : {}) }));
    res.items.forEach((item, i) => {
      const op = batch[i]!;
      const r = Object.values(item)[0] as unknown as ItemResult;
      // A rejected item (429) is retried with backoff, as upstream's bulker does; others are the caller's.
      if (r.status === 429) {
        op.retry ??= new Backoff();
        if (op.retry.attempts < MAX_ITEM_RETRIES) {
          // Still waiting until settled: counted now (run() uncounts the whole batch), through the sleep
          // and the re-queue, so new work sees the bound and drain() (then the client's close) waits for it.
          this.waitingOps++;
          void sleep(op.retry.next()).then(() => this.push(refresh ? this.refreshWrites : this.writes, op, true));
          return;
        }
      }
      op.resolve(r);
    });
  }

  private async sendMget(batch: ReadOp[], refresh: boolean): Promise<void> {
    const res = await withRetries('mget', () => this.client.mget<Obj>({ docs: batch.map((r) => ({ _index: r.index, _id: r.id })), ...(refresh ? { refresh: true } : {}) }));
    res.docs.forEach((d, i) => {
      const op = batch[i]!;
      const doc = d as { found?: boolean; _id: string; _seq_no?: number; _source?: Obj; error?: { type: string; reason: string } };
      if (doc.error && doc.error.type !== 'index_not_found_exception') op.reject(new EsItemError(500, doc.error.type, doc.error.reason));
      else op.resolve(doc.found ? { _id: doc._id, _seq_no: doc._seq_no, _source: doc._source ?? {} } : undefined);
    });
  }

  private async sendSearch(batch: SearchOp[], fleet: boolean): Promise<void> {
    const searches: Obj[] = [];
    for (const s of batch) searches.push(s.header, s.body);
    const res = await withRetries(fleet ? 'fleet msearch' : 'msearch', () => (fleet
      ? this.client.fleet.msearch({ searches } as never) as unknown as Promise<{ responses: Obj[] }>
      : this.client.msearch({ searches } as never) as unknown as Promise<{ responses: Obj[] }>));
    res.responses.forEach((r, i) => {
      const op = batch[i]!;
      const err = r['error'] as { type: string; reason: string } | undefined;
      if (err) op.reject(new EsItemError(Number(r['status'] ?? 500), err.type, err.reason));
      else op.resolve(r);
    });
  }

  /** Sends what is queued now (on shutdown). */
  async drain(): Promise<void> {
    this.flush(this.writes);
    this.flush(this.refreshWrites);
    this.flush(this.reads);
    this.flush(this.refreshReads);
    this.flush(this.searches);
    this.flush(this.fleetSearches);
    while (this.waitingOps > 0) await sleep(20);
  }

  get pending(): number {
    return this.waitingOps;
  }

  logStats(): void {
    this.log.debug({ ...this.stats, pending: this.waitingOps }, 'bulker');
  }
}
