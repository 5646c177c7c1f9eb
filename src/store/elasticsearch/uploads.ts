// Uploads (agent → Fleet) on Elasticsearch, as upstream's file/uploader and file/es.go keep them:
// metadata documents in the `.fleet-fileds-fromhost-meta-<src>` data stream, chunks as CBOR documents
// in `.fleet-fileds-fromhost-data-<src>`, so Kibana reads them ("Request diagnostics" download).
import type { Client } from '@elastic/elasticsearch';
import type { JsonObject } from '../documents';
import { STOPPED_UPLOAD_STATUSES, UploadDocumentRefused, type ChunkWrite, type StoredChunk, type UploadClose, type UploadListQuery, type UploadRecord, type UploadRef, type UploadStore } from '../file-ports';
import { NotFoundError, StoreBusyError, StoreUnavailableError } from '../port';
import { statusIn, withRetries } from './connection';
import { ChunkEncoder } from './cbor-chunk';
import { chunkNumber, deleteByQuery, indexFragment, rawRequest, readSourceChunk, refresh, searchHits, type FileHit } from './file-requests';

type Obj = Record<string, unknown>;

const META_ALL = '.fleet-fileds-fromhost-meta-*';
const metaIndex = (src: string): string => `.fleet-fileds-fromhost-meta-${indexFragment('upload source', src)}`;
const dataIndex = (src: string): string => `.fleet-fileds-fromhost-data-${indexFragment('upload source', src)}`;

/** Painless over the binary doc value's bytes, as upstream's chunk-info query computes a chunk's size. */
const CHUNK_SIZE_SCRIPT = 'params._source.data.length';

/** Status and transit hash set in place (upstream's status update on the metadata data stream). */
const SET_STATUS_SCRIPT = 'ctx._source.file.Status = params.status; if (params.transithash != null) { ctx._source.transithash = params.transithash; }';

/**
 * The same, only while the upload takes chunks (completion's turn): an upload another completion
 * closed meanwhile is left as it is (a noop the caller sees in `noops`).
 */
const CLOSE_SCRIPT = `String s = ctx._source.file == null ? null : ctx._source.file.Status;
if (s != null && params.stopped.contains(s)) { ctx.op = 'noop'; } else { ${SET_STATUS_SCRIPT} }`;

/** Status-turn attempts lost to a concurrent write (a version conflict) before the turn gives up. */
const CLOSE_ATTEMPTS = 3;

/**
 * Elasticsearch's refusals of a document for what it holds (a value its mapping cannot take, a field a
 * strict mapping does not allow): the client's fields at upload begin. Any other 400 there (a closed
 * index, a broken template or ingest pipeline: illegal_argument_exception, index_closed_exception…) is
 * the cluster's state, not the agent's request.
 */
const DOCUMENT_REFUSALS = new Set(['document_parsing_exception', 'mapper_parsing_exception', 'strict_dynamic_mapping_exception']);

function num(v: unknown): number {
  return typeof v === 'number' ? v : Number(v ?? 0);
}

function recordOf(hit: FileHit): UploadRecord {
  const doc = (hit._source ?? {}) as JsonObject;
  const file = (doc['file'] ?? {}) as Obj;
  return {
    id: hit._id,
    source: String(doc['src'] ?? ''),
    uploadId: String(doc['upload_id'] ?? ''),
    agentId: String(doc['agent_id'] ?? ''),
    actionId: String(doc['action_id'] ?? ''),
    size: num(file['size']),
    chunkSize: num(file['ChunkSize']),
    status: String(file['Status'] ?? ''),
    startedMs: num(doc['upload_start']),
    doc,
  };
}

const first = (f: Record<string, unknown[]> | undefined, k: string): unknown => f?.[k]?.[0];

