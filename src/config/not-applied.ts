// What a configuration holds that will not do what it says: upstream settings this server does not
// apply (one warning each), keys nothing reads (one warning naming them all) and an Elasticsearch output
// without a service token. Warned where the configuration is taken (a start, agent mode's new unit
// configuration).
import type { Logger } from 'pino';
import { lacksServiceToken, SERVICE_TOKEN_KEYS, type FleetServerConfig } from './config';

export function warnNotApplied(config: FleetServerConfig, log: Logger): void {
  for (const key of config.notApplied) log.warn({ 'config.key': key }, 'setting not applied by this server (docs/compatibility.md)');
  if (config.unknownKeys.length > 0) {
    log.warn({ 'config.keys': config.unknownKeys }, `unknown configuration keys, ignored: ${config.unknownKeys.join(', ')}`);
  }
  if (lacksServiceToken(config)) {
    log.warn({ 'config.keys': ['output.elasticsearch.service_token', 'output.elasticsearch.service_token_path'] },
      `no Elasticsearch service token was given (Elasticsearch will answer 401): set ${SERVICE_TOKEN_KEYS}`);
  }
}
