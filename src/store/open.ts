// Chooses the store a configuration names: Elasticsearch when it has an Elasticsearch output,
// otherwise the embedded database under path.data.
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { FleetServerConfig } from '../config/config';
import { EsStore } from './elasticsearch/store';
import type { Store } from './port';
import { SqliteStore } from './sqlite/store';

export function embeddedDbPath(config: FleetServerConfig): string {
  return join(config.pathData, 'fleet-server.db');
}

export function openStore(config: FleetServerConfig, log: Logger): Store {
  if (config.elasticsearch) return new EsStore(config.elasticsearch, { bulk: config.server.bulk, monitor: config.monitor }, log);
  return new SqliteStore(embeddedDbPath(config));
}
