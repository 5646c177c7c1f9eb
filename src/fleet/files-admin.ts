// Files without Kibana: diagnostics requested from an agent and fetched back, uploads listed, read and
// deleted, files published for delivery, artifacts written — through the store's file ports, in the
// shapes Kibana's Fleet writes (x-pack/plugins/fleet/server/services/agents/request_diagnostics.ts,
// services/files, Endpoint's artifact client).
import { createHash, randomUUID } from 'node:crypto';
import { deflateSync } from 'node:zlib';
import type { JsonObject } from '../store/documents';
import type { ArtifactDoc, DeliveryPublish, DeliveryStore, UploadRecord, UploadStore } from '../store/file-ports';
import type { Store } from '../store/port';
import { Admin, AdminError } from './admin';
import { chunkCount } from './uploads';
import { isoTime } from '../util/time';

/** An upload's bytes do not match the hashes stored with it: nothing read from it may be trusted. */
export class FileIntegrityError extends AdminError {}

const sha256hex = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const sameHash = (a: unknown, b: string): boolean => typeof a === 'string' && a.toLowerCase() === b.toLowerCase();

function field(doc: JsonObject, path: string): unknown {
  let v: unknown = doc;
  for (const k of path.split('.')) v = v && typeof v === 'object' && !Array.isArray(v) ? (v as JsonObject)[k] : undefined;
  return v;
}

/** Ids that become URL path segments (`/api/fleet/file/<id>`, `/api/fleet/artifacts/<id>/…`). */
function checkSegment(what: string, value: string): void {
  if (!/^[A-Za-z0-9._:-]+$/.test(value) || value === '.' || value === '..') {
    throw new AdminError(`${what} "${value}" must be letters, digits and . _ : - (it becomes part of a URL path)`);
  }
}

// ---- uploads ----

export interface UploadSummary {
  upload_id: string;
  agent_id: string;
  action_id: string;
  name: string;
  size: number;
  status: string;
  started: string;
  source: string;
}

export function uploadSummary(u: UploadRecord): UploadSummary {
  const name = field(u.doc, 'file.name');
  return {
    upload_id: u.uploadId, agent_id: u.agentId, action_id: u.actionId, name: typeof name === 'string' ? name : '',
    size: u.size, status: u.status, started: isoTime(u.startedMs), source: u.source,
  };
}

export async function findUpload(uploads: UploadStore, uploadId: string): Promise<UploadRecord> {
  const u = await uploads.findUpload(uploadId);
  if (!u) throw new AdminError(`upload ${uploadId} not found`);
  return u;
}

export interface VerifiedFile {
  size: number;
  sha256: string;
}

/**
 * An upload's bytes chunk by chunk, checked on the way as the upload's own hashes allow: each chunk
 * against the sha2 the agent sent with it, the chunk hashes against the transithash the completion
 * stored, and the whole file against `file.hash.sha256` when the agent gave one. The iterable throws
 * FileIntegrityError at the first mismatch (a transithash or file hash mismatch only once all bytes
 * are out), so a consumer must keep nothing until it ends; `verified()` then gives size and hash.
 */
export function readVerifiedUpload(uploads: UploadStore, upload: UploadRecord): { bytes: AsyncIterable<Uint8Array>; verified(): VerifiedFile } {
  let result: VerifiedFile | undefined;
  const who = `upload ${upload.uploadId}`;
  async function* bytes(): AsyncIterable<Uint8Array> {
    if (upload.status !== 'READY') throw new AdminError(`${who} is ${upload.status}, not READY: there is nothing complete to read`);
    const count = chunkCount(upload.size, upload.chunkSize);
    const chunks = await uploads.listChunks(upload);
    if (chunks.length !== count || chunks.some((c, i) => c.n !== i)) {
      throw new FileIntegrityError(`${who}: ${chunks.length} chunks stored where its size calls for ${count} (0..${count - 1})`);
    }
    const whole = createHash('sha256');
    const transit = createHash('sha256');
    let size = 0;
    for (const c of chunks) {
      const h = createHash('sha256');
      for await (const piece of uploads.readChunk(upload, c.n)) {
        h.update(piece);
        whole.update(piece);
        size += piece.length;
        yield piece;
      }
      const digest = h.digest();
      if (!sameHash(c.sha2, digest.toString('hex'))) {
        throw new FileIntegrityError(`${who}: chunk ${c.n} is corrupt: its SHA-256 is ${digest.toString('hex')}, the agent sent ${c.sha2}`);
      }
      transit.update(digest);
    }
    if (size !== upload.size) throw new FileIntegrityError(`${who}: ${size} bytes stored, ${upload.size} declared`);
    const transitHash = transit.digest('hex');
    const stored = field(upload.doc, 'transithash.sha256');
    if (!sameHash(stored, transitHash)) {
      throw new FileIntegrityError(`${who}: the chunks' transithash is ${transitHash}, the upload's is ${String(stored ?? 'missing')}`);
    }
    const sha256 = whole.digest('hex');
    const declared = field(upload.doc, 'file.hash.sha256');
    if (typeof declared === 'string' && declared !== '' && !sameHash(declared, sha256)) {
      throw new FileIntegrityError(`${who}: the file's SHA-256 is ${sha256}, the agent declared ${declared}`);
    }
    result = { size, sha256 };
  }
  return {
    bytes: bytes(),
    verified: () => {
      if (!result) throw new Error(`${who} was not read to the end`);
      return result;
    },
  };
}

