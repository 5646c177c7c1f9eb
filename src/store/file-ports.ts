// The store ports for files, split from the main port: uploads (agent → Fleet, upstream's
// .fleet-fileds-fromhost-*), deliveries (Fleet → agent, .fleet-fileds-tohost-* and integration
// libraries) and artifacts (.fleet-artifacts). Bytes move as async iterables of chunks, so no adapter
// or caller ever holds more than one chunk of a file.
import type { JsonObject } from './documents';

/**
 * What chunks and completion need of an upload (upstream's file.Info): its ids, place, size and state,
 * without the client's document. What the upload cache holds, and what the port's chunk calls take.
 */
export interface UploadRef {
  /** The metadata document id, `<action_id>.<agent_id>`; chunk documents point at it (`bid`). */
  id: string;
  /** `src` of the upload (`agent`, `endpoint`, …): which index pair holds it. */
  source: string;
  uploadId: string;
  agentId: string;
  actionId: string;
  /** Declared `file.size`, bytes. */
  size: number;
  /** `file.ChunkSize`. */
  chunkSize: number;
  /** `file.Status`: AWAITING_UPLOAD, READY, UPLOAD_ERROR, DELETED, … */
  status: string;
  /** `upload_start`, Unix ms. */
  startedMs: number;
}

/** An upload's metadata document (upstream's file info plus what the server adds), as fleet logic reads it. */
export interface UploadRecord extends UploadRef {
  /** The whole document as stored (file name, mime type, transithash, client extras): up to the begin body's 5 MiB. */
  doc: JsonObject;
}

/** A stored chunk as the completion check sees it (upstream lists sha2, last and the data's length). */
export interface StoredChunk {
  n: number;
  size: number;
  sha2: string;
  last: boolean;
}

export interface ChunkWrite {
  n: number;
  last: boolean;
  /** The client's X-Chunk-SHA2, stored as given. */
  sha2: string;
  timestampMs: number;
}

export interface UploadListQuery {
  agentId?: string;
  actionId?: string;
  /** Only uploads still taking chunks (no stopped status) begun at or after this time (ms). */
  inProgressSince?: number;
  limit: number;
}

/** Upload statuses after which an upload takes no more chunks (upstream's ErrUploadStopped). */
export const STOPPED_UPLOAD_STATUSES: ReadonlySet<string> = new Set(['READY', 'UPLOAD_ERROR', 'DELETED']);

/**
 * How closing an upload went: `closed` (it is now READY, or UPLOAD_ERROR); `stopped` (it had stopped
 * meanwhile — another completion closed it — or is gone: nothing changed); `changed` (its stored chunks
 * are no longer those the caller checked — a re-sent chunk landed since: nothing changed).
 */
export type UploadClose = 'closed' | 'stopped' | 'changed';

/**
 * The store refused an upload's document for what the client put in it (Elasticsearch's 400
 * document_parsing_exception: a value of the wrong type for a mapped field, say): the client's mistake,
 * not a store fault. The message is the store's own words, for the log only; `field` is the field the
 * store named, when it named one.
 */
export class UploadDocumentRefused extends Error {
  override readonly name = 'UploadDocumentRefused';
  readonly field: string | undefined;

  constructor(message: string, options?: { cause?: unknown; field?: string }) {
    super(message, { cause: options?.cause });
    this.field = options?.field;
  }
}

