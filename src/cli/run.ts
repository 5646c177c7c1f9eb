// `fleet-server` / `fleet-server run`: the standalone server.
import type { Logger } from 'pino';
import { Admin } from '../fleet/admin';
import { Fleet } from '../fleet/fleet';
import { startMetrics } from '../http/metrics';
import { HttpService } from '../http/server';
import { createLogger } from '../logging/logger';
import { openStore } from '../store/open';
import type { Store } from '../store/port';
import { Backoff, sleep } from '../util/backoff';
import { VERSION } from '../version';
import { loadConfig, type ConfigArgs } from './load-config';

export async function runServer(args: ConfigArgs): Promise<void> {
  const config = loadConfig(args);
  const log: Logger = createLogger(config.logging);
  log.info({ version: VERSION, 'limits.profile': config.server.limits.profile }, 'fleet-server starting');
  const store = await openStore(config, log);
  const fleet = new Fleet(store, config, log);
  const stopping = new AbortController();

  if (store.kind === 'sqlite') {
    const scheme = config.server.tls.enabled ? 'https' : 'http';
    const host = config.server.host === '0.0.0.0' || config.server.host === '::' ? 'localhost' : config.server.host;
    const url = `${scheme}://${host}:${config.server.port}`;
    const created = await new Admin(store).ensureDefaultPolicy(url);
    if (created) {
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
  }

  // The embedded store is local and starts at once; Elasticsearch may be down or refuse the token, so
  // the listeners come up first and /api/status reports why the server is not yet serving.
  if (store.kind === 'sqlite') await fleet.start();
  const httpService = new HttpService(fleet, config, log);
  await httpService.start();
  if (config.http.enabled) await startMetrics(config.http.host, config.http.port, fleet, httpService, log);
  if (store.kind !== 'sqlite') void startWhenReady(fleet, store, log, stopping.signal);

  const stop = async (signal: string): Promise<void> => {
    if (stopping.signal.aborted) return;
    stopping.abort();
    log.info({ signal }, 'fleet-server stopping');
    const hard = setTimeout(() => {
      log.error('drain timeout exceeded; exiting');
      process.exit(1);
    }, config.server.timeouts.drainMs + 5000);
    hard.unref();
    try {
      await httpService.stop(config.server.timeouts.drainMs, () => fleet.stop());
      await store.close();
      log.info('fleet-server stopped');
      log.flush();
    } finally {
      process.exitCode = 0;
      setImmediate(() => process.exit(0));
    }
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));
}

/** Starts fleet logic once the store answers, retrying with backoff and reporting FAILED meanwhile. */
async function startWhenReady(fleet: Fleet, store: Store, log: Logger, signal: AbortSignal): Promise<void> {
  const backoff = new Backoff({ initialMs: 1000, maxMs: 30_000 });
  while (!signal.aborted) {
    try {
      await store.ready();
      await fleet.start();
      log.info('fleet-server running');
      return;
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      fleet.health.set('FAILED', `Error - ${message}`);
      const wait = backoff.next();
      log.error({ err, 'retry.in_ms': wait }, 'cannot start on the store; retrying');
      await sleep(wait, signal);
    }
  }
}
