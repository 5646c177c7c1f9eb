// One single-shard index: realtime documents for GET/mget, a refreshed view for search, per-index
// _seq_no with a global checkpoint that long polls can wait on, and a refresh watermark that
// refresh=wait_for and wait_for_checkpoints wait on.
import { EsError } from './errors';
import { parseDocument, type Mapping } from './mappings';
import type { StoredDoc } from './query';

type Obj = Record<string, unknown>;

/** A compare-and-set condition: if_seq_no and if_primary_term. */
export interface Cas {
  seqNo: number;
  term: number;
}

/** The only primary term the double's shards have. */
export const PRIMARY_TERM = 1;

export interface WriteResult {
  result: 'created' | 'updated' | 'deleted' | 'not_found' | 'noop';
  doc: StoredDoc;
}

export class Index {
  readonly docs = new Map<string, StoredDoc>();
  /** What search sees: the documents as of the last refresh. */
  searchable = new Map<string, StoredDoc>();
  maxSeqNo = -1;
  refreshedSeqNo = -1;
  readonly uuid = Math.random().toString(36).slice(2, 24);
  private checkpointWaiters = new Set<() => void>();
  private refreshWaiters: { seq: number; done: () => void }[] = [];
  /** Ids written since the last refresh, in the order of their last write (as `docs` orders them). */
  private readonly changed = new Set<string>();

  constructor(readonly name: string, readonly mapping: Mapping, readonly dataStream?: string) {}

  get dirty(): boolean {
    return this.refreshedSeqNo < this.maxSeqNo;
  }

  private stamp(id: string, source: Obj, prev?: StoredDoc): StoredDoc {
    this.validate(id, source);
    this.maxSeqNo++;
    return { id, source, seqNo: this.maxSeqNo, version: (prev?.version ?? 0) + 1 };
  }

  /** Index (create or replace) a whole document. */
  put(id: string, source: Obj, opts: { create?: boolean; cas?: Cas } = {}): WriteResult {
    const prev = this.docs.get(id);
    if (opts.create && prev) {
      throw new EsError(409, 'version_conflict_engine_exception',
        `[${id}]: version conflict, document already exists (current version [${prev.version}])`, this.meta());
    }
    this.checkCas(id, prev, opts.cas);
    const doc = this.stamp(id, source, prev);
    this.docs.delete(id);
    this.docs.set(id, doc);
    this.touched(id);
    this.advanced();
    return { result: prev ? 'updated' : 'created', doc };
  }

  /** Replace the source of an existing document unless nothing changed (detect_noop). */
  replace(prev: StoredDoc, source: Obj, detectNoop: boolean): WriteResult {
    if (detectNoop && JSON.stringify(source) === JSON.stringify(prev.source)) return { result: 'noop', doc: prev };
    const doc = this.stamp(prev.id, source, prev);
    this.docs.delete(prev.id);
    this.docs.set(prev.id, doc);
    this.touched(prev.id);
    this.advanced();
    return { result: 'updated', doc };
  }

  delete(id: string, cas?: Cas): WriteResult {
    const prev = this.docs.get(id);
    this.checkCas(id, prev, cas);
    // A delete writes a tombstone: it consumes a sequence number whether or not the document existed.
    this.maxSeqNo++;
    const doc: StoredDoc = { id, source: {}, seqNo: this.maxSeqNo, version: (prev?.version ?? 0) + 1 };
    this.docs.delete(id);
    this.touched(id);
    this.advanced();
    return { result: prev ? 'deleted' : 'not_found', doc };
  }

  /** Both the seq_no and the primary term must match (VersionConflictEngineException's words). */
  checkCas(id: string, prev: StoredDoc | undefined, cas: Cas | undefined): void {
    if (cas === undefined) return;
    const required = `[${id}]: version conflict, required seqNo [${cas.seqNo}], primary term [${cas.term}].`;
    if (!prev) throw new EsError(409, 'version_conflict_engine_exception', `${required} but no document was found`, this.meta());
    if (prev.seqNo !== cas.seqNo || cas.term !== PRIMARY_TERM) {
      throw new EsError(409, 'version_conflict_engine_exception',
        `${required} current document has seqNo [${prev.seqNo}] and primary term [${PRIMARY_TERM}]`, this.meta());
    }
  }

