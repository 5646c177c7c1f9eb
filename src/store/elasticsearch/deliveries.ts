// Files delivered to agents, as upstream's file/delivery reads them: metadata in
// `.fleet-fileds-tohost-meta-*` (or an integration library's `.<integration>-fleetfiles-<library>-meta`),
// chunks found by `bid` in the matching data indices and read one by one in CBOR. Publishing writes
// the documents the way Kibana does, so upstream Fleet Server could serve them too.
import type { Client } from '@elastic/elasticsearch';
import { encode } from 'cbor-x/index-no-eval';
import type { DeliveryFile, DeliveryPublish, DeliveryScope, DeliveryStore } from '../file-ports';
import { withRetries } from './connection';
import { chunkNumber, indexFragment, rawRequest, readStoredChunk, refresh, searchHits } from './file-requests';
import { isoTime } from '../../util/time';

type Obj = Record<string, unknown>;

const META_ALL = '.fleet-fileds-tohost-meta-*';
const DATA_ALL = '.fleet-fileds-tohost-data-*';
/** Where Kibana writes files for agents. */
const AGENT_META = '.fleet-fileds-tohost-meta-agent';
const AGENT_DATA = '.fleet-fileds-tohost-data-agent';

function libraryIndex(integration: string, library: string, kind: 'meta' | 'data'): string {
  return `.${indexFragment('integration', integration)}-fleetfiles-${indexFragment('library', library)}-${kind}`;
}

/** A chunk handle: the concrete index and the document id (index names never hold a `/`). */
const handleOf = (index: string, id: string): string => `${index}/${id}`;

/** Upstream's chunk size for a byte range when the metadata names none. */
const DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024;

/** Kibana's `file.Compression` (`br`, `gzip`, `deflate`; `none` or absent when stored as is). */
const compressed = (v: unknown): boolean => typeof v === 'string' && v !== '' && v !== 'none';

function fileOf(id: string, doc: Obj, chunks: { n: number; handle: string }[]): DeliveryFile {
  const file = (doc['file'] ?? {}) as Obj;
  const hash = file['hash'] as Obj | undefined;
  const declared = Number(file['ChunkSize']);
  const named = file['ChunkSize'] !== undefined && file['ChunkSize'] !== null && Number.isSafeInteger(declared) && declared > 0;
  return {
    id,
    size: Number(file['size'] ?? 0),
    chunkSize: named ? declared : DEFAULT_CHUNK_SIZE,
    mimeType: typeof file['mime_type'] === 'string' ? file['mime_type'] : undefined,
    sha256: typeof hash?.['sha256'] === 'string' ? hash['sha256'] : undefined,
    chunks: chunks.map((c) => c.handle),
    chunkNumbers: chunks.map((c) => c.n),
    sizedChunks: named && !compressed(file['Compression']),
  };
}

export class EsDeliveries implements DeliveryStore {
  constructor(private readonly client: Client) {}

  async findDeliveryFile(id: string, scope: DeliveryScope): Promise<DeliveryFile | undefined> {
    let doc: Obj | undefined;
    let dataIndex: string;
    if ('agentId' in scope) {
      const hits = await searchHits(this.client, 'find file', META_ALL, {
        query: { bool: { must: [{ term: { _id: id } }, { term: { 'file.Meta.target_agents': scope.agentId } }, { term: { 'file.Status': 'READY' } }] } },
      });
      doc = hits[0]?._source;
      dataIndex = DATA_ALL;
    } else {
      const index = libraryIndex(scope.integration, scope.library, 'meta');
      const r = await withRetries('find library file', () => this.client.mget({ index, ids: [id] }));
      const found = r.docs[0] as { found?: boolean; _source?: Obj } | undefined;
      doc = found?.found ? found._source : undefined;
      dataIndex = libraryIndex(scope.integration, scope.library, 'data');
    }
    if (!doc) return undefined;
    const status = (doc['file'] as Obj | undefined)?.['Status'];
    if (status !== undefined && status !== 'READY') return undefined;
    const hits = await searchHits(this.client, 'find file chunks', dataIndex, { _source: false, query: { term: { bid: id } }, size: 10000 });
    const chunks = hits.map((h) => ({ n: chunkNumber(id, h._id), handle: handleOf(h._index, h._id) })).sort((a, b) => a.n - b.n);
    return fileOf(id, doc, chunks);
  }

  async *readDeliveryChunk(chunk: string): AsyncIterable<Uint8Array> {
    const at = chunk.indexOf('/');
    if (at <= 0) throw new Error(`malformed chunk handle ${chunk}`);
    yield await readStoredChunk(this.client, chunk.slice(0, at), chunk.slice(at + 1));
  }

  /**
   * Chunk documents first (CBOR `{@timestamp, bid, data}`, `last: true` on the final one, as Kibana
   * writes them), then a refresh of the data stream, then the READY metadata document, so an agent
   * never finds a file whose chunks are not searchable yet. At most one chunk is held.
   */
  async publishDeliveryFile(meta: DeliveryPublish, data: AsyncIterable<Uint8Array>): Promise<void> {
    let n = 0;
    let held: Buffer[] = [];
    let heldBytes = 0;
    const flush = async (last: boolean): Promise<void> => {
      const doc: Obj = { '@timestamp': Date.now(), bid: meta.id, data: Buffer.concat(held, heldBytes) };
      if (last) doc['last'] = true;
      const id = `${meta.id}.${n++}`;
      await rawRequest(this.client, 'write file chunk', { method: 'PUT', path: `/${AGENT_DATA}/_create/${encodeURIComponent(id)}`, body: encode(doc) },
        { 'content-type': 'application/cbor', accept: 'application/json' });
      held = [];
      heldBytes = 0;
    };
    for await (const piece of data) {
      let p = Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
      while (p.length > 0) {
        if (heldBytes === meta.chunkSize) await flush(false);
        const take = Math.min(p.length, meta.chunkSize - heldBytes);
        held.push(Buffer.from(p.subarray(0, take)));
        heldBytes += take;
        p = p.subarray(take);
      }
    }
    if (heldBytes > 0) await flush(true);
    await refresh(this.client, AGENT_DATA);
    const now = isoTime();
    await withRetries('write file metadata', () => this.client.create({
      index: AGENT_META, id: meta.id, refresh: true,
      document: {
        '@timestamp': now,
        file: {
          created: now, Updated: now, name: meta.name, mime_type: meta.mimeType, size: meta.size, ChunkSize: meta.chunkSize,
          hash: { sha256: meta.sha256 }, Status: 'READY', Meta: { target_agents: meta.agentIds },
        },
      },
    }));
  }
}