// ---- diagnostics ----

/** Kibana's REQUEST_DIAGNOSTICS_TIMEOUT_MS: the action expires after 3 hours. */
export const DIAGNOSTICS_EXPIRATION = '3h';
const METRICS = ['CPU', 'CONN'];

export interface DiagnosticsRequest {
  agentId: string;
  additionalMetrics?: string[];
  excludeEventsLog?: boolean;
}

/** Creates the REQUEST_DIAGNOSTICS action Kibana would for one known agent; returns its action id. */
export async function requestDiagnostics(store: Store, req: DiagnosticsRequest): Promise<string> {
  const metrics = (req.additionalMetrics ?? []).map((m) => m.trim().toUpperCase()).filter(Boolean);
  const unknown = metrics.filter((m) => !METRICS.includes(m));
  if (unknown.length > 0) throw new AdminError(`unknown additional metric ${unknown.join(', ')}; one of ${METRICS.join(', ')}`);
  const agent = await store.getAgent(req.agentId);
  if (!agent) throw new AdminError(`agent ${req.agentId} not found`);
  if (!agent._source.active) throw new AdminError(`agent ${req.agentId} is unenrolled`);
  const data: JsonObject = {};
  if (metrics.length > 0) data['additional_metrics'] = metrics;
  if (req.excludeEventsLog) data['exclude_events_log'] = true;
  const hit = await new Admin(store).createAction({ type: 'REQUEST_DIAGNOSTICS', agents: [req.agentId], data, expiration: DIAGNOSTICS_EXPIRATION });
  return hit._source.action_id;
}

export type UploadProgress =
  | { kind: 'started'; upload: UploadRecord }
  | { kind: 'chunks'; stored: number; total: number }
  | { kind: 'ready'; upload: UploadRecord };

export interface WaitOptions {
  timeoutMs: number;
  pollMs?: number;
  progress?: (p: UploadProgress) => void;
}

const FAILED = new Set(['UPLOAD_ERROR', 'DELETED']);

/**
 * Polls for the upload an agent makes in answer to `actionId` until it is READY. Fails when the upload
 * fails validation, when the agent acknowledges the action with an error, or when time runs out.
 */
export async function waitForUpload(store: Store, actionId: string, agentId: string, opts: WaitOptions): Promise<UploadRecord> {
  const deadline = Date.now() + opts.timeoutMs;
  const pollMs = opts.pollMs ?? 1000;
  let seen: string | undefined;
  let stored = -1;
  for (;;) {
    const upload = (await store.uploads.listUploads({ actionId, limit: 100 }))
      .filter((u) => u.agentId === agentId).sort((a, b) => b.startedMs - a.startedMs)[0];
    if (upload) {
      if (seen !== upload.uploadId) {
        seen = upload.uploadId;
        stored = -1;
        opts.progress?.({ kind: 'started', upload });
      }
      if (upload.status === 'READY') {
        opts.progress?.({ kind: 'ready', upload });
        return upload;
      }
      if (FAILED.has(upload.status)) {
        throw new AdminError(`the upload of agent ${agentId} for action ${actionId} ended ${upload.status}: the agent's chunks did not add up (upload ${upload.uploadId})`);
      }
      const n = (await store.uploads.listChunks(upload)).length;
      if (n !== stored) {
        stored = n;
        opts.progress?.({ kind: 'chunks', stored: n, total: chunkCount(upload.size, upload.chunkSize) });
      }
    }
    const failed = (await store.listActionResults(actionId)).find((r) => r._source.agent_id === agentId && r._source.error);
    if (failed) throw new AdminError(`agent ${agentId} reported an error for action ${actionId}: ${failed._source.error}`);
    const left = deadline - Date.now();
    if (left <= 0) {
      throw new AdminError(`timed out waiting for the upload of agent ${agentId} for action ${actionId}${upload ? ` (upload ${upload.uploadId} is ${upload.status})` : ''}; it may still come: fleet-server uploads list --action ${actionId}`);
    }
    await new Promise((r) => setTimeout(r, Math.min(pollMs, left)));
  }
}

// ---- delivery ----

export const DEFAULT_DELIVERY_CHUNK = 4 * 1024 * 1024;
/** Each chunk is one stored document; Elasticsearch refuses requests over 100 MiB by default. */
export const MAX_DELIVERY_CHUNK = 64 * 1024 * 1024;

export interface PublishRequest {
  id?: string;
  name: string;
  mimeType?: string;
  chunkSize?: number;
  agentIds: string[];
}