function queryOf(q: UploadListQuery): Obj {
  const filters: Obj[] = [];
  if (q.agentId !== undefined) filters.push({ term: { agent_id: q.agentId } });
  if (q.actionId !== undefined) filters.push({ term: { action_id: q.actionId } });
  const notStopped = q.inProgressSince === undefined ? [] : [{ terms: { 'file.Status': [...STOPPED_UPLOAD_STATUSES] } }];
  if (q.inProgressSince !== undefined) filters.push({ range: { upload_start: { gte: q.inProgressSince } } });
  return filters.length ? { bool: { filter: filters, ...(notStopped.length ? { must_not: notStopped } : {}) } } : { match_all: {} };
}

/** The error object of an Elasticsearch answer (`{error: {type, reason, caused_by}}`), raw or under a store error's cause. */
function esErrorOf(err: unknown): Obj | undefined {
  const body = (e: unknown): unknown => (e as { meta?: { body?: Obj } } | undefined)?.meta?.body?.['error'];
  const found = body(err) ?? body((err as { cause?: unknown } | undefined)?.cause);
  return found !== null && typeof found === 'object' ? found as Obj : undefined;
}

/** Elasticsearch's words for a refused document (`document_parsing_exception: failed to parse field …`), bounded: for logs only. */
function reasonOf(err: unknown): string {
  const e = esErrorOf(err);
  const text = e ? `${String(e['type'] ?? 'error')}: ${String(e['reason'] ?? '')}` : (err as Error).message;
  return text.length > 300 ? `${text.slice(0, 300)}…` : text;
}

/** A field name as a client may be told it: the characters of JSON keys agents send, bounded. */
const FIELD_NAME = /^[A-Za-z0-9_@.-]{1,128}$/;

/**
 * The field Elasticsearch says it could not take (`failed to parse field [file.Compression] …`,
 * `object mapping for [file.Compression] …`, `dynamic introduction of [x] within [file] …`), looked for
 * in the reason and its causes; undefined when it names none.
 */
function refusedField(e: Obj | undefined): string | undefined {
  for (let at = e, depth = 0; at && depth < 4; at = at['caused_by'] as Obj | undefined, depth++) {
    const reason = String(at['reason'] ?? '');
    const strict = /dynamic introduction of \[([^\]]+)\] within \[([^\]]+)\]/.exec(reason);
    const name = strict ? (strict[2] === '_doc' ? strict[1] : `${strict[2]}.${strict[1]}`)
      : (/failed to parse field \[([^\]]+)\]/.exec(reason) ?? /object mapping for \[([^\]]+)\]/.exec(reason))?.[1];
    if (name !== undefined) return FIELD_NAME.test(name) ? name : undefined;
  }
  return undefined;
}

export class EsUploads implements UploadStore {
  constructor(private readonly client: Client) {}

  async createUpload(source: string, id: string, doc: JsonObject): Promise<boolean> {
    try {
      await withRetries('create upload', () => this.client.create({ index: metaIndex(source), id, document: doc, refresh: true }));
      return true;
    } catch (err) {
      const status = statusIn(err);
      if (status === 409) return false;
      if (status === 400) {
        const e = esErrorOf(err);
        // The document's fields are the client's (a value of the wrong type for a mapped field): its 400.
        if (DOCUMENT_REFUSALS.has(String(e?.['type']))) throw new UploadDocumentRefused(reasonOf(err), { cause: err, field: refusedField(e) });
        // Anything else is the cluster's state (its text names internal indices): a store fault, 503.
        throw new StoreUnavailableError(`create upload: Elasticsearch refused the request (400): ${reasonOf(err)}`, { cause: err });
      }
      throw err;
    }
  }

  async findUpload(uploadId: string): Promise<UploadRecord | undefined> {
    const hits = await searchHits(this.client, 'find upload', META_ALL, { query: { term: { upload_id: uploadId } } });
    if (hits.length > 1) throw new Error(`unable to locate upload record, got ${hits.length} records, expected 1`);
    return hits[0] && recordOf(hits[0]);
  }

  async listUploads(q: UploadListQuery): Promise<UploadRecord[]> {
    const hits = await searchHits(this.client, 'list uploads', META_ALL, {
      size: Math.min(q.limit, 10000),
      query: queryOf(q),
      sort: [{ upload_start: { order: 'desc', unmapped_type: 'date' } }],
    });
    return hits.map(recordOf);
  }

