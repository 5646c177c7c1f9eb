// File delivery, Fleet → agent (upstream's handleFileDelivery.go and file/delivery): a READY file meant
// for the agent (or, with `source`, one of an integration's libraries) is read chunk by chunk, only the
// chunks a byte range needs.
import type { AgentDoc, Hit } from '../store/documents';
import type { DeliveryFile, DeliveryScope } from '../store/file-ports';
import type { Store } from '../store/port';
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
    if (source !== undefined) {
      // Upstream normalises the header before comparing it.
      if (productOrigin?.trim().toLowerCase() !== LIBRARY_ORIGIN) throw new FleetError('ClientFileForbidden');
      if (!LIBRARY.test(source)) throw badRequest('source must be a lower-case library name');
      scope = { integration: LIBRARY_INTEGRATION, library: source };
    }
    const file = await this.store.deliveries.findDeliveryFile(id, scope);
    if (!file) throw new FleetError('NoFile');
    return file;
  }

  /**
   * The file's bytes in `range` (all of it without one), reading only the chunks the range touches.
   * Throws when the stored chunks hold fewer bytes than the file's size says.
   */
  async *read(file: DeliveryFile, range: ByteRange = { start: 0, end: file.size - 1 }): AsyncIterable<Uint8Array> {
    const cs = file.chunkSize;
    let remaining = range.end - range.start + 1;
    for (let i = Math.floor(range.start / cs); i < file.chunks.length && remaining > 0; i++) {
      let skip = i === Math.floor(range.start / cs) ? range.start - i * cs : 0;
      for await (const piece of this.store.deliveries.readDeliveryChunk(file.chunks[i]!)) {
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
