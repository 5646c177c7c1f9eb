// Chooses the store a configuration names: Elasticsearch when it has an Elasticsearch output,
// otherwise the embedded database under path.data.
import { join } from 'node:path';
import type { FleetServerConfig } from '../config/config';
import type { Store } from './port';
import { SqliteStore } from './sqlite/store';

export function embeddedDbPath(config: FleetServerConfig): string {
  return join(config.pathData, 'fleet-server.db');
}

export async function openStore(config: FleetServerConfig): Promise<Store> {
  if (config.elasticsearch) {
    throw new Error('output.elasticsearch is configured, but the Elasticsearch store is not available in this build; '
      + 'remove output.elasticsearch to use the embedded store');
  }
  return new SqliteStore(embeddedDbPath(config));
}
