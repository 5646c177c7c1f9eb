// A change feed over a Fleet index: long-poll `_fleet/global_checkpoints` until the checkpoint passes
// ours, then read the new documents with `_fleet/_fleet_search?wait_for_checkpoints`, a page of
// `fetch_size` at a time in `_seq_no` order (upstream's index monitor).
import type { Client } from '@elastic/elasticsearch';
import type { Hit } from '../documents';
import type { ChangeFeed } from '../port';
import { statusOf, toStoreError } from './connection';

type Obj = Record<string, unknown>;

export interface FeedOptions {
  index: string;
  fetchSize: number;
  /** Extra filters on what is delivered (actions: not yet expired). */
  filters?: () => Obj[];
}

export class EsChangeFeed<T> implements ChangeFeed<T> {
  constructor(private readonly client: Client, private readonly opts: FeedOptions) {}

  async checkpoint(): Promise<number> {
    try {
      const r = await this.client.fleet.globalCheckpoints({ index: this.opts.index });
      return r.global_checkpoints[0] ?? -1;
    } catch (err) {
      // No index yet: nothing has been written, which is checkpoint -1.
      if (statusOf(err) === 404) return -1;
      throw toStoreError(err, `global checkpoints of ${this.opts.index}`);
    }
  }

  async next(after: number, timeoutMs: number, signal: AbortSignal): Promise<{ checkpoint: number; hits: Hit<T>[] }> {
    let checkpoint: number;
    try {
      const r = await this.client.fleet.globalCheckpoints({
        index: this.opts.index, wait_for_advance: true, wait_for_index: true, checkpoints: [after], timeout: `${Math.max(1, Math.round(timeoutMs))}ms`,
      }, { signal, requestTimeout: timeoutMs + 30_000 });
      if (r.timed_out) return { checkpoint: after, hits: [] };
      checkpoint = r.global_checkpoints[0] ?? after;
    } catch (err) {
      const status = statusOf(err);
      // A proxy's gateway timeout, or an index still missing when the wait ends, mean "no change".
      if (status === 504 || status === 404) return { checkpoint: after, hits: [] };
      throw toStoreError(err, `global checkpoints of ${this.opts.index}`);
    }
    if (checkpoint <= after) return { checkpoint: after, hits: [] };
    return { checkpoint, hits: await this.fetch(after, checkpoint, signal) };
  }

  /** Documents with _seq_no in (after, upTo], page by page. */
  private async fetch(after: number, upTo: number, signal: AbortSignal): Promise<Hit<T>[]> {
    const out: Hit<T>[] = [];
    let from = after;
    for (;;) {
      let hits: { _id: string; _seq_no?: number; _source?: T }[];
      try {
        const r = await this.client.fleet.search<T>({
          index: this.opts.index, wait_for_checkpoints: [upTo], allow_partial_search_results: false,
          seq_no_primary_term: true, size: this.opts.fetchSize, sort: ['_seq_no'],
          query: { bool: { filter: [{ range: { _seq_no: { gt: from } } }, { range: { _seq_no: { lte: upTo } } }, ...(this.opts.filters?.() ?? [])] } },
        } as never, { signal });
        hits = r.hits.hits as typeof hits;
      } catch (err) {
        if (statusOf(err) === 404) return out;
        throw toStoreError(err, `fleet search of ${this.opts.index}`);
      }
      for (const h of hits) out.push({ _id: h._id, _seq_no: h._seq_no, _source: h._source as T });
      if (hits.length < this.opts.fetchSize) return out;
      from = hits[hits.length - 1]!._seq_no ?? upTo;
    }
  }
}
