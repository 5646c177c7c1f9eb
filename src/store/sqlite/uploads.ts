// Uploads (agent → Fleet) on the embedded store: upstream's .fleet-fileds-fromhost-meta-<src> documents
// in `uploads`, the chunk index (upstream's chunk documents without their data) in `upload_chunks`, the
// bytes in files (blobs.ts). A chunk's file is in place before its row, so a listed chunk can be read.
import type { JsonObject } from '../documents';
import { STOPPED_UPLOAD_STATUSES as STOPPED, type ChunkWrite, type OrphanSweep, type StoredChunk, type UploadClose, type UploadListQuery, type UploadRecord, type UploadRef, type UploadStore } from '../file-ports';
import { NotFoundError } from '../port';
import { KeyedTurns, keptAsName, ownerDirName, type BlobDir } from './blobs';
import type { Row, SqlAccess } from './sql-access';

/** An upload's status, as its document holds it (`file.Status`). */
const STATUS = "json_extract(doc, '$.file.Status')";
/** Entries one sweep of a chunk directory looks at (each costs an lstat, and a look-up by primary key). */
export const SWEEP_MAX_ENTRIES = 100_000;
/** File-system and JS clocks differ by a tick or so: a directory changed this close to a sweep's start is left. */
const MTIME_SLACK_MS = 2000;

/**
 * Whether a row of `table` owns a chunk directory name (blobs.ts names it after the row's id). A kept
 * name is looked up by id when asked; hashed names are the hashes of the ids that are not kept names,
 * taken once now — the sweep leaves directories changed since (changedBefore), which covers rows added after.
 */
export function rowOwns(sql: SqlAccess, table: 'uploads' | 'delivery_files'): (name: string) => boolean {
  const hashed = new Set<string>();
  for (const r of sql.q(`SELECT id FROM ${table}`).all()) {
    const id = (r as Row)['id'] as string;
    if (!keptAsName(id)) hashed.add(ownerDirName(id));
  }
  const byId = sql.q(`SELECT 1 FROM ${table} WHERE id = ?`);
  return (name) => (name.startsWith('~') ? hashed.has(name) : byId.get(name) !== undefined);
}

/** The moment before which a directory counts as settled for a sweep starting now (see MTIME_SLACK_MS). */
export function settledBefore(ageMs = 0): number {
  return Date.now() - MTIME_SLACK_MS - ageMs;
}

const text = (v: unknown): string => (typeof v === 'string' ? v : v === undefined || v === null ? '' : String(v));

function fileOf(doc: JsonObject): JsonObject {
  const f = doc['file'];
  return f && typeof f === 'object' && !Array.isArray(f) ? f : {};
}

function toRecord(row: Row): UploadRecord {
  const doc = JSON.parse(row['doc'] as string) as JsonObject;
  const file = fileOf(doc);
  return {
    id: row['id'] as string,
    source: row['source'] as string,
    uploadId: row['upload_id'] as string,
    agentId: row['agent_id'] as string,
    actionId: row['action_id'] as string,
    size: Number(file['size'] ?? 0),
    chunkSize: Number(file['ChunkSize'] ?? 0),
    status: text(file['Status']),
    startedMs: Number(row['started_ms']),
    doc,
  };
}

const COLUMNS = 'id, source, upload_id, agent_id, action_id, started_ms, doc';

function filterOf(query: UploadListQuery): { where: string; params: (string | number)[] } {
  const where: string[] = [];
  const params: (string | number)[] = [];
  if (query.agentId !== undefined) {
    where.push('agent_id = ?');
    params.push(query.agentId);
  }
  if (query.actionId !== undefined) {
    where.push('action_id = ?');
    params.push(query.actionId);
  }
  if (query.inProgressSince !== undefined) {
    where.push(`started_ms >= ? AND IFNULL(${STATUS}, '') NOT IN (${[...STOPPED].map(() => '?').join(', ')})`);
    params.push(query.inProgressSince, ...STOPPED);
  }
  return { where: where.length ? `WHERE ${where.join(' AND ')}` : '', params };
}

const sameChunks = (a: StoredChunk[], b: StoredChunk[]): boolean =>
  a.length === b.length && a.every((c, i) => c.n === b[i]!.n && c.size === b[i]!.size && c.sha2 === b[i]!.sha2 && c.last === b[i]!.last);

