// .fleet-artifacts on the embedded store: small documents (the body is base64 inside), one row per
// identifier and decoded SHA-256.
import type { ArtifactDoc, ArtifactStore } from '../file-ports';
import type { Row, SqlAccess } from './sql-access';

export class SqliteArtifacts implements ArtifactStore {
  constructor(private readonly sql: SqlAccess) {}

  async findArtifact(identifier: string, decodedSha256: string): Promise<ArtifactDoc | undefined> {
    const row = this.sql.q('SELECT doc FROM artifacts WHERE identifier = ? AND decoded_sha256 = ?').get(identifier, decodedSha256) as Row | undefined;
    return row ? (JSON.parse(row['doc'] as string) as ArtifactDoc) : undefined;
  }

  /** Replaces an artifact with the same identifier and decoded SHA-256. */
  async putArtifact(doc: ArtifactDoc): Promise<void> {
    await this.sql.write(() => this.sql.q('INSERT OR REPLACE INTO artifacts (identifier, decoded_sha256, doc) VALUES (?, ?, ?)')
      .run(doc.identifier, doc.decoded_sha256, JSON.stringify(doc)));
  }
}
