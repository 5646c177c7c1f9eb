// `.fleet-artifacts` (written by Kibana's Fleet for Endpoint): found as upstream's dl/artifact.go
// searches it, written as Kibana writes it (id `<identifier>-<decoded_sha256>`).
import type { Client } from '@elastic/elasticsearch';
import type { ArtifactDoc, ArtifactStore } from '../file-ports';
import { withRetries } from './connection';
import { searchHits } from './file-requests';

const INDEX = '.fleet-artifacts';

/** The port's fields only: Kibana's documents also carry `type` and `relative_url`. */
function artifactOf(src: Record<string, unknown>): ArtifactDoc {
  const doc: ArtifactDoc = {
    identifier: String(src['identifier']), compression_algorithm: String(src['compression_algorithm'] ?? 'none'),
    encryption_algorithm: String(src['encryption_algorithm'] ?? 'none'), encoded_sha256: String(src['encoded_sha256']),
    encoded_size: Number(src['encoded_size']), decoded_sha256: String(src['decoded_sha256']), decoded_size: Number(src['decoded_size']),
    created: String(src['created']), body: String(src['body']),
  };
  if (typeof src['package_name'] === 'string') doc.package_name = src['package_name'];
  return doc;
}

export class EsArtifacts implements ArtifactStore {
  constructor(private readonly client: Client) {}

  async findArtifact(identifier: string, decodedSha256: string): Promise<ArtifactDoc | undefined> {
    const hits = await searchHits(this.client, 'find artifact', INDEX, {
      query: { bool: { must: [{ term: { decoded_sha256: decodedSha256 } }, { term: { identifier } }] } },
    });
    return hits[0]?._source && artifactOf(hits[0]._source);
  }

  async putArtifact(doc: ArtifactDoc): Promise<void> {
    await withRetries('write artifact', () => this.client.index({ index: INDEX, id: `${doc.identifier}-${doc.decoded_sha256}`, document: doc, refresh: true }));
  }
}