async function digest(data: AsyncIterable<Uint8Array>): Promise<VerifiedFile> {
  const h = createHash('sha256');
  let size = 0;
  for await (const piece of data) {
    h.update(piece);
    size += piece.length;
  }
  return { size, sha256: h.digest('hex') };
}

/**
 * Publishes a file for agents as Kibana does. `read` opens the file afresh: a first pass hashes it (the
 * metadata carries size and hash), a second pass stores it; the second pass re-hashes and fails when the
 * file changed in between.
 */
export async function publishFile(deliveries: DeliveryStore, req: PublishRequest, read: () => AsyncIterable<Uint8Array>): Promise<DeliveryPublish> {
  const id = req.id ?? randomUUID();
  checkSegment('file id', id);
  const chunkSize = req.chunkSize ?? DEFAULT_DELIVERY_CHUNK;
  if (!Number.isInteger(chunkSize) || chunkSize < 1 || chunkSize > MAX_DELIVERY_CHUNK) {
    throw new AdminError(`chunk size ${chunkSize} must be a whole number of bytes from 1 to ${MAX_DELIVERY_CHUNK}`);
  }
  const agentIds = [...new Set(req.agentIds)];
  if (agentIds.length === 0) throw new AdminError('--agents must name at least one agent');
  const first = await digest(read());
  if (first.size === 0) throw new AdminError(`${req.name} is empty: there is nothing to deliver`);
  const meta: DeliveryPublish = {
    id, name: req.name, mimeType: req.mimeType ?? 'application/octet-stream', size: first.size, sha256: first.sha256, chunkSize, agentIds,
  };
  async function* checked(): AsyncIterable<Uint8Array> {
    const h = createHash('sha256');
    let size = 0;
    for await (const piece of read()) {
      h.update(piece);
      size += piece.length;
      if (size > first.size) break;
      yield piece;
    }
    if (size !== first.size || h.digest('hex') !== first.sha256) throw new AdminError(`${req.name} changed while it was being published`);
  }
  await deliveries.publishDeliveryFile(meta, checked());
  return meta;
}

// ---- artifacts ----

/** Upstream's artifacts are at most a few MiB; each is one document with its body in base64. */
export const MAX_ARTIFACT_BYTES = 64 * 1024 * 1024;

export type ArtifactCompression = 'zlib' | 'none';

export interface ArtifactRequest {
  identifier: string;
  packageName?: string;
  compression?: ArtifactCompression;
}

/** What a policy input's `artifact_manifest.artifacts[<identifier>]` names for the artifact. */
export interface ManifestEntry {
  relative_url: string;
  compression_algorithm: string;
  encryption_algorithm: string;
  decoded_sha256: string;
  decoded_size: number;
  encoded_sha256: string;
  encoded_size: number;
}

/** A `.fleet-artifacts` document as Endpoint's artifact client writes it: zlib-deflated (or not), never encrypted. */
export function buildArtifact(decoded: Uint8Array, req: ArtifactRequest): ArtifactDoc {
  checkSegment('artifact identifier', req.identifier);
  if (decoded.length > MAX_ARTIFACT_BYTES) {
    throw new AdminError(`the artifact is ${decoded.length} bytes; artifacts are at most ${MAX_ARTIFACT_BYTES} bytes (one document each)`);
  }
  const compression = req.compression ?? 'zlib';
  if (compression !== 'zlib' && compression !== 'none') throw new AdminError(`compression ${String(compression)} must be zlib or none`);
  const encoded = compression === 'zlib' ? deflateSync(decoded) : decoded;
  return {
    identifier: req.identifier,
    compression_algorithm: compression,
    encryption_algorithm: 'none',
    encoded_sha256: sha256hex(encoded),
    encoded_size: encoded.length,
    decoded_sha256: sha256hex(decoded),
    decoded_size: decoded.length,
    created: isoTime(),
    body: Buffer.from(encoded.buffer, encoded.byteOffset, encoded.length).toString('base64'),
    package_name: req.packageName ?? 'endpoint',
  };
}

export function manifestEntry(doc: ArtifactDoc): ManifestEntry {
  return {
    relative_url: `/api/fleet/artifacts/${doc.identifier}/${doc.decoded_sha256}`,
    compression_algorithm: doc.compression_algorithm,
    encryption_algorithm: doc.encryption_algorithm,
    decoded_sha256: doc.decoded_sha256,
    decoded_size: doc.decoded_size,
    encoded_sha256: doc.encoded_sha256,
    encoded_size: doc.encoded_size,
  };
}

/**
 * Stores the artifact unless one with the same identifier and content is there already: agents are
 * served the first copy found by those two, so the stored one (whatever its compression) is the one a
 * manifest must describe. Returns that document.
 */
export async function putArtifact(store: Store, doc: ArtifactDoc): Promise<{ doc: ArtifactDoc; created: boolean }> {
  const existing = await store.artifacts.findArtifact(doc.identifier, doc.decoded_sha256);
  if (existing) return { doc: existing, created: false };
  await store.artifacts.putArtifact(doc);
  return { doc, created: true };
}