export class SqliteUploads implements UploadStore {
  /**
   * An upload's status changes and its chunks' placing run one at a time: a chunk found open is placed
   * and recorded before completion can mark the upload READY, never after.
   */
  private readonly statusTurns = new KeyedTurns();
  private swept = false;

  constructor(private readonly sql: SqlAccess, private readonly blobs: BlobDir) {}

  async createUpload(source: string, id: string, doc: JsonObject): Promise<boolean> {
    const started = Number(doc['upload_start'] ?? 0);
    return this.sql.write(() => {
      if (this.sql.q('SELECT 1 FROM uploads WHERE id = ?').get(id)) return false;
      this.sql.q(`INSERT INTO uploads (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)`).run(
        id, source, text(doc['upload_id']), text(doc['agent_id']), text(doc['action_id']), Number.isFinite(started) ? started : 0,
        JSON.stringify(doc),
      );
      return true;
    });
  }

  async findUpload(uploadId: string): Promise<UploadRecord | undefined> {
    const row = this.sql.q(`SELECT ${COLUMNS} FROM uploads WHERE upload_id = ? ORDER BY rowid LIMIT 1`).get(uploadId) as Row | undefined;
    return row ? toRecord(row) : undefined;
  }

  async listUploads(query: UploadListQuery): Promise<UploadRecord[]> {
    const { where, params } = filterOf(query);
    const sql = `SELECT ${COLUMNS} FROM uploads ${where} ORDER BY started_ms DESC, rowid DESC LIMIT ?`;
    return this.sql.q(sql).all(...params, query.limit).map((r) => toRecord(r as Row));
  }

  async countUploads(query: UploadListQuery): Promise<number> {
    const { where, params } = filterOf(query);
    // Bounded inside: rows past the limit are not looked at (each costs a json_extract of its document).
    const row = this.sql.q(`SELECT COUNT(*) AS n FROM (SELECT 1 FROM uploads ${where} LIMIT ?)`).get(...params, query.limit) as Row;
    return Number(row['n']);
  }

  /**
   * What the abandoned-upload clean-up (fleet/uploads.ts) removes, oldest first: uploads not READY that
   * began before `startedBefore`, and failed ones. Selected here rather than from listUploads (newest
   * first, READY ones included) so finished uploads cannot crowd the abandoned ones out of `limit`. An
   * optional port method: a store whose files expire by themselves (Elasticsearch) has no such clean-up.
   */
  async listAbandoned(startedBefore: number, limit: number): Promise<UploadRecord[]> {
    return this.sql.q(`SELECT ${COLUMNS} FROM uploads
      WHERE (started_ms < ? AND IFNULL(${STATUS}, '') <> 'READY') OR ${STATUS} = 'UPLOAD_ERROR'
      ORDER BY started_ms, rowid LIMIT ?`).all(startedBefore, limit).map((r) => toRecord(r as Row));
  }

  /** Why the upload takes no chunk now (gone, or stopped); undefined when it takes one. */
  private refusal(upload: UploadRef): Error | undefined {
    const row = this.sql.q(`SELECT ${STATUS} AS status FROM uploads WHERE id = ?`).get(upload.id) as Row | undefined;
    if (!row) return new NotFoundError(`upload ${upload.uploadId} not found`);
    const status = text(row['status']);
    return STOPPED.has(status) ? new Error(`upload ${upload.uploadId} is ${status}: it takes no more chunks`) : undefined;
  }

  async putChunk(upload: UploadRef, chunk: ChunkWrite, data: AsyncIterable<Uint8Array>): Promise<number> {
    return this.blobs.put('uploads', upload.id, chunk.n, data, (place) => this.statusTurns.run(upload.id, async () => {
      // The status the caller checked may be old (a cache), and a slow chunk may end after completion:
      // a finished upload's chunk file is never replaced, so this is checked before placing it.
      const early = this.refusal(upload);
      if (early) throw early;
      const size = await place();
      // Again in the row's transaction: another process (the admin CLI) may have deleted the upload
      // meanwhile. Refused, the file goes again (blobs.put) rather than lingering unowned.
      const refused = await this.sql.write(() => {
        const why = this.refusal(upload);
        if (why) return why;
        this.sql.q('INSERT OR REPLACE INTO upload_chunks (bid, n, size, sha2, last, timestamp_ms) VALUES (?, ?, ?, ?, ?, ?)')
          .run(upload.id, chunk.n, size, chunk.sha2, chunk.last ? 1 : 0, chunk.timestampMs);
        return undefined;
      });
      if (refused) throw refused;
      return size;
    }));
  }

