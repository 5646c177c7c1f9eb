// `fleet-server` / `fleet-server run`: the standalone server.
import type { Logger } from 'pino';
import type { FleetServerConfig } from '../config/config';
import { Admin } from '../fleet/admin';
import { createLogger } from '../logging/logger';
import { ServerInstance } from '../runtime/server-instance';
import { handleSignals } from '../runtime/signals';
import { withContext } from '../util/error-text';
import { VERSION } from '../version';
import { loadConfig, type ConfigArgs } from './load-config';
import { checkServerTls } from './tls-check';

export async function runServer(args: ConfigArgs): Promise<void> {
  const config = loadConfig(args);
  checkServerTls(config.server.tls);
  const log: Logger = createLogger(config.logging);
  log.info({ version: VERSION, 'limits.profile': config.server.limits.profile }, 'fleet-server starting');
  let server: ServerInstance;
  try {
    server = await ServerInstance.create(config, log);
  } catch (err) {
    // A refusal that names its own file (a lock held, a damaged database, a missing key) says it all.
    if (!config.elasticsearch && err instanceof Error && !('code' in err) && err.message.includes(config.pathData)) throw err;
    throw withContext(config.elasticsearch ? 'cannot open the Elasticsearch store' : `data directory ${config.pathData} (path.data)`, err);
  }
  if (server.store.kind === 'sqlite') await printZeroConfig(server, config);
  await server.start();

  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'fleet-server stopping');
    const hard = setTimeout(() => {
      log.error('drain timeout exceeded; exiting');
      process.exit(1);
    }, config.server.timeouts.drainMs + 5000);
    hard.unref();
    try {
      await server.stop({ spread: true });
      log.info('fleet-server stopped');
      log.flush();
    } finally {
      process.exitCode = 0;
      setImmediate(() => process.exit(0));
    }
  };
  handleSignals(log, (signal) => void stop(signal));
}

/**
 * Zero-config start on the embedded store: with no policy at all, a default policy and an enrollment
 * token are created and printed with a ready enroll command.
 */
async function printZeroConfig(server: ServerInstance, config: FleetServerConfig): Promise<void> {
  const scheme = config.server.tls.enabled ? 'https' : 'http';
  const host = config.server.host === '0.0.0.0' || config.server.host === '::' ? 'localhost' : config.server.host;
  const url = `${scheme}://${host}:${config.server.port}`;
  const created = await new Admin(server.store).ensureDefaultPolicy(url);
  if (!created) return;
  process.stdout.write([
    '',
    `Created policy "${created.policyId}" and an enrollment token for it:`,
    '',
    `  ${created.token}`,
    '',
    'Enroll an Elastic Agent with:',
    '',
    `  elastic-agent install --url=${url} --enrollment-token=${created.token}${scheme === 'http' ? ' --insecure' : ''}`,
    '',
    'or try the API with curl:',
    '',
    `  curl -s -X POST ${url}/api/fleet/agents/enroll -H 'Authorization: ApiKey ${created.token}' \\`,
    `    -H 'User-Agent: Elastic Agent ${VERSION}' -H 'Content-Type: application/json' \\`,
    `    -d '{"type":"PERMANENT","metadata":{"local":{},"user_provided":{}}}'`,
    '',
  ].join('\n'));
}
