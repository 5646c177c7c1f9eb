// Uploads (agent → Fleet) on the embedded store: upstream's .fleet-fileds-fromhost-meta-<src> documents
// in `uploads`, the chunk index (upstream's chunk documents without their data) in `upload_chunks`, the
// bytes in files (blobs.ts). A chunk's file is in place before its row, so a listed chunk can be read.
import type { JsonObject } from '../documents';
import type { ChunkWrite, StoredChunk, UploadListQuery, UploadRecord, UploadStore } from '../file-ports';
import { NotFoundError } from '../port';
import type { BlobDir } from './blobs';
import type { Row, SqlAccess } from './sql-access';

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

export class SqliteUploads implements UploadStore {
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
    const where: string[] = [];
    const params: string[] = [];
    if (query.agentId !== undefined) {
      where.push('agent_id = ?');
      params.push(query.agentId);
    }
    if (query.actionId !== undefined) {
      where.push('action_id = ?');
      params.push(query.actionId);
    }
    const sql = `SELECT ${COLUMNS} FROM uploads ${where.length ? `WHERE ${where.join(' AND ')} ` : ''}ORDER BY started_ms DESC, rowid DESC LIMIT ?`;
    return this.sql.q(sql).all(...params, query.limit).map((r) => toRecord(r as Row));
  }

  async putChunk(upload: UploadRecord, chunk: ChunkWrite, data: AsyncIterable<Uint8Array>): Promise<number> {
    return this.blobs.put('uploads', upload.id, chunk.n, data, async (size) => {
      const stored = await this.sql.write(() => {
        // Deleted while the bytes arrived: the file goes again (blobs.put) rather than lingering unowned.
        if (!this.sql.q('SELECT 1 FROM uploads WHERE id = ?').get(upload.id)) return false;
        this.sql.q('INSERT OR REPLACE INTO upload_chunks (bid, n, size, sha2, last, timestamp_ms) VALUES (?, ?, ?, ?, ?, ?)')
          .run(upload.id, chunk.n, size, chunk.sha2, chunk.last ? 1 : 0, chunk.timestampMs);
        return true;
      });
      if (!stored) throw new NotFoundError(`upload ${upload.uploadId} not found`);
      return size;
    });
  }

  async deleteChunk(upload: UploadRecord, n: number): Promise<void> {
    await this.blobs.remove('uploads', upload.id, n, async () => {
      await this.sql.write(() => this.sql.q('DELETE FROM upload_chunks WHERE bid = ? AND n = ?').run(upload.id, n));
    });
  }

  async listChunks(upload: UploadRecord): Promise<StoredChunk[]> {
    return this.sql.q('SELECT n, size, sha2, last FROM upload_chunks WHERE bid = ? ORDER BY n').all(upload.id).map((r) => {
      const row = r as Row;
      return { n: Number(row['n']), size: Number(row['size']), sha2: row['sha2'] as string, last: Number(row['last']) === 1 };
    });
  }

  readChunk(upload: UploadRecord, n: number): AsyncIterable<Uint8Array> {
    return this.blobs.read('uploads', upload.id, n);
  }

  async deleteChunks(upload: UploadRecord): Promise<void> {
    await this.sql.write(() => this.sql.q('DELETE FROM upload_chunks WHERE bid = ?').run(upload.id));
    await this.blobs.removeAll('uploads', upload.id);
  }

  /** As upstream's update-by-query, an upload that is gone is not an error. */
  async setUploadStatus(upload: UploadRecord, status: string, transitHash?: string): Promise<void> {
    await this.sql.write(() => {
      const row = this.sql.q('SELECT doc FROM uploads WHERE id = ?').get(upload.id) as Row | undefined;
      if (!row) return;
      const doc = JSON.parse(row['doc'] as string) as JsonObject;
      doc['file'] = { ...fileOf(doc), Status: status };
      if (transitHash !== undefined) doc['transithash'] = { sha256: transitHash };
      this.sql.q('UPDATE uploads SET doc = ? WHERE id = ?').run(JSON.stringify(doc), upload.id);
    });
  }

  async deleteUpload(upload: UploadRecord): Promise<void> {
    // The chunk rows go with the upload (ON DELETE CASCADE); files after rows, so no row names a missing file.
    await this.sql.write(() => this.sql.q('DELETE FROM uploads WHERE id = ?').run(upload.id));
    await this.blobs.removeAll('uploads', upload.id);
  }
}