  /** A search of no hits whose total is counted up to the limit: no document is fetched. */
  async countUploads(q: UploadListQuery): Promise<number> {
    const r = await withRetries('count uploads', () => this.client.search({
      index: META_ALL, ignore_unavailable: true, size: 0, track_total_hits: Math.max(1, Math.min(q.limit, 10000)), query: queryOf(q),
    }));
    const total = r.hits.total;
    return typeof total === 'number' ? total : total?.value ?? 0;
  }

  /**
   * `PUT <data>/_create/<bid>.<n>` with the CBOR document. The data stream takes only creates, so a
   * re-sent chunk (upstream answers its 409 with an error) replaces the first copy: the copy is deleted
   * through the backing index the conflict names, then created again — unless the upload, read afresh,
   * has stopped (the caller's status may be a cache's): a READY file's chunk is never replaced. The
   * chunk is buffered (the caller bounds it to one chunk), so a failing body sends nothing.
   */
  async putChunk(upload: UploadRef, chunk: ChunkWrite, data: AsyncIterable<Uint8Array>): Promise<number> {
    const expected = chunk.last ? upload.size - chunk.n * upload.chunkSize : upload.chunkSize;
    const encoder = new ChunkEncoder({ timestampMs: chunk.timestampMs, last: chunk.last, bid: upload.id, sha2: chunk.sha2 }, expected);
    let bytes = 0;
    for await (const p of data) {
      encoder.push(p);
      bytes += p.length;
    }
    const body = encoder.finish();
    const index = dataIndex(upload.source);
    const id = `${upload.id}.${chunk.n}`;
    for (let attempt = 0; ; attempt++) {
      const r = await rawRequest(this.client, 'write chunk', { method: 'PUT', path: `/${index}/_create/${encodeURIComponent(id)}`, body },
        { 'content-type': 'application/cbor', accept: 'application/json' }, [409]);
      if (r.statusCode !== 409) return bytes;
      const backing = ((r.body as Obj | undefined)?.['error'] as Obj | undefined)?.['index'];
      if (attempt > 0 || typeof backing !== 'string') throw new Error(`chunk ${id} exists and cannot be replaced`);
      const now = (await this.stateNow(upload))?.status;
      if (now === undefined) throw new NotFoundError(`upload ${upload.uploadId} not found`);
      if (STOPPED_UPLOAD_STATUSES.has(now)) throw new Error(`upload ${upload.uploadId} is ${now}: it takes no more chunks`);
      await rawRequest(this.client, 'replace chunk', { method: 'DELETE', path: `/${backing}/_doc/${encodeURIComponent(id)}` }, {}, [404]);
    }
  }

  /**
   * The upload's status and transit hash as stored now (only those fields are fetched, not the client's
   * document); undefined when gone.
   */
  private async stateNow(upload: UploadRef): Promise<{ status: string; transitHash: unknown } | undefined> {
    const hits = await searchHits(this.client, 'read upload status', metaIndex(upload.source), {
      size: 1, _source: ['file.Status', 'transithash.sha256'], query: { term: { _id: upload.id } },
    });
    if (hits.length === 0) return undefined;
    const src = hits[0]!._source ?? {};
    return { status: String(((src['file'] ?? {}) as Obj)['Status'] ?? ''), transitHash: ((src['transithash'] ?? {}) as Obj)['sha256'] };
  }

  /** Deleted by query (refreshed first): a data stream deletes by id only through its backing index. */
  async deleteChunk(upload: UploadRef, n: number): Promise<void> {
    const index = dataIndex(upload.source);
    await refresh(this.client, index);
    await deleteByQuery(this.client, 'delete chunk', index, { term: { _id: `${upload.id}.${n}` } });
  }

