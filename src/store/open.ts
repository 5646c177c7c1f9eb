// Chooses the store a configuration names: Elasticsearch when it has an Elasticsearch output,
// otherwise the embedded database under path.data.
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { FleetServerConfig } from '../config/config';
import type { Store } from './port';
import { KEY_ENV } from './sqlite/secret-box';
import { SqliteStore } from './sqlite/store';

export function embeddedDbPath(config: FleetServerConfig): string {
  return join(config.pathData, 'fleet-server.db');
}

/** The embedded store's key material when given (configuration, then environment); else its key file. */
export function embeddedSecretsKey(config: FleetServerConfig): string | undefined {
  return config.server.secretsKey || process.env[KEY_ENV];
}

/**
 * The Elasticsearch adapter (and its client library) is loaded only when configured: ~15 MiB an embedded
 * server does not need. `server` is the server's own open (the embedded store locks its data directory
 * and checks the file); the admin CLI opens without it.
 */
export async function openStore(config: FleetServerConfig, log: Logger, opts: { server?: boolean } = {}): Promise<Store> {
  if (config.elasticsearch) {
    const { EsStore } = await import('./elasticsearch/store');
    return new EsStore(config.elasticsearch, { bulk: config.server.bulk, monitor: config.monitor }, log);
  }
  return new SqliteStore(embeddedDbPath(config), {
    server: opts.server,
    secretsKey: embeddedSecretsKey(config),
  });
}
