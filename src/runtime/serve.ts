// The life of a serving process, standalone or a cluster worker: until a signal (or the primary) says
// stop, then a drain within timeouts.drain and exit 0; exit 1 if the drain fails or overruns.
import type { Logger } from 'pino';
import type { FleetServerConfig } from '../config/config';
import type { FleetSharing } from '../fleet/fleet';
import { checkListenHost } from '../http/listen-host';
import type { HttpOptions } from '../http/server';
import type { Store } from '../store/port';
import { withContext } from '../util/error-text';
import type { ServerInstance } from './server-instance';
import { handleSignals } from './signals';

/** The store opened and the server built, or an error that says which store could not be opened. */
export async function openServer(config: FleetServerConfig, log: Logger, http: HttpOptions = {}, store?: Store,
  sharing?: FleetSharing): Promise<ServerInstance> {
  // Loaded here, not with this module: a cluster's primary (which serves no HTTP) never sets up the
  // HTTP edge, the fleet logic, OpAMP's messages or the request validators.
  const { ServerInstance } = await import('./server-instance');
  return withStoreContext(config, () => ServerInstance.create(config, log, http, store, sharing));
}

/**
 * `open`'s result, or its error saying which store could not be opened. The server's listen host is
 * checked first (its form, and that it resolves): a start that could never listen opens no store, so
 * the first start's default policy and its help are left for the start that can.
 */
export async function withStoreContext<T>(config: FleetServerConfig, open: () => Promise<T>): Promise<T> {
  await checkListenHost(config.server.host);
  try {
    return await open();
  } catch (err) {
    // A refusal that names its own file (a lock held, a damaged database, a missing key) says it all.
    if (!config.elasticsearch && err instanceof Error && !('code' in err) && err.message.includes(config.pathData)) throw err;
    // So does one that names the output's setting (a CA file with no certificate, a token file missing).
    if (config.elasticsearch && err instanceof Error && err.message.includes('output.elasticsearch.')) throw err;
    throw withContext(config.elasticsearch ? 'cannot open the Elasticsearch store' : `data directory ${config.pathData} (path.data)`, err);
  }
}

/** Stops the process (once; later calls do nothing); `requested`: whether a stop has begun, by a signal or a call. */
export interface Stopper {
  (reason: string): void;
  readonly requested: boolean;
}

/** `server` may still be opening: a stop meanwhile waits for it (one that fails to open has nothing to stop). */
export function serveUntilStopped(server: ServerInstance | Promise<ServerInstance>, config: FleetServerConfig, log: Logger,
  listenersClosed?: () => Promise<boolean>): Stopper {
  let opened: ServerInstance | undefined;
  return stopOnSignals(log, config.server.timeouts.drainMs + 5000, async () => {
    opened = await Promise.resolve(server).catch(() => undefined);
    return opened?.stop({ spread: true, listenersClosed });
  }, { phase: () => opened?.stopPhase ?? 'opening the store' });
}

/**
 * On the first of SIGTERM, SIGINT or the returned function's call: `drain`, then exit 0; exit 1 if it
 * throws (a supervisor must see that the last writes or the store's close failed), or past `deadlineMs`
 * after `overrun`, logging the drain's `phase`. SIGHUP reopens the log files (signals.ts).
 */
export function stopOnSignals(log: Logger, deadlineMs: number, drain: () => Promise<object | void>,
  { overrun, phase }: { overrun?: () => void; phase?: () => string } = {}): Stopper {
  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'fleet-server stopping');
    const hard = setTimeout(() => {
      log.error({ 'drain.phase': phase?.(), 'drain.deadline_ms': deadlineMs }, 'drain timeout exceeded; exiting');
      overrun?.();
      process.exit(1);
    }, deadlineMs);
    hard.unref();
    let code = 1;
    try {
      const timings = await drain();
      log.info({ ...timings }, 'fleet-server stopped');
      code = 0;
    } catch (err) {
      log.error({ err }, 'fleet-server stop failed');
    } finally {
      // The drain is over: its deadline no longer applies (the exit below may wait a turn).
      clearTimeout(hard);
      try {
        log.flush();
      } finally {
        process.exitCode = code;
        setImmediate(() => process.exit(code));
      }
    }
  };
  handleSignals(log, (signal) => void stop(signal));
  const request = (reason: string): void => void stop(reason);
  return Object.defineProperty(request, 'requested', { get: () => stopping }) as Stopper;
}
