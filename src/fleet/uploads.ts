// File upload, agent → Fleet (upstream's handleUpload.go and file/uploader): begin records the file's
// metadata, each chunk is stored as it streams in and checked against the agent's SHA-256, and
// completion checks every chunk's place and size and the transit hash before marking the file READY.
import { createHash, randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { AgentDoc, Hit, JsonObject } from '../store/documents';
import { STOPPED_UPLOAD_STATUSES as STOPPED, UploadDocumentRefused, type OrphanSweep, type StoredChunk, type UploadRecord, type UploadRef } from '../store/file-ports';
import { StoreBusyError, type Store } from '../store/port';
import { systemClock, type Clock } from '../util/clock';
import { LruCache } from '../util/lru';
import { badRequest, FleetError, isFleetError } from './errors';
import { isPlainObject } from '../util/is-object';

export const UPLOAD_CHUNK_SIZE = 4 * 1024 * 1024;
/** Upstream's upload window: chunks and completion are refused a day after begin. */
export const UPLOAD_WINDOW_MS = 24 * 3_600_000;
/** Completion lists at most this many chunks (upstream's search size), so larger files could never complete. */
export const MAX_CHUNKS = 10_000;
const CACHE_TTL_MS = 30 * 60_000;
/** Uploads cached (upstream's upload:<id>): a slim record each, a few hundred bytes. */
const CACHE_ENTRIES = 10_000;
/** The cache's bound in bytes (of its records as JSON): ids are bounded (MAX_DOC_ID_BYTES), so this is slack. */
const CACHE_MAX_WEIGHT = 16 * 1024 * 1024;
/** Elasticsearch's bound on a document id, which a chunk's `<action_id>.<agent_id>.<n>` must keep to. */
export const MAX_DOC_ID_BYTES = 512;
/** Completion's re-checks when chunks change under it (a re-sent chunk) before it asks the agent to retry. */
const COMPLETE_ATTEMPTS = 3;
/**
 * Uploads one agent may have in progress (begun within the window, not finished). Upstream sets no
 * bound; here one agent's key cannot start uploads without end, each holding disk until it expires. An
 * agent uploads one file per action (diagnostics, Endpoint's response actions), a few at a time.
 */
export const MAX_UPLOADS_IN_PROGRESS = 16;
const HEX_SHA256 = /^[0-9a-fA-F]{64}$/;
/** `src` names an index (`.fleet-fileds-fromhost-meta-<src>`): only what is safe in an index name. */
const SOURCE = /^[a-z0-9][a-z0-9_-]{0,63}$/;

export interface UploadOptions {
  /** server.limits.max_file_storage_size: undefined = no limit, 0 = uploads disabled. */
  maxFileSize: number | undefined;
}

export interface UploadBegun {
  upload_id: string;
  chunk_size: number;
}

/** The chunk count of a file of `size` bytes (none without a chunk size: a malformed document). */
export function chunkCount(size: number, chunkSize: number): number {
  return chunkSize > 0 ? Math.ceil(size / chunkSize) : 0;
}

/** The transit hash upstream checks: SHA-256 over the raw 32-byte chunk hashes, in chunk order. */
export function transitHash(chunkHashesHex: string[]): string {
  const h = createHash('sha256');
  for (const c of chunkHashesHex) h.update(Buffer.from(c, 'hex'));
  return h.digest('hex');
}

/** What the cache keeps of an upload: what chunks and completion need, none of the client's document. */
function refOf(u: UploadRecord): UploadRef {
  return {
    id: u.id, source: u.source, uploadId: u.uploadId, agentId: u.agentId, actionId: u.actionId,
    size: u.size, chunkSize: u.chunkSize, status: u.status, startedMs: u.startedMs,
  };
}

/** The transit hash as upstream reads it (handleUpload.go: a string field, TrimSpace'd); undefined when blank. */
function transitHashOf(body: JsonObject): string | undefined {
  const th = body['transithash'];
  if (th === undefined || th === null) return undefined;
  // Upstream decodes into a struct: anything but an object (or a non-string sha256) is a decode error.
  if (!isPlainObject(th)) throw badRequest('unable to decode upload complete request');
  const sha = th['sha256'];
  if (sha === undefined || sha === null) return undefined;
  if (typeof sha !== 'string') throw badRequest('unable to decode upload complete request');
  const hash = sha.trim();
  return hash === '' ? undefined : hash;
}

export class UploadService {
  private readonly cache = new LruCache<string, UploadRef>(CACHE_ENTRIES, {
    maxWeight: CACHE_MAX_WEIGHT,
    weigh: (u) => JSON.stringify(u).length,
  });
  /** Begins under way per agent id (entries removed at zero; bounded by the route's concurrency). */
  private readonly beginning = new Map<string, number>();

  constructor(private readonly store: Store, private readonly opts: UploadOptions, private readonly log: Logger,
    private readonly clock: Clock = systemClock) {}

  /** Checks before authentication can name the agent: the body exists and names one. */
  static agentIdOf(body: unknown): string {
    if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new FleetError('FileInfoBodyRequired');
    const id = (body as JsonObject)['agent_id'];
    if (typeof id !== 'string' || id === '') throw new FleetError('AgentIdMissing');
    return id;
  }

  /** The cache's size in bytes (its records as JSON). For tests only (upload-rules: the cache stays slim). */
  get cacheWeight(): number {
    return this.cache.totalWeight;
  }

  /** POST /api/fleet/uploads: `agent` is the authenticated agent the body names. */
  async begin(agent: Hit<AgentDoc>, body: JsonObject): Promise<UploadBegun> {
    if (this.opts.maxFileSize === 0) throw new FleetError('FileFeatureDisabled');
    // Upstream's validateUploadPayload order: the required strings, then file.size, then its limit.
    const fileField = body['file'];
    const file: JsonObject = isPlainObject(fileField) ? fileField as JsonObject : {};
    for (const [where, key] of [[file, 'name'], [file, 'mime_type'], [body, 'action_id'], [body, 'agent_id'], [body, 'src']] as const) {
      const v = where[key];
      if (typeof v !== 'string' || v.trim() === '') {
        throw new FleetError('FieldRequired', `${where === file ? 'file.' : ''}${key} is required: field required`);
      }
    }
    const size = file['size'];
    // JSDict.Int64: only a number is a size; anything else is no size.
    if (typeof size !== 'number') throw new FleetError('FileSizeRequired');
    if (!Number.isSafeInteger(size) || size <= 0) {
      throw new FleetError('InvalidFileSize', `file.size: ${JSON.stringify(size)}: invalid filesize`);
    }
    const max = Math.min(this.opts.maxFileSize ?? Infinity, MAX_CHUNKS * UPLOAD_CHUNK_SIZE);
    if (size > max) throw new FleetError('FileSizeTooLarge');
    const src = body['src'] as string;
    if (!SOURCE.test(src)) throw badRequest('src must be a lower-case name of letters, digits, - and _');
    const id = `${body['action_id'] as string}.${agent._id}`;
    // Not upstream's check (Elasticsearch refuses the id, and upstream answers 500): the last chunk's
    // document id must fit Elasticsearch's bound, on every store alike.
    const lastChunkId = `${id}.${chunkCount(size, UPLOAD_CHUNK_SIZE) - 1}`;
    if (Buffer.byteLength(lastChunkId) > MAX_DOC_ID_BYTES) {
      throw badRequest(`action_id is too long: <action_id>.<agent_id>.<chunk> must fit in ${MAX_DOC_ID_BYTES} bytes`);
    }
    const now = this.clock.now();
    // Begins of this agent under way in this process count too: a hundred sent at once would each count
    // the stored uploads before any of them is stored, and all pass.
    const others = this.beginning.get(agent._id) ?? 0;
    this.beginning.set(agent._id, others + 1);
    try {
      // Counted, not listed: a listing would read (and parse) each upload's whole document.
      const stored = await this.store.uploads.countUploads({ agentId: agent._id, inProgressSince: now - UPLOAD_WINDOW_MS, limit: MAX_UPLOADS_IN_PROGRESS });
      const inProgress = Math.min(stored + others, MAX_UPLOADS_IN_PROGRESS);
      if (inProgress >= MAX_UPLOADS_IN_PROGRESS) {
        throw new FleetError('TooManyUploads', `this agent has ${inProgress} uploads in progress; finish one, or let it expire, first`);
      }
      return await this.create(agent, body, file, src, id, now);
    } finally {
      const left = (this.beginning.get(agent._id) ?? 1) - 1;
      if (left > 0) this.beginning.set(agent._id, left);
      else this.beginning.delete(agent._id);
    }
  }

  private async create(agent: Hit<AgentDoc>, body: JsonObject, file: JsonObject, src: string, id: string, now: number): Promise<UploadBegun> {
    const uploadId = randomUUID();
    const doc: JsonObject = {
      ...body,
      file: { ...file, ChunkSize: UPLOAD_CHUNK_SIZE, Status: 'AWAITING_UPLOAD' },
      upload_id: uploadId,
      upload_start: now,
      '@timestamp': now,
      namespaces: agent._source.namespaces ?? [],
    };
    let created: boolean;
    try {
      created = await this.store.uploads.createUpload(src, id, doc);
    } catch (err) {
      if (!(err instanceof UploadDocumentRefused)) throw err;
      // The client is told which of its fields, not the store's words (they name internal indices).
      this.log.info({ 'fleet.agent.id': agent._id, 'error.message': err.message }, 'upload begin: the store refused the document');
      const what = err.field === undefined ? 'a field does not fit its mapped type' : `field [${err.field}] does not fit its mapped type`;
      throw new FleetError('BadRequest', `Bad request: the upload document was refused: ${what}`);
    }
    if (!created) throw new FleetError('UploadExists');
    this.log.info({ 'fleet.upload.id': uploadId, 'fleet.agent.id': agent._id, 'file.size': file['size'] }, 'upload started');
    return { upload_id: uploadId, chunk_size: UPLOAD_CHUNK_SIZE };
  }

  /**
   * The upload a chunk is for (cached, as upstream's upload:<id>), checked as upstream checks it. The
   * cache keeps a slim record, and only of an upload its own agent asked for.
   */
  private async activeUpload(uploadId: string, agent: Hit<AgentDoc>, fresh: boolean): Promise<UploadRef> {
    let upload = fresh ? undefined : this.cache.get(uploadId, this.clock.now());
    if (!upload) {
      const found = await this.store.uploads.findUpload(uploadId);
      if (!found) throw new FleetError('InvalidFileId');
      upload = refOf(found);
      if (upload.agentId === agent._id) this.cache.set(uploadId, upload, CACHE_TTL_MS, this.clock.now());
    }
    // Checked before the window, so another agent learns nothing about this upload.
    if (upload.agentId !== agent._id) throw new FleetError('AgentIdentity');
    if (this.clock.now() - upload.startedMs > UPLOAD_WINDOW_MS) throw new FleetError('UploadExpired');
    return upload;
  }

  /**
   * PUT /api/fleet/uploads/{id}/{n}: `data(max)` is the body as it arrives, refused by the edge past
   * `max` bytes (the size this chunk must have). A chunk whose bytes do not hash to `sha2` is never stored.
   */
  async chunk(agent: Hit<AgentDoc>, uploadId: string, n: number, sha2: string | undefined,
    data: (maxBytes: number) => AsyncIterable<Uint8Array>): Promise<void> {
    if (sha2 === undefined || !HEX_SHA256.test(sha2)) throw new FleetError('ChunkHashRequired');
    const upload = await this.activeUpload(uploadId, agent, false);
    if (STOPPED.has(upload.status)) throw new FleetError('UploadStopped');
    const count = chunkCount(upload.size, upload.chunkSize);
    if (!Number.isSafeInteger(n) || n < 0 || n >= count) throw new FleetError('InvalidChunkNum');
    const last = n === count - 1;
    const expected = last ? upload.size - (count - 1) * upload.chunkSize : upload.chunkSize;
    const claimed = sha2.toLowerCase();
    let checked = false;
    async function* hashed(): AsyncIterable<Uint8Array> {
      const hash = createHash('sha256');
      for await (const piece of data(expected)) {
        hash.update(piece);
        yield piece;
      }
      // Checked as the store takes the end of the body, so it fails the write before the chunk is in
      // place: a wrong chunk is never listed (a completion meanwhile cannot count it), not even until a
      // removal that a crash would skip, and an earlier good copy stands.
      if (hash.digest('hex') !== claimed) throw new FleetError('HashMismatch');
      checked = true;
    }
    try {
      await this.store.uploads.putChunk(upload, { n, last, sha2, timestampMs: this.clock.now() }, hashed());
    } catch (err) {
      if (!isFleetError(err) && await this.stoppedNow(uploadId)) throw new FleetError('UploadStopped');
      throw err;
    }
    if (!checked) {
      // A store that stopped reading before the end stored bytes no hash was checked against.
      await this.store.uploads.deleteChunk(upload, n);
      throw new FleetError('HashMismatch');
    }
  }

  /**
   * Whether the upload has stopped, read afresh: the store refuses a chunk that ends after the upload
   * completed or failed (its status here may be the cache's), and the agent hears upstream's answer for that.
   */
  private async stoppedNow(uploadId: string): Promise<boolean> {
    const fresh = await this.store.uploads.findUpload(uploadId).catch(() => undefined);
    if (!fresh || !STOPPED.has(fresh.status)) return false;
    this.cache.delete(uploadId);
    return true;
  }

  /** POST /api/fleet/uploads/{id}: every chunk in place and of the right size, and the transit hash. */
  async complete(agent: Hit<AgentDoc>, uploadId: string, body: JsonObject): Promise<void> {
    // Upstream's order (handleUpload.go): the upload and its agent, then the body, then a fresh status.
    const upload = await this.activeUpload(uploadId, agent, true);
    const claimed = transitHashOf(body)?.toLowerCase();
    if (claimed === undefined) throw new FleetError('TransitHashRequired');
    if (STOPPED.has(upload.status)) throw new FleetError('StatusNoUploads');
    for (let attempt = 1; ; attempt++) {
      const chunks = await this.store.uploads.listChunks(upload);
      if (!this.chunksPlaced(upload, chunks)) throw new FleetError('MissingChunks');
      if (!this.chunksValid(upload, chunks, claimed)) {
        // Upstream's failure path: the upload is marked failed and its chunks are removed — unless another
        // completion closed it first, whose chunks (a READY file's) are not this one's to remove.
        const failed = await this.store.uploads.closeUpload(upload, 'UPLOAD_ERROR');
        this.cache.delete(uploadId);
        if (failed !== 'closed') throw new FleetError('StatusNoUploads');
        await this.store.uploads.deleteChunks(upload);
        this.log.info({ 'fleet.upload.id': uploadId, 'fleet.agent.id': agent._id }, 'upload failed validation');
        throw new FleetError('FailValidation');
      }
      // READY only from an upload still open and (where the store can tell) with the chunks just checked:
      // a failing completion at the same time may have removed them, or a re-sent chunk replaced one.
      const closed = await this.store.uploads.closeUpload(upload, 'READY', { transitHash: claimed, chunks });
      this.cache.delete(uploadId);
      if (closed === 'stopped') throw new FleetError('StatusNoUploads');
      if (closed === 'closed') break;
      if (attempt >= COMPLETE_ATTEMPTS) {
        throw new StoreBusyError(`upload ${uploadId}: chunks keep changing under completion`, {
          clientMessage: 'the upload is being changed: chunks of it are still being sent; retry later', clientError: 'TooManyRequests',
        });
      }
    }
    this.log.info({ 'fleet.upload.id': uploadId, 'fleet.agent.id': agent._id, 'file.size': upload.size }, 'upload complete');
  }

  /** Exactly chunks 0..count-1 (upstream's allChunksPresent). */
  private chunksPlaced(upload: UploadRef, chunks: StoredChunk[]): boolean {
    return chunks.length === chunkCount(upload.size, upload.chunkSize) && chunks.every((c, i) => c.n === i);
  }

  /** Sizes, `last` flags and the transit hash (upstream's verifyChunkInfo). */
  private chunksValid(upload: UploadRef, chunks: StoredChunk[], claimed: string): boolean {
    const count = chunks.length;
    const finalSize = upload.size - (count - 1) * upload.chunkSize;
    const sizesRight = chunks.every((c, i) => (i === count - 1
      ? c.last && c.size === finalSize
      : !c.last && c.size === upload.chunkSize));
    return sizesRight && transitHash(chunks.map((c) => c.sha2)) === claimed;
  }

  /**
   * Removes uploads that can no longer complete: past the upload window and not READY, or failed. Where
   * the store has no lifecycle of its own (the embedded store), this is what keeps abandoned chunks from
   * piling up; its first run also sweeps chunk directories a crash left without a row.
   */
  async collectAbandoned(limit = MAX_CHUNKS): Promise<number> {
    const { uploads, deliveries } = this.store;
    // Once in the store's life: later calls answer at once.
    await this.sweep('uploads', uploads);
    await this.sweep('deliveries', deliveries);
    const now = this.clock.now();
    // The store's own selection, oldest first, when it has one: READY uploads (listUploads lists them,
    // newest first) would otherwise fill `limit` and the oldest abandoned ones never be reached.
    const candidates = uploads.listAbandoned ? await uploads.listAbandoned(now - UPLOAD_WINDOW_MS, limit) : await uploads.listUploads({ limit });
    let n = 0;
    for (const u of candidates) {
      if (u.status === 'READY') continue;
      if (u.status === 'UPLOAD_ERROR' || now - u.startedMs > UPLOAD_WINDOW_MS) {
        await this.store.uploads.deleteUpload(u);
        n++;
      }
    }
    return n;
  }

  /** One sweep, logged; a failure is logged and does not stop the upload clean-up. */
  private async sweep(kind: string, store: { sweepOrphans?(): Promise<OrphanSweep | undefined> }): Promise<void> {
    if (!store.sweepOrphans) return;
    try {
      const r = await store.sweepOrphans();
      if (!r) return;
      const fields = { 'files.kind': kind, 'files.orphans.removed': r.removed, 'files.orphans.examined': r.examined };
      if (r.truncated) this.log.warn(fields, 'chunk directory sweep stopped at its bound; the rest is left for the next start');
      else if (r.removed > 0) this.log.info(fields, 'removed chunk directories no row owns');
    } catch (err) {
      this.log.warn({ err, 'files.kind': kind }, 'chunk directory sweep failed');
    }
  }
}
