// Deliveries (Fleet → agent) on the embedded store: documents shaped as upstream's
// .fleet-fileds-tohost-meta (Kibana writes them there; here `publishDeliveryFile` does), their target
// agents and chunk index in tables, the bytes in files (blobs.ts). Integration libraries
// (`?source=`, .<integration>-fleetfiles-<lib>-*) are Kibana-side and do not exist on this store.
import { createHash } from 'node:crypto';
import type { JsonObject } from '../documents';
import type { DeliveryFile, DeliveryPublish, DeliveryScope, DeliveryStore, OrphanSweep } from '../file-ports';
import { NotFoundError } from '../port';
import type { BlobDir, BlobWriter } from './blobs';
import type { Row, SqlAccess } from './sql-access';
import { rowOwns, settledBefore, SWEEP_MAX_ENTRIES } from './uploads';

/**
 * The admin CLI publishes from its own process beside the server, chunk files first and the row last:
 * a directory without a row that changed this recently may be one being written, and the sweep leaves it.
 * (A publish changes its directory with every chunk; a chunk is at most 64 MiB.)
 */
const PUBLISH_GRACE_MS = 3_600_000;

/** A chunk handle: `<n>:<file id>` (the id may contain anything, n cannot contain ':'). */
const handle = (id: string, n: number): string => `${n}:${id}`;

function parseHandle(h: string): { id: string; n: number } {
  const at = h.indexOf(':');
  const n = Number(h.slice(0, at));
  if (at < 1 || !Number.isSafeInteger(n) || n < 0) throw new NotFoundError(`no delivery chunk ${h}`);
  return { id: h.slice(at + 1), n };
}

export class SqliteDeliveries implements DeliveryStore {
  private swept = false;

  constructor(private readonly sql: SqlAccess, private readonly blobs: BlobDir) {}

  async findDeliveryFile(id: string, scope: DeliveryScope): Promise<DeliveryFile | undefined> {
    if (!('agentId' in scope)) return undefined;
    const row = this.sql.q(`SELECT f.doc FROM delivery_files f JOIN delivery_targets t ON t.file_id = f.id
      WHERE f.id = ? AND t.agent_id = ? AND f.status = 'READY'`).get(id, scope.agentId) as Row | undefined;
    if (!row) return undefined;
    const file = (JSON.parse(row['doc'] as string) as { file: JsonObject }).file;
    const hash = file['hash'] as JsonObject | undefined;
    const numbers = this.sql.q('SELECT n FROM delivery_chunks WHERE file_id = ? ORDER BY n').all(id).map((r) => Number((r as Row)['n']));
    return {
      id,
      size: Number(file['size']),
      chunkSize: Number(file['ChunkSize']),
      mimeType: typeof file['mime_type'] === 'string' ? file['mime_type'] : undefined,
      sha256: typeof hash?.['sha256'] === 'string' ? hash['sha256'] : undefined,
      chunks: numbers.map((n) => handle(id, n)),
      chunkNumbers: numbers,
      // publishDeliveryFile always splits at ChunkSize (a positive integer) and never compresses.
      sizedChunks: true,
    };
  }

  readDeliveryChunk(chunk: string): AsyncIterable<Uint8Array> {
    const { id, n } = parseHandle(chunk);
    return this.blobs.read('deliveries', id, n);
  }

  /**
   * Splits `data` into chunk files as it arrives, then makes the file visible (READY) in one
   * transaction. An earlier file of that id is withdrawn first. Data that does not match the declared
   * size or SHA-256 is refused (the download announces both), leaving nothing behind. A crash before
   * the row leaves chunk files no row owns: sweepOrphans removes them.
   */
  async publishDeliveryFile(meta: DeliveryPublish, data: AsyncIterable<Uint8Array>): Promise<void> {
    if (!Number.isSafeInteger(meta.chunkSize) || meta.chunkSize <= 0) throw new Error(`delivery file ${meta.id}: chunk size must be a positive integer`);
    await this.sql.write(() => this.sql.q('DELETE FROM delivery_files WHERE id = ?').run(meta.id));
    await this.blobs.removeAll('deliveries', meta.id);
    const sizes: number[] = [];
    const whole = createHash('sha256');
    let w: BlobWriter | undefined;
    let total = 0;
    try {
      for await (const piece of data) {
        total += piece.length;
        if (total > meta.size) throw new Error(`delivery file ${meta.id}: more data than its declared size ${meta.size}`);
        whole.update(piece);
        for (let off = 0; off < piece.length;) {
          w ??= await this.blobs.writer('deliveries', meta.id, sizes.length);
          const take = Math.min(piece.length - off, meta.chunkSize - w.written);
          await w.write(piece.subarray(off, off + take));
          off += take;
          if (w.written === meta.chunkSize) {
            const full = w;
            w = undefined;
            sizes.push(await full.commit());
          }
        }
      }
      if (w) {
        const rest = w;
        w = undefined;
        sizes.push(await rest.commit());
      }
      if (total !== meta.size) throw new Error(`delivery file ${meta.id}: ${total} bytes, ${meta.size} declared`);
      const sha256 = whole.digest('hex');
      if (sha256 !== meta.sha256.toLowerCase()) throw new Error(`delivery file ${meta.id}: SHA-256 ${sha256}, ${meta.sha256} declared`);
      await this.sql.write(() => this.insert(meta, sizes));
    } catch (err) {
      await w?.abort();
      await this.blobs.removeAll('deliveries', meta.id).catch(() => {});
      throw err;
    }
  }

  private insert(meta: DeliveryPublish, sizes: number[]): void {
    const doc = {
      '@timestamp': Date.now(),
      file: {
        name: meta.name, mime_type: meta.mimeType, size: meta.size, ChunkSize: meta.chunkSize, hash: { sha256: meta.sha256 },
        Status: 'READY', Meta: { target_agents: meta.agentIds },
      },
    };
    this.sql.q('INSERT INTO delivery_files (id, status, doc) VALUES (?, ?, ?)').run(meta.id, 'READY', JSON.stringify(doc));
    const target = this.sql.q('INSERT OR IGNORE INTO delivery_targets (file_id, agent_id) VALUES (?, ?)');
    for (const agentId of meta.agentIds) target.run(meta.id, agentId);
    const chunk = this.sql.q('INSERT INTO delivery_chunks (file_id, n, size) VALUES (?, ?, ?)');
    sizes.forEach((size, n) => chunk.run(meta.id, n, size));
  }

  /**
   * Removes the chunk directories no delivery owns, once in the store's life (later calls answer
   * undefined), leaving those changed within PUBLISH_GRACE_MS. For the server's file clean-up (an
   * optional port method, as SqliteUploads.sweepOrphans).
   */
  async sweepOrphans(): Promise<OrphanSweep | undefined> {
    if (this.swept) return undefined;
    this.swept = true;
    return this.blobs.sweep('deliveries', {
      owned: rowOwns(this.sql, 'delivery_files'), changedBefore: settledBefore(PUBLISH_GRACE_MS), maxEntries: SWEEP_MAX_ENTRIES,
    });
  }
}
