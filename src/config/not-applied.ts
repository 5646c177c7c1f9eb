// Upstream settings a configuration holds that this server does not apply: one warning each, where the
// configuration is taken (a start, agent mode's new unit configuration).
import type { Logger } from 'pino';
import type { FleetServerConfig } from './config';

export function warnNotApplied(config: FleetServerConfig, log: Logger): void {
  for (const key of config.notApplied) log.warn({ 'config.key': key }, 'setting not applied by this server (docs/compatibility.md)');
}