export interface UploadStore {
  /**
   * Creates the metadata document `id` in `source`'s index; false when it exists already. Throws
   * UploadDocumentRefused when the store refuses what the document holds.
   */
  createUpload(source: string, id: string, doc: JsonObject): Promise<boolean>;
  /** Fresh (uncached) read by upload id. */
  findUpload(uploadId: string): Promise<UploadRecord | undefined>;
  listUploads(query: UploadListQuery): Promise<UploadRecord[]>;
  /** How many uploads match, counting at most `limit` (no document is read: begin's in-progress bound asks often). */
  countUploads(query: UploadListQuery): Promise<number>;
  /**
   * Stores chunk `chunk.n` from `data` (which the caller bounds), replacing an earlier copy, and is
   * durable when it resolves. Returns the bytes written. A finished upload's stored chunk is never replaced,
   * whatever status the caller's copy shows: the store reads the status afresh and throws.
   */
  putChunk(upload: UploadRef, chunk: ChunkWrite, data: AsyncIterable<Uint8Array>): Promise<number>;
  deleteChunk(upload: UploadRef, n: number): Promise<void>;
  /** Every stored chunk of the upload, ordered by n (writes before this call are visible). */
  listChunks(upload: UploadRef): Promise<StoredChunk[]>;
  readChunk(upload: UploadRef, n: number): AsyncIterable<Uint8Array>;
  deleteChunks(upload: UploadRef): Promise<void>;
  /**
   * Completion's status turn: sets `status` (READY with `transitHash`, or UPLOAD_ERROR) only while the
   * upload still takes chunks, so of two completions at once only one closes it. With `chunks`, only
   * while the stored chunks are still those (where the store can tell at once: the embedded store).
   * An upload found already in exactly the state asked for (status, and transit hash when given) is
   * `closed`: a request retried after its first attempt landed must not read as another's completion.
   */
  closeUpload(upload: UploadRef, status: 'READY' | 'UPLOAD_ERROR', opts?: { transitHash?: string; chunks?: StoredChunk[] }): Promise<UploadClose>;
  /** Deletes the upload: metadata and chunks. */
  deleteUpload(upload: UploadRef): Promise<void>;
  /**
   * A store whose files do not expire by themselves (the embedded store) keeps its own: uploads not
   * READY begun before `startedBefore`, and failed ones, oldest first (fleet/uploads.ts collectAbandoned).
   */
  listAbandoned?(startedBefore: number, limit: number): Promise<UploadRecord[]>;
  /** The same store: removes chunk directories no row owns (a crash between a row and its files); once per store. */
  sweepOrphans?(): Promise<OrphanSweep | undefined>;
}

/** What a sweep of chunk directories did. */
export interface OrphanSweep {
  /** Directories removed. */
  removed: number;
  /** Entries looked at. */
  examined: number;
  /** The sweep's bound was reached before the end of the directory: more may be left for the next one. */
  truncated: boolean;
}

/** Where a delivered file is looked up: files for one agent, or an integration's library (`?source=`). */
export type DeliveryScope = { agentId: string } | { integration: string; library: string };

/** A file ready for delivery, as the download needs it. */
export interface DeliveryFile {
  id: string;
  size: number;
  chunkSize: number;
  mimeType: string | undefined;
  sha256: string | undefined;
  /** Opaque chunk handles in position order, for readDeliveryChunk. */
  chunks: string[];
  /** The position (chunk number) of each of `chunks`: a file with a gap is not served whole. */
  chunkNumbers: number[];
  /**
   * Whether every chunk but the last is known to hold `chunkSize` bytes of the file: the metadata names
   * its `ChunkSize` and no compression. Only then can the chunk count be checked against `size`; otherwise
   * `chunkSize` is a default, used for byte ranges only (upstream's delivery, file/delivery).
   */
  sizedChunks: boolean;
}

export interface DeliveryPublish {
  id: string;
  name: string;
  mimeType: string;
  size: number;
  sha256: string;
  chunkSize: number;
  agentIds: string[];
}

export interface DeliveryStore {
  /** A READY file the scope may see; undefined when there is none. */
  findDeliveryFile(id: string, scope: DeliveryScope): Promise<DeliveryFile | undefined>;
  /** One chunk's bytes (a chunk is at most chunkSize). */
  readDeliveryChunk(chunk: string): AsyncIterable<Uint8Array>;
  /** Publishes a file for agents (what Kibana does upstream); `data` yields the file in order. */
  publishDeliveryFile(meta: DeliveryPublish, data: AsyncIterable<Uint8Array>): Promise<void>;
  /** As UploadStore's, for a store that keeps its own files (the embedded store). */
  sweepOrphans?(): Promise<OrphanSweep | undefined>;
}

/** A `.fleet-artifacts` document. */
export interface ArtifactDoc {
  identifier: string;
  compression_algorithm: string;
  encryption_algorithm: string;
  encoded_sha256: string;
  encoded_size: number;
  decoded_sha256: string;
  decoded_size: number;
  created: string;
  /** Base64 of the encoded bytes. */
  body: string;
  package_name?: string;
}

export interface ArtifactStore {
  /** The artifact with this identifier and decoded SHA-256 (the first, if several). */
  findArtifact(identifier: string, decodedSha256: string): Promise<ArtifactDoc | undefined>;
  putArtifact(doc: ArtifactDoc): Promise<void>;
}
