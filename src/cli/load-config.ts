import { existsSync } from 'node:fs';
import { buildConfig, type FleetServerConfig } from '../config/config';
import { loadRawConfig } from '../config/raw';

export interface ConfigArgs {
  config?: string;
  E?: string[];
}

/** -c FILE (default ./fleet-server.yml when present) plus -E overrides. */
export function loadConfig(args: ConfigArgs): FleetServerConfig {
  const file = args.config ?? (existsSync('fleet-server.yml') ? 'fleet-server.yml' : undefined);
  if (args.config && !existsSync(args.config)) throw new Error(`config file ${args.config} not found`);
  return buildConfig(loadRawConfig({ file, overrides: args.E ?? [] }));
}
