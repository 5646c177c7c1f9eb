// `fleet-server` / `fleet-server run`: the standalone server.
import type { Logger } from 'pino';
import { memoryMiB, type FleetServerConfig } from '../config/config';
import { Admin } from '../fleet/admin';
import { createLogger } from '../logging/logger';
import { ownStore } from '../runtime/store-owner';
import type { Store } from '../store/port';
import { runPrimary } from '../runtime/cluster';
import { startMemoryTrim } from '../runtime/memory-trim';
import { openServer, serveUntilStopped } from '../runtime/serve';
import { chooseWorkers } from '../runtime/sizing';
import { embeddedDbPath } from '../store/open';
import { redactUrl } from '../util/redact';
import { VERSION } from '../version';
import { warnNotApplied } from '../config/not-applied';
import { loadConfig, type ConfigArgs } from './load-config';
import { checkServerTls } from './tls-check';

export async function runServer(args: ConfigArgs): Promise<void> {
  const config = loadConfig(args);
  checkServerTls(config.server.tls);
  const log: Logger = createLogger(config.logging);
  warnNotApplied(config, log);
  const sizing = chooseWorkers(config);
  // SIGTERM is answered from the first log line on: a supervisor's quick stop drains and exits 0 instead
  // of killing the process mid-start. Both calls install their handlers before their first await.
  const opened = sizing.workers > 1 ? undefined : openServer(config, log);
  if (opened) serveUntilStopped(opened, config, log);
  // The embedded store: the primary owns it, and serves it before the first worker starts.
  const primary = opened ? undefined : runPrimary(config, log, sizing.workers, config.elasticsearch ? undefined : async () => {
    const owner = await ownStore(config, log);
    await printZeroConfig(owner.store, config);
    return owner;
  });
  log.info({
    version: VERSION, ...storeFields(config), 'limits.profile': config.server.limits.profile, 'limits.memory_mib': Math.round(memoryMiB()),
    workers: sizing.workers, 'workers.reason': sizing.reason,
  }, 'fleet-server starting');
  startMemoryTrim(log);
  if (!opened) return primary;
  const server = await opened;
  if (server.store.kind === 'sqlite') await printZeroConfig(server.store, config);
  await server.start();
}

/**
 * Which store this start uses, in its first log line: the embedded one is chosen by the absence of an
 * output, so an operator who meant Elasticsearch sees at once where agents will go. Hosts without a
 * URL's user:password.
 */
export function storeFields(config: FleetServerConfig): Record<string, unknown> {
  if (config.elasticsearch) return { store: 'elasticsearch', 'store.hosts': config.elasticsearch.hosts.map(redactUrl) };
  return { store: 'embedded', 'store.path': embeddedDbPath(config) };
}

/**
 * Zero-config start on the embedded store: with no policy at all, a default policy is created. On a
 * terminal an enrollment token is made too and printed with a ready enroll command. Anywhere else
 * (systemd, Docker without -t, a pipe) standard output is a log that outlives the token's secrecy, so
 * no token is made there; the operator is told how to make one.
 */
async function printZeroConfig(store: Store, config: FleetServerConfig, out: Pick<NodeJS.WriteStream, 'write' | 'isTTY'> = process.stdout): Promise<void> {
  const scheme = config.server.tls.enabled ? 'https' : 'http';
  const host = config.server.host === '0.0.0.0' || config.server.host === '::' ? 'localhost' : config.server.host;
  const url = `${scheme}://${host}:${config.server.port}`;
  const created = await new Admin(store).ensureDefaultPolicy(url, { withToken: out.isTTY === true });
  if (!created) return;
  const policy = created.created ? `Created policy "${created.policyId}".` : `Policy "${created.policyId}" has no enrollment token yet.`;
  if (created.token === undefined) {
    out.write([
      '',
      `${policy} Agents enroll at ${url}. No enrollment token was made: standard`,
      'output is not a terminal, and a token printed here would be kept in a log. Make one with the options this',
      'server was started with (-c, -E):',
      '',
      `  fleet-server enrollment-token create --policy ${created.policyId}`,
      '',
    ].join('\n'));
    return;
  }
  out.write([
    '',
    created.created ? `Created policy "${created.policyId}" and an enrollment token for it:` : `An enrollment token for policy "${created.policyId}":`,
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