  meta(): Obj {
    return { index_uuid: this.uuid, shard: '0', index: this.name };
  }

  /** A document must parse against the mapping (mappings.ts parseDocument), as Elasticsearch's document parser requires. */
  private validate(id: string, source: Obj): void {
    if (this.dataStream && source['@timestamp'] === undefined) {
      throw new EsError(400, 'document_parsing_exception', '[1:1] failed to parse: data stream timestamp field [@timestamp] is missing',
        {}, new EsError(400, 'illegal_argument_exception', 'data stream timestamp field [@timestamp] is missing'));
    }
    const failure = parseDocument(this.mapping, id, source);
    if (failure) {
      throw new EsError(failure.status, failure.type, failure.reason, {},
        failure.causedBy ? new EsError(400, failure.causedBy.type, failure.causedBy.reason) : undefined);
    }
  }

  private advanced(): void {
    const waiters = this.checkpointWaiters;
    this.checkpointWaiters = new Set();
    for (const w of waiters) w();
  }

  private touched(id: string): void {
    this.changed.delete(id);
    this.changed.add(id);
  }

  /** Documents of a saved state, visible to search at once. */
  load(docs: StoredDoc[], maxSeqNo: number): void {
    for (const d of docs) {
      this.docs.set(d.id, d);
      // Dynamic fields are mapped again from the documents that mapped them.
      parseDocument(this.mapping, d.id, d.source);
    }
    this.maxSeqNo = maxSeqNo;
    this.searchable = new Map(this.docs);
    this.refreshedSeqNo = maxSeqNo;
  }

  /** Makes every write so far visible to search. */
  refresh(): boolean {
    if (!this.dirty && this.changed.size === 0) return false;
    // Only what changed since the last refresh, each moved to the end as `docs` has it: a copy of the
    // whole index per refresh made a 100,000-agent bench quadratic (the double, not the server, set the pace).
    for (const id of this.changed) {
      this.searchable.delete(id);
      const doc = this.docs.get(id);
      if (doc) this.searchable.set(id, doc);
    }
    this.changed.clear();
    this.refreshedSeqNo = this.maxSeqNo;
    const ready = this.refreshWaiters.filter((w) => w.seq <= this.refreshedSeqNo);
    this.refreshWaiters = this.refreshWaiters.filter((w) => w.seq > this.refreshedSeqNo);
    for (const w of ready) w.done();
    return true;
  }

  /** Resolves once a refresh covers `seq` (refresh=wait_for, wait_for_checkpoints); false on timeout. */
  waitForRefresh(seq: number, timeoutMs: number): Promise<boolean> {
    if (seq <= this.refreshedSeqNo) return Promise.resolve(true);
    return new Promise((resolve) => {
      const w = { seq, done: () => { clearTimeout(timer); resolve(true); } };
      const timer = setTimeout(() => {
        this.refreshWaiters = this.refreshWaiters.filter((x) => x !== w);
        resolve(false);
      }, timeoutMs);
      this.refreshWaiters.push(w);
    });
  }

  /** Resolves true when the checkpoint passes `checkpoint`, false when `timeoutMs` passes first. */
  waitForAdvance(checkpoint: number, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (this.maxSeqNo > checkpoint) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (v: boolean): void => {
        clearTimeout(timer);
        this.checkpointWaiters.delete(wake);
        signal?.removeEventListener('abort', abort);
        resolve(v);
      };
      const wake = (): void => {
        if (this.maxSeqNo > checkpoint) done(true);
        else this.checkpointWaiters.add(wake);
      };
      const abort = (): void => done(false);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.checkpointWaiters.add(wake);
      signal?.addEventListener('abort', abort, { once: true });
    });
  }
}
