// The Elasticsearch requests the file ports share: searches that treat a missing index as no hits,
// refreshes, by-query writes and raw (CBOR) document requests, all with the adapter's retries and
// store-error translation.
import type { Client } from '@elastic/elasticsearch';
import { NotFoundError } from '../port';
import { decode } from 'cbor-x/index-no-eval';
import { storedData } from './cbor-chunk';
import { statusIn, withRetries } from './connection';

type Obj = Record<string, unknown>;

export interface FileHit {
  _index: string;
  _id: string;
  _source?: Obj;
  fields?: Record<string, unknown[]>;
}

/** Index names are built from `src`, integration and library names: only plain index-name fragments pass. */
export function indexFragment(kind: string, value: string): string {
  if (!/^[a-z0-9][a-z0-9_.-]{0,99}$/.test(value)) throw new Error(`${kind} [${value}] is not a valid index name fragment`);
  return value;
}

export async function searchHits(client: Client, what: string, index: string, body: Obj): Promise<FileHit[]> {
  const r = await withRetries(what, () => client.search({ index, ignore_unavailable: true, ...body }));
  return r.hits.hits as unknown as FileHit[];
}

/** `POST <index>/_refresh`; a missing index is nothing to refresh. */
export async function refresh(client: Client, index: string): Promise<void> {
  await withRetries(`refresh ${index}`, () => client.indices.refresh({ index, ignore_unavailable: true }));
}

/** `_delete_by_query` with refresh; a missing index has nothing to delete. */
export async function deleteByQuery(client: Client, what: string, index: string, query: Obj): Promise<void> {
  try {
    await withRetries(what, () => client.deleteByQuery({ index, refresh: true, conflicts: 'proceed', query }));
  } catch (err) {
    if (statusIn(err) !== 404) throw err;
  }
}

/**
 * A document request outside the typed API (CBOR bodies or answers). The transport keeps a CBOR
 * answer as bytes; `ignore` statuses come back instead of throwing.
 */
export async function rawRequest(client: Client, what: string, req: { method: string; path: string; querystring?: Obj; body?: Buffer },
  headers: Record<string, string>, ignore: number[] = []): Promise<{ statusCode: number; body: unknown }> {
  const r = await withRetries(what, () => client.transport.request(req, { headers, ignore, meta: true }));
  return { statusCode: r.statusCode ?? 0, body: r.body };
}

/** Chunk number from a chunk document id `<bid>.<n>` (upstream parses the suffix the same way). */
export function chunkNumber(bid: string, id: string): number {
  const n = id.startsWith(`${bid}.`) ? Number(id.slice(bid.length + 1)) : NaN;
  if (!Number.isInteger(n) || n < 0) throw new Error(`unable to parse chunk number from id ${id}`);
  return n;
}

/**
 * One delivery chunk's bytes: `GET <index>/_doc/<id>?stored_fields=data&_source=false`, `Accept:
 * application/cbor`, as upstream's file/delivery/es.go reads them. Only the to-host data template (and
 * integration libraries) map `data` with `store: true`; upload chunks are read with readSourceChunk.
 */
export async function readStoredChunk(client: Client, index: string, id: string): Promise<Uint8Array> {
  const r = await rawRequest(client, 'read chunk', {
    method: 'GET', path: `/${index}/_doc/${encodeURIComponent(id)}`, querystring: { stored_fields: 'data', _source: 'false' },
  }, { accept: 'application/cbor' }, [404]);
  if (r.statusCode === 404) throw new NotFoundError(`chunk ${id} not found`);
  return storedData(r.body as Uint8Array);
}

/**
 * One upload chunk's bytes from its source: `GET <index>/_doc/<id>?_source_includes=data`, `Accept:
 * application/cbor`, answered `{"_source": {"data": <bytes>}}`. The from-host data template maps `data`
 * as a binary field that is not stored, so a `stored_fields=data` read of it finds no field; Kibana's
 * files plugin (blob_storage_service/adapters/es/content_stream) reads upload chunks this way.
 */
export async function readSourceChunk(client: Client, index: string, id: string): Promise<Uint8Array> {
  const r = await rawRequest(client, 'read chunk', {
    method: 'GET', path: `/${index}/_doc/${encodeURIComponent(id)}`, querystring: { _source_includes: 'data' },
  }, { accept: 'application/cbor' }, [404]);
  if (r.statusCode === 404) throw new NotFoundError(`chunk ${id} not found`);
  const doc = decode(r.body as Uint8Array) as { _source?: { data?: unknown } } | undefined;
  const data = doc?._source?.data;
  if (data instanceof Uint8Array) return data;
  // A chunk indexed as JSON keeps `data` as the base64 text it was sent as.
  if (typeof data === 'string') return Buffer.from(data, 'base64');
  throw new Error(`chunk ${id} has no data in its source`);
}