  async deleteChunk(upload: UploadRef, n: number): Promise<void> {
    await this.blobs.remove('uploads', upload.id, n, async () => {
      await this.sql.write(() => this.sql.q('DELETE FROM upload_chunks WHERE bid = ? AND n = ?').run(upload.id, n));
    });
  }

  async listChunks(upload: UploadRef): Promise<StoredChunk[]> {
    return this.chunksOf(upload);
  }

  private chunksOf(upload: UploadRef): StoredChunk[] {
    return this.sql.q('SELECT n, size, sha2, last FROM upload_chunks WHERE bid = ? ORDER BY n').all(upload.id).map((r) => {
      const row = r as Row;
      return { n: Number(row['n']), size: Number(row['size']), sha2: row['sha2'] as string, last: Number(row['last']) === 1 };
    });
  }

  readChunk(upload: UploadRef, n: number): AsyncIterable<Uint8Array> {
    return this.blobs.read('uploads', upload.id, n);
  }

  async deleteChunks(upload: UploadRef): Promise<void> {
    await this.sql.write(() => this.sql.q('DELETE FROM upload_chunks WHERE bid = ?').run(upload.id));
    await this.blobs.removeAll('uploads', upload.id);
  }

  /**
   * In the status turn (after any chunk being placed: a chunk found open is in before the status
   * changes) and one transaction: the status read, the chunks compared and the new status written, so
   * no other completion and no chunk being placed comes in between. An upload already in the state
   * asked for is `closed`, as the Elasticsearch adapter answers a resent request (the port's rule).
   */
  async closeUpload(upload: UploadRef, status: 'READY' | 'UPLOAD_ERROR', opts: { transitHash?: string; chunks?: StoredChunk[] } = {}): Promise<UploadClose> {
    return this.statusTurns.run(upload.id, () => this.sql.write((): UploadClose => {
      const row = this.sql.q(`SELECT doc, ${STATUS} AS status, json_extract(doc, '$.transithash.sha256') AS transit FROM uploads WHERE id = ?`)
        .get(upload.id) as Row | undefined;
      if (!row) return 'stopped';
      if (STOPPED.has(text(row['status']))) {
        return text(row['status']) === status && (opts.transitHash === undefined || row['transit'] === opts.transitHash) ? 'closed' : 'stopped';
      }
      if (opts.chunks && !sameChunks(opts.chunks, this.chunksOf(upload))) return 'changed';
      this.writeStatus(upload, row, status, opts.transitHash);
      return 'closed';
    }));
  }

  private writeStatus(upload: UploadRef, row: Row, status: string, transitHash: string | undefined): void {
    const doc = JSON.parse(row['doc'] as string) as JsonObject;
    doc['file'] = { ...fileOf(doc), Status: status };
    if (transitHash !== undefined) doc['transithash'] = { sha256: transitHash };
    this.sql.q('UPDATE uploads SET doc = ? WHERE id = ?').run(JSON.stringify(doc), upload.id);
  }

  async deleteUpload(upload: UploadRef): Promise<void> {
    // The chunk rows go with the upload (ON DELETE CASCADE); files after rows, so no row names a missing
    // file. A crash in between leaves a directory no row owns: sweepOrphans removes it.
    await this.sql.write(() => this.sql.q('DELETE FROM uploads WHERE id = ?').run(upload.id));
    await this.blobs.removeAll('uploads', upload.id);
  }

  /**
   * Removes the chunk directories no upload owns, once in the store's life (the first call; later ones
   * answer undefined). For the server's file clean-up (fleet/uploads.ts), not the admin CLI; an optional
   * port method: Elasticsearch keeps no such directories.
   */
  async sweepOrphans(): Promise<OrphanSweep | undefined> {
    if (this.swept) return undefined;
    this.swept = true;
    return this.blobs.sweep('uploads', { owned: rowOwns(this.sql, 'uploads'), changedBefore: settledBefore(), maxEntries: SWEEP_MAX_ENTRIES });
  }
}
