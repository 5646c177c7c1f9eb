// File delivery, Fleet → agent (upstream's handleFileDelivery.go and file/delivery): a READY file meant
// for the agent (or, with `source`, one of an integration's libraries) is read chunk by chunk, only the
// chunks a byte range needs.
import type { AgentDoc, Hit } from '../store/documents';
import type { DeliveryFile, DeliveryScope } from '../store/file-ports';
import { NotFoundError, type Store } from '../store/port';
import { badRequest, FleetError } from './errors';

/** Upstream's only library client: Elastic Defend, which says so in X-elastic-product-origin. */
const LIBRARY_ORIGIN = 'endpoint-security';
const LIBRARY_INTEGRATION = 'endpoint';
/** A library names an index (`.<integration>-fleetfiles-<library>-meta`). */
const LIBRARY = /^[a-z0-9][a-z0-9_-]{0,63}$/;

/** Inclusive byte offsets, as HTTP ranges are. */
export interface ByteRange {
  start: number;
  end: number;
}

export class FileDeliveryService {
  constructor(private readonly store: Store) {}

  /** The file the agent asked for, or the upstream error for why not. */
  async open(agent: Hit<AgentDoc>, id: string, source: string | undefined, productOrigin: string | undefined): Promise<DeliveryFile> {
    let scope: DeliveryScope = { agentId: agent._id };
    // As upstream (sanitizedIndexInput(source) != ""), a blank `source` (`?source=`) is no source: the
    // agent's own files. Any other is checked, not rewritten (docs/compatibility.md).
    const library = source?.trim() ?? '';
    if (library !== '') {
      // Upstream normalises the header before comparing it.
      if (productOrigin?.trim().toLowerCase() !== LIBRARY_ORIGIN) throw new FleetError('ClientFileForbidden');
      if (!LIBRARY.test(library)) throw badRequest('source must be a lower-case library name');
      scope = { integration: LIBRARY_INTEGRATION, library };
    }
    const file = await this.store.deliveries.findDeliveryFile(id, scope);
    if (!file || !whole(file)) throw new FleetError('NoFile');
    return file;
  }

  /**
   * The file's bytes in `range` (all of it without one), reading only the chunks the range touches.
   * Throws when the stored chunks hold fewer bytes than the file's size says. A file whose metadata says
   * size 0 (or none), or whose chunks' size is not known (sizedChunks false: no ChunkSize, or compressed),
   * is every chunk's bytes, as upstream streams it, sent without a Content-Length (fileLength).
   */
  async *read(file: DeliveryFile, range?: ByteRange): AsyncIterable<Uint8Array> {
    if (range === undefined && fileLength(file) === undefined) {
      for (const chunk of file.chunks) yield* readChunk(this.store, chunk);
      return;
    }
    range ??= { start: 0, end: file.size - 1 };
    // A range's chunks are found by `chunkSize` (a default when the metadata names none), as upstream finds them.
    const cs = file.chunkSize;
    let remaining = range.end - range.start + 1;
    for (let i = Math.floor(range.start / cs); i < file.chunks.length && remaining > 0; i++) {
      let skip = i === Math.floor(range.start / cs) ? range.start - i * cs : 0;
      for await (const piece of readChunk(this.store, file.chunks[i]!)) {
        let p = piece;
        if (skip > 0) {
          if (skip >= p.length) {
            skip -= p.length;
            continue;
          }
          p = p.subarray(skip);
          skip = 0;
        }
        if (p.length > remaining) p = p.subarray(0, remaining);
        remaining -= p.length;
        yield p;
        if (remaining === 0) return;
      }
    }
    if (remaining > 0) throw new Error(`file ${file.id}: stored chunks end ${remaining} bytes short of its size`);
  }
}

/**
 * Whether the stored chunks can make the whole file: positions 0..k-1 with no gap, at least one
 * (upstream's LocateChunks answers ErrNoFile when there are none, whatever the size). Where each chunk
 * is known to hold `chunkSize` bytes (sizedChunks: the metadata names its ChunkSize, uncompressed), k
 * must also be the count the size makes. Otherwise (Kibana's or an integration's files without
 * ChunkSize, compressed ones) the chunks are streamed in order as upstream streams them. Checked before
 * any byte is sent, so a file with a chunk missing is a 404, not a 200 whose body stops short.
 */
function whole(file: DeliveryFile): boolean {
  const { size, chunkSize, chunkNumbers } = file;
  if (!Number.isSafeInteger(size) || size < 0) return false;
  const k = chunkNumbers.length;
  if (k === 0 || file.chunks.length !== k || !chunkNumbers.every((n, i) => n === i)) return false;
  if (!file.sizedChunks || size === 0) return true;
  return Number.isSafeInteger(chunkSize) && chunkSize > 0 && k === Math.ceil(size / chunkSize);
}

/**
 * The Content-Length of the whole file: its size, where the chunks are known to hold exactly that many
 * bytes. Otherwise undefined, and the chunks' bytes are streamed as they are: compressed chunks, or
 * chunks of a size the metadata does not give, may hold more or fewer bytes than `size` counts.
 */
export function fileLength(file: DeliveryFile): number | undefined {
  return file.size > 0 && file.sizedChunks ? file.size : undefined;
}

/** A chunk gone since the file was found (deleted meanwhile) is the file gone: ErrNoFile. */
async function* readChunk(store: Store, handle: string): AsyncIterable<Uint8Array> {
  try {
    yield* store.deliveries.readDeliveryChunk(handle);
  } catch (err) {
    if (err instanceof NotFoundError) throw new FleetError('NoFile', 'file not found', { cause: err });
    throw err;
  }
}