  async listChunks(upload: UploadRef): Promise<StoredChunk[]> {
    const index = dataIndex(upload.source);
    await refresh(this.client, index);
    const hits = await searchHits(this.client, 'list chunks', index, {
      _source: false,
      query: { term: { bid: upload.id } },
      fields: ['sha2', 'last', 'bid'],
      script_fields: { size: { script: { lang: 'painless', source: CHUNK_SIZE_SCRIPT } } },
      size: 10000,
    });
    return hits.map((h) => {
      const bid = String(first(h.fields, 'bid') ?? upload.id);
      return {
        n: chunkNumber(bid, h._id),
        size: num(first(h.fields, 'size')),
        sha2: String(first(h.fields, 'sha2') ?? ''),
        last: first(h.fields, 'last') === true,
      };
    }).sort((a, b) => a.n - b.n);
  }

  /**
   * Located by search (for the backing index), then read in real time from its source with
   * `GET <backing>/_doc/<id>?_source_includes=data` in CBOR: the from-host data template does not store
   * `data`, so the stored-field read deliveries use would find nothing here.
   */
  async *readChunk(upload: UploadRef, n: number): AsyncIterable<Uint8Array> {
    const index = dataIndex(upload.source);
    const id = `${upload.id}.${n}`;
    const locate = (): Promise<FileHit[]> => searchHits(this.client, 'locate chunk', index, { _source: false, size: 1, query: { term: { _id: id } } });
    let hits = await locate();
    if (hits.length === 0) {
      await refresh(this.client, index);
      hits = await locate();
    }
    if (hits.length === 0) throw new NotFoundError(`chunk ${id} not found`);
    yield await readSourceChunk(this.client, hits[0]!._index, id);
  }

  async deleteChunks(upload: UploadRef): Promise<void> {
    const index = dataIndex(upload.source);
    await refresh(this.client, index);
    await deleteByQuery(this.client, 'delete chunks', index, { term: { bid: upload.id } });
  }

  /**
   * Conditional in the update's script (the status it sees is the document's as written), so of two
   * completions only one closes the upload. The chunks cannot be compared in the same step (they are
   * documents of another data stream): `opts.chunks` is not checked here.
   */
  async closeUpload(upload: UploadRef, status: 'READY' | 'UPLOAD_ERROR', opts: { transitHash?: string } = {}): Promise<UploadClose> {
    const index = metaIndex(upload.source);
    for (let attempt = 1; ; attempt++) {
      const r = await withRetries('close upload', () => this.client.updateByQuery({
        index, refresh: true, conflicts: 'proceed',
        query: { term: { _id: upload.id } },
        script: {
          lang: 'painless', source: CLOSE_SCRIPT,
          params: { status, transithash: opts.transitHash === undefined ? null : { sha256: opts.transitHash }, stopped: [...STOPPED_UPLOAD_STATUSES] },
        },
      }));
      if ((r.updated ?? 0) > 0) return 'closed';
      if ((r.version_conflicts ?? 0) === 0) {
        // Stopped already — perhaps by this very call: an attempt whose answer was lost (a gateway's 504)
        // is sent again, by the client or withRetries, and the resent one finds the upload as the first
        // left it. That is this completion's own write, recognised as addPolicyRevision recognises its own.
        const now = await this.stateNow(upload);
        const own = now !== undefined && now.status === status && (opts.transitHash === undefined || now.transitHash === opts.transitHash);
        return own ? 'closed' : 'stopped';
      }
      if (attempt >= CLOSE_ATTEMPTS) {
        throw new StoreBusyError(`close upload ${upload.uploadId}: version conflicts`, { clientMessage: 'the upload is being changed; retry later', clientError: 'TooManyRequests' });
      }
      // Lost to a write between the update's search and its write (another completion's, say). The
      // search sees what the last refresh made visible, so without one the next attempt may find the
      // same old version and conflict again: refresh, then look again.
      await refresh(this.client, index);
    }
  }

  async deleteUpload(upload: UploadRef): Promise<void> {
    await deleteByQuery(this.client, 'delete upload', metaIndex(upload.source), { term: { _id: upload.id } });
    await this.deleteChunks(upload);
  }
}
