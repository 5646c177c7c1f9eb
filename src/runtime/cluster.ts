// Several processes serving HTTP (inputs.0.server.workers > 1): Node's cluster. On Linux every worker
// binds the listeners with SO_REUSEPORT and the kernel deals connections to them; elsewhere the primary
// accepts connections on the shared listeners and deals them to the workers in turn. Each worker is a whole
// server (as several instances on one Elasticsearch cluster already are), with its share of the limits;
// on the embedded store the primary owns the database and the workers reach it through the store proxy
// (store-owner.ts); the primary supervises (a worker that dies, or hangs and is killed, is replaced, its
// agents reconnect to the others), drains them all on SIGTERM, and serves the metrics listener, summing the
// workers' figures.
import type { Server } from 'node:http';
import cluster, { type Worker } from 'node:cluster';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import type { FleetServerConfig } from '../config/config';
import type { ClientHandle, HandoffChannel } from '../http/handoff';
import type { HttpService } from '../http/server';
import { localStats, processMetrics, startMetrics, type StatsDocument, type StatsSource } from '../http/metrics';
import { createLogger, rawLogWriter } from '../logging/logger';
import { embeddedDbPath, embeddedSecretsKey } from '../store/open';
import type { Store } from '../store/port';
import { connectRemoteStore } from '../store/remote/client';
import { withLocalReads } from '../store/remote/local-reads';
import { CheckinReads } from '../store/sqlite/check-in-reads';
import { resolveSecretBox } from '../store/sqlite/secret-box';
import { describeError, withContext } from '../util/error-text';
import { isPlainObject } from '../util/is-object';
import { CarriedCounters, clusterStats, type WorkerStats } from './cluster-stats';
import {
  afterExit, clearWorker, markReady, mayBeGroupStop, READY_TIMEOUT_MS, SILENT_LIMIT_MS, SilenceWatch, slotRecord, uncleanStopExits, WATCHDOG_EVERY_MS,
  type SlotRecord, type WorkerExit,
} from './cluster-supervision';
import { HandoffRouter } from './handoff-router';
import { ListenersClosedBarrier, OTHERS_CLOSED_WAIT_MS } from './listeners-closed';
import { startMemoryTrim, TRIM_EVERY_MS, TrimDecider, trimPhaseMs } from './memory-trim';
import { isSingleExecutable, missingNodeFlags, missingStartEnv } from './node-flags';
import { openServer, serveUntilStopped, stopOnSignals, type Stopper } from './serve';
import type { ServerInstance } from './server-instance';
import { SecretShareClient, SecretShareHost, type SecretShareAnswer, type SecretShareRequest } from './shared-secrets';
import { shareLimits } from './sizing';
import { ENV_STORE_SOCKET, type StoreOwner } from './store-owner';
import { releaseStartUpTiering } from './start-up-tiering';
import { configAnswer, configFromPrimary, type ConfigAnswer, type ConfigRequest } from './worker-config';
import { lowerOwnPriority, niceOf } from './worker-priority';
import { listenHost } from '../http/listen-host';

/** primary → worker */
type ToWorker = { t: 'init'; ticketKeys: string } | ConfigAnswer | { t: 'stats'; id: number; gc: boolean } | { t: 'stop' }
  /** Every worker's listeners are closed: answer the held polls (listeners-closed.ts). */
  | { t: 'answer' }
  /** How many workers serve now: each takes that share of the server's limits. */
  | { t: 'serving'; workers: number }
  /** Whether another worker has room for connections (handoff.ts). */
  | { t: 'room'; elsewhere: boolean }
  /** A connection handed over (its handle comes with the message); `returned`: one this worker sent. */
  | { t: 'adopt'; id: number; returned: boolean }
  /** Elasticsearch mode: the primary's copy of a secret (shared-secrets.ts). */
  | SecretShareAnswer;
/** worker → primary */
type ToPrimary = ConfigRequest | { t: 'hello' } | { t: 'ready' } | { t: 'failed'; reason: string } | { t: 'stats'; id: number; doc: StatsDocument }
  /** Connections the worker's external listener can still take. */
  | { t: 'room'; room: number }
  /** A connection it has no room for (its handle comes with the message). */
  | { t: 'handoff' }
  /** Whether it took the connection of that `adopt`. */
  | { t: 'adopted'; id: number; taken: boolean }
  /** Stopping, it has closed its listeners; it answers its held polls when told (listeners-closed.ts). */
  | { t: 'closed' }
  /** Still turning its event loop, without SO_REUSEPORT (with it, its room says so): the primary's watchdog. */
  | { t: 'alive' }
  /** Elasticsearch mode: a secret this worker learned, asks for, or deleted (shared-secrets.ts). */
  | SecretShareRequest;

const ENV_SIZE = 'FLEET_SERVER_WORKERS';
const ENV_SLOT = 'FLEET_SERVER_WORKER_SLOT';
/** Set when the workers bind the listeners themselves with SO_REUSEPORT. */
const ENV_REUSE_PORT = 'FLEET_SERVER_WORKER_REUSE_PORT';
/** The command line's -c and -E, as the primary parsed them (JSON): a worker does not parse its own. */
/** Set when the primary writes the workers' log lines (log files: one writer rotates them). */
const ENV_PIPE_LOGS = 'FLEET_SERVER_WORKER_LOGS_PIPED';
/** How often a worker tells the primary its room for connections. */
const ROOM_EVERY_MS = 500;
/**
 * How often a worker without SO_REUSEPORT (it sends no room) tells the primary it is alive: well inside
 * SILENT_LIMIT_MS, whatever a turn of its loop costs, for one small message every 2 s.
 */
const ALIVE_EVERY_MS = 2000;
/** How long a scrape waits for a worker's figures before leaving it out; with a forced GC first (?gc=1), longer. */
const STATS_WAIT_MS = 5000;
const STATS_GC_WAIT_MS = 15_000;

/** A message to the other side; one that is gone is not an error here (its exit is handled where it is seen). */
function send(target: Worker | NodeJS.Process, message: ToWorker | ToPrimary): void {
  const post = target.send as ((m: unknown, cb: (err: Error | null) => void) => boolean) | undefined;
  try {
    post?.call(target, message, ignore);
  } catch {
    // Channel closed.
  }
}

function ignore(): void {}

/**
 * A worker's message, or undefined when it is none of ours or not of its shape: a worker is this program,
 * but a throw in the primary's message handler would end the primary and every worker with it.
 */
export function workerMessage(m: unknown): ToPrimary | undefined {
  if (!isPlainObject(m) || typeof m['t'] !== 'string') return undefined;
  const ok = ((): boolean => {
    switch (m['t']) {
      case 'stats': return typeof m['id'] === 'number' && isPlainObject(m['doc']);
      case 'adopted': return typeof m['id'] === 'number';
      case 'room': return typeof m['room'] === 'number' && Number.isFinite(m['room']);
      case 'failed': return typeof m['reason'] === 'string';
      case 'secret-keep': return typeof m['id'] === 'string' && typeof m['value'] === 'string';
      case 'secret-recall': return typeof m['id'] === 'string' && typeof m['n'] === 'number';
      case 'secret-forget': return Array.isArray(m['ids']) && m['ids'].every((id) => typeof id === 'string');
      default: return true;
    }
  })();
  return ok ? (m as ToPrimary) : undefined;
}

/** The owner's store, with the check-in's and rollout's reads on a read-only connection of this worker's (when it can open one). */
function withCheckinReads(remote: Store, config: FleetServerConfig, log: Logger): Store {
  try {
    const path = embeddedDbPath(config);
    // The owner made or checked the key before starting the workers: a worker never makes one.
    const box = resolveSecretBox(dirname(path), embeddedSecretsKey(config), () => false);
    return withLocalReads(remote, new CheckinReads(path, box), log);
  } catch (err) {
    log.warn({ err }, 'cannot read the embedded database here; every read goes to the store owner');
    return remote;
  }
}

/** In a cluster worker, its primary's configuration (worker-config.ts); elsewhere undefined. */
export function workerConfig(): Promise<FleetServerConfig> | undefined {
  return cluster.isWorker ? configFromPrimary(process as never) : undefined;
}

/** A worker: one server with its share of the limits, stopped by its signals or by the primary. */
export async function runWorker(config: FleetServerConfig): Promise<void> {
  const size = Math.max(1, Number(process.env[ENV_SIZE]) || 1);
  const slot = Number(process.env[ENV_SLOT]) || 0;
  const logging = process.env[ENV_PIPE_LOGS] ? { ...config.logging, toStderr: true, toFiles: false } : config.logging;
  const log = createLogger(logging).child({ 'worker.slot': slot });
  if (process.env[ENV_STORE_SOCKET]) lowerOwnPriority();
  startMemoryTrim(log, TRIM_EVERY_MS, new TrimDecider(), trimPhaseMs(slot, size));
  const shared: FleetServerConfig = { ...config, server: { ...config.server, limits: shareLimits(config.server.limits, size) } };
  let stop: Stopper | undefined;
  let stats: StatsSource | undefined;
  let reshare: ((workers: number) => void) | undefined;
  let served: ServerInstance | undefined;
  let initialised: (ticketKeys: Buffer) => void = ignore;
  let answer: () => void = ignore;
  const othersClosed = new Promise<void>((resolve) => (answer = resolve));
  const ticketKeys = new Promise<Buffer>((resolve) => (initialised = resolve));
  const socket = process.env[ENV_STORE_SOCKET];
  // Elasticsearch mode: agents' output keys shared through the primary (shared-secrets.ts).
  const keyShare = config.elasticsearch && !socket ? new SecretShareClient((m) => process.connected && (send(process, m), true)) : undefined;
  // Listening before saying hello: nothing the primary sends can arrive unheard.
  process.on('message', (m: ToWorker, handle?: ClientHandle) => {
    if (m.t === 'adopt') {
      const taken = !!handle && !!served && served.http.adopt(handle, m.returned);
      if (!taken) handle?.close();
      send(process, { t: 'adopted', id: m.id, taken });
    } else if (m.t === 'room') {
      if (served) served.http.roomElsewhere = m.elsewhere;
    } else if (m.t === 'init') initialised(Buffer.from(m.ticketKeys, 'hex'));
    else if (m.t === 'stop') stop?.('primary');
    else if (m.t === 'answer') answer();
    else if (m.t === 'stats') {
      // A worker whose configuration had the metrics listener off (one respawned after an edit) answers too.
      if (served) stats ??= localStats(served.fleet, served.http);
      if (stats) void stats({ gc: m.gc }).then((doc) => send(process, { t: 'stats', id: m.id, doc }));
    }
    else if (m.t === 'serving') reshare?.(m.workers);
    else if (m.t === 'secret-recalled') keyShare?.answered(m);
  });
  send(process, { t: 'hello' });
  const reusePort = process.env[ENV_REUSE_PORT] === '1';
  const opening = (async () => {
    // On the embedded store, the primary's: reached through its socket.
    const remote = socket ? await connectRemoteStore(socket, { log }).catch((err: unknown) => {
      throw withContext(`cannot reach the store on ${socket}`, err);
    }) : undefined;
    const store = remote ? withCheckinReads(remote, config, log) : undefined;
    // Each worker binds its own listener only with SO_REUSEPORT; with the primary's round-robin there is nothing to hand off.
    const handoff: HandoffChannel | undefined = reusePort ? (client, done) => {
      try {
        process.send!({ t: 'handoff' } satisfies ToPrimary, client as never, (err: Error | null) => done(!err));
      } catch {
        done(false);
      }
    } : undefined;
    return openServer(shared, log, { ticketKeys: await ticketKeys, reusePort, handoff }, store, { keys: keyShare });
  })();
  // From the start: a signal to the whole process group (Ctrl-C, systemd's stop) drains a worker still
  // starting too, as the primary's stop message does.
  stop = serveUntilStopped(opening, shared, log, async () => {
    send(process, { t: 'closed' });
    return Promise.race([othersClosed.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), OTHERS_CLOSED_WAIT_MS).unref())]);
  });
  let server: ServerInstance;
  try {
    server = await opening;
    served = server;
    // Asked for only by the primary's metrics listener; making it starts sampling the event loop's delay,
    // which loads perf_hooks (util/clock.ts): made now if the listener is on, else at the first question.
    if (config.http.enabled) stats = localStats(server.fleet, server.http);
    let serving = size;
    reshare = (workers) => {
      if (workers < 1 || workers === serving) return;
      serving = workers;
      const limits = shareLimits(config.server.limits, workers);
      server.http.reshare(limits);
      log.info({ 'cluster.serving': workers, 'limits.max_connections': limits.maxConnections }, 'limits reshared');
    };
    // A worker whose primary is gone exits at once (Node's cluster does that): the listeners went with it.
    await server.start({ metrics: false });
  } catch (err) {
    // Stopped while it started: the stop's drain ends this process; a start the stop cut short is no failure
    // of the server's, and saying 'failed' would race the drain's exit 0 with an exit 1.
    if (stop.requested) {
      log.warn({ err }, 'start ended with an error while stopping');
      return;
    }
    // The primary says why in its one line; this worker exits once the reason is sent.
    const reason: ToPrimary = { t: 'failed', reason: describeError(err) };
    try {
      process.send!(reason, () => process.exit(1));
    } catch {
      throw err;
    }
    return;
  }
  // Stopped while it started: it is draining, not serving.
  if (server.stopRequested) return;
  log.info({ 'process.pid': process.pid, 'limits.max_connections': shared.server.limits.maxConnections }, 'fleet-server worker ready');
  send(process, { t: 'ready' });
  if (reusePort) reportRoom(served!.http);
  else setInterval(() => send(process, { t: 'alive' }), ALIVE_EVERY_MS).unref();
}

/**
 * Tells the primary this worker's room for connections, for handoffs to it. Every time, changed or not:
 * the primary charges a worker what it sends it, and only a report sets that right again. The reports are
 * also how the primary's watchdog knows the worker's loop turns; unref'd, they keep no draining worker up.
 */
function reportRoom(service: HttpService): void {
  const report = (): void => send(process, { t: 'room', room: service.connectionRoom });
  report();
  setInterval(report, ROOM_EVERY_MS).unref();
}

interface Slot extends SlotRecord {
  /** Why its worker could not start, as it said (or that it was not ready in time). */
  failure?: string;
  worker: Worker | undefined;
  ready: boolean;
  /** Kills its worker if it is not ready within READY_TIMEOUT_MS. */
  readyTimer?: NodeJS.Timeout;
  /** What it was last told: another worker has room. */
  roomElsewhere?: boolean;
}

/**
 * The primary: starts `size` workers and waits until all are ready; then supervises them until a signal.
 * `openOwner`: opens the embedded store it serves to the workers, closed once they are all gone.
 */
export async function runPrimary(config: FleetServerConfig, log: Logger, size: number, openOwner?: () => Promise<StoreOwner>): Promise<void> {
  // Opened after runServer's first log line (a microtask later); the stop handlers below are in place
  // before that line.
  const ownerReady = openOwner ? Promise.resolve().then(openOwner) : undefined;
  // Round-robin in the primary is Node's default on Linux (the kernel's own spread is uneven); also elsewhere.
  cluster.schedulingPolicy = cluster.SCHED_RR;
  const pipeLogs = config.logging.toFiles;
  const writeLine = pipeLogs ? rawLogWriter(log, config.logging.toStderr) : undefined;
  cluster.setupPrimary({
    // The shipped V8 flags (memory settings) apply to the workers however this process was started. The
    // single executable carries them itself and would take any flag given as an argument of its own.
    ...(isSingleExecutable()
      ? { execArgv: [], exec: process.execPath }
      : { execArgv: [...process.execArgv, ...missingNodeFlags(process.execArgv)] }),
    ...(pipeLogs ? { stdio: ['ignore', 'inherit', 'pipe', 'ipc'] } : {}),
  });

  const slots: Slot[] = Array.from({ length: size }, (_, index) => ({ ...slotRecord(index + 1), worker: undefined, ready: false }));
  const serving = (): Slot[] => slots.filter((s) => s.ready && s.worker);
  // One set for all workers, replacements included: a session made with one resumes with any.
  const ticketKeys = randomBytes(48);
  // The output keys every worker minted or read, in Elasticsearch mode (shared-secrets.ts); empty otherwise.
  const keys = new SecretShareHost();
  let restarts = 0;
  let stopping = false;
  /** Kills a ready worker that has been silent past SILENT_LIMIT_MS (cluster-supervision.ts); started with the forks. */
  let watchdog: NodeJS.Timeout | undefined;
  /** Why this process exits 1 once stopped: its start failed, or no worker could start any more. */
  let failure: Error | undefined;
  let nextStatsId = 0;
  const pendingStats = new Map<number, (doc: StatsDocument, worker: Worker) => void>();
  const carriedCounters = new CarriedCounters();
  let startup: { resolve: () => void; reject: (err: Error) => void } | undefined;
  const listenersClosed = new ListenersClosedBarrier<Slot>((s) => {
    if (s.worker) send(s.worker, { t: 'answer' });
  });
  // Closed once, whichever path comes first: a failed start and a signal can both get there.
  let ownerClosed: Promise<void> | undefined;
  const closeOwner = (): Promise<void> => (ownerClosed ??= (async () => (await ownerReady?.catch(() => undefined))?.close())());

  /**
   * Limits are the whole server's: while a worker is missing, the others share them (as they share its
   * agents, which reconnect to them), and give its share back once its replacement is ready. A replacement
   * starts with the full count's share (its environment), so it is told only if that differs.
   */
  const announceServing = (): void => {
    const now = serving();
    for (const s of now) send(s.worker!, { t: 'serving', workers: Math.max(1, now.length) });
  };

  /** Each serving worker told whether another one has room, when that changed. */
  const tellRoom = (): void => {
    const now = serving();
    for (const s of now) {
      const elsewhere = now.some((o) => o !== s && handoffs.room(o) > 0);
      if (elsewhere !== s.roomElsewhere) send(s.worker!, { t: 'room', elsewhere });
      s.roomElsewhere = elsewhere;
    }
  };

  const handoffs: HandoffRouter<Slot> = new HandoffRouter<Slot>(serving,
    (to, id, handle, returned, failed) => {
      try {
        to.worker!.send({ t: 'adopt', id, returned } satisfies ToWorker, handle as never, (err: Error | null) => {
          if (err) failed();
        });
      } catch {
        failed();
      }
    },
    () => tellRoom());

  let metrics: Server | undefined;
  // From the start: a stop while the workers start stops them too. Each worker drains within
  // timeouts.drain (and exits by itself 5 s after it at the latest).
  const stopAll = stopOnSignals(log, config.server.timeouts.drainMs + 10_000, async () => {
    stopping = true;
    clearInterval(watchdog);
    handoffs.stop();
    // 'close': exited, and its last log lines read (they may come through this process).
    const exits = slots.filter((s) => s.worker).map((s) => {
      const proc = s.worker!.process;
      return new Promise<WorkerExit>((r) => proc.once('close', (code: number | null, signal: NodeJS.Signals | null) => r({ slot: s.index, pid: proc.pid, code, signal })));
    });
    // No worker answers a held poll until every one has closed its listeners — starting ones too: with
    // SO_REUSEPORT one listens before it says it is ready.
    listenersClosed.begin(slots.filter((s) => s.worker));
    // A worker still starting may not listen for messages yet: a signal stops it either way (its
    // handlers drain it once installed; before that, nothing was served).
    for (const s of slots) {
      if (s.ready) send(s.worker!, { t: 'stop' });
      else s.worker?.process.kill('SIGTERM');
    }
    const ended = await Promise.all(exits);
    metrics?.close();
    // Last: the workers' final bookkeeping went through it.
    await closeOwner();
    if (failure) throw failure;
    // A worker whose drain overran or failed, or that crashed mid-drain, lost what it held: a supervisor must see it.
    const unclean = uncleanStopExits(ended);
    if (unclean) throw new Error(unclean);
  }, {
    overrun: () => {
      for (const s of slots) s.worker?.kill('SIGKILL');
    },
    phase: () => {
      const left = slots.filter((s) => s.worker).map((s) => s.index);
      return left.length > 0 ? `waiting for workers ${left.join(', ')} to exit` : 'closing the store';
    },
  });

  /** The start failed: whatever started is killed, the store closed, and `err` goes to the caller (exit 1). */
  const failStart = async (err: unknown): Promise<never> => {
    stopping = true;
    clearInterval(watchdog);
    failure = err instanceof Error ? err : new Error(String(err));
    for (const s of slots) s.worker?.kill('SIGKILL');
    await closeOwner().catch((closeErr: unknown) => log.error({ err: closeErr }, 'cannot close the store'));
    throw err;
  };

  const owner = await ownerReady;
  if (stopping) return;

  // The kernel deals connections to the workers (SO_REUSEPORT) where it can: the primary then accepts
  // and passes on nothing, which under a reconnect storm made it the bottleneck. A port of 0 must be
  // chosen once for all workers, so it stays with the primary's round-robin.
  const reusePort = process.platform === 'linux' && config.server.port !== 0;
  if (reusePort) {
    // SO_REUSEPORT would let these workers join the listeners of another server already on the port
    // (same user): a server found listening there first fails this one, as a plain bind would.
    try {
      await ensurePortFree(config.server.host, config.server.port);
      if (config.server.internalPort > 0 && config.server.internalPort !== config.server.port) await ensurePortFree(listenHost('localhost'), config.server.internalPort);
    } catch (err) {
      if (stopping) return;
      await failStart(err);
    }
    if (stopping) return;
  }

  const fork = (slot: Slot): void => {
    if (stopping) return;
    let worker: Worker;
    try {
      worker = cluster.fork({
        // Also when this process was started without them (FLEET_SERVER_NO_REEXEC).
        ...missingStartEnv(),
        [ENV_SIZE]: String(size), [ENV_SLOT]: String(slot.index), ...(reusePort ? { [ENV_REUSE_PORT]: '1' } : {}),
        ...(pipeLogs ? { [ENV_PIPE_LOGS]: '1' } : {}), ...(owner ? { [ENV_STORE_SOCKET]: owner.socketPath } : {}),
      });
    } catch (err) {
      // Not started at all (ENOMEM): a failed start, retried after its pause. Thrown from a replacement's
      // timer, it ended the primary, and every serving worker with it.
      slot.worker = undefined;
      slot.ready = false;
      slot.failure = `cannot start worker ${slot.index}: ${describeError(err)}`;
      ended(slot, undefined, null, null);
      return;
    }
    slot.worker = worker;
    slot.ready = false;
    slot.failure = undefined;
    clearWorker(slot);
    worker.on('error', (err: Error) => {
      // A spawn that failed (EMFILE, EAGAIN) is said by an 'error' with no exit after it: judged as one.
      // Unheard, the error ended the primary. Any other (a signal that could not be sent) is only said.
      if (worker.process.pid !== undefined || slot.worker !== worker) {
        log.warn({ err, 'worker.slot': slot.index, 'process.pid': worker.process.pid }, 'worker process error');
        return;
      }
      slot.failure = `cannot start worker ${slot.index}: ${describeError(err)}`;
      // Node's cluster forgets a worker at its exit, which this one will not have.
      delete cluster.workers?.[worker.id];
      ended(slot, undefined, null, null);
    });
    // A worker that hangs while starting would hold its slot (and at start-up, the whole start) forever.
    slot.readyTimer = setTimeout(() => {
      if (stopping || slot.worker !== worker || slot.ready) return;
      slot.failure = `worker ${slot.index} was not ready within ${READY_TIMEOUT_MS / 1000} s`;
      log.error({ 'worker.slot': slot.index, 'process.pid': worker.process.pid, 'ready.timeout_ms': READY_TIMEOUT_MS }, 'worker not ready in time; killing it');
      worker.process.kill('SIGKILL');
    }, READY_TIMEOUT_MS);
    slot.readyTimer.unref();
    // node:readline is loaded only when worker logs are relayed (~0.6 MiB of RSS otherwise).
    if (writeLine && worker.process.stderr) (require('node:readline') as typeof import('node:readline')).createInterface({ input: worker.process.stderr }).on('line', (l) => writeLine(`${l}\n`));
    worker.on('message', (raw: unknown, handle?: ClientHandle) => {
      // Anything at all: its loop turns.
      if (slot.worker === worker) slot.heardAt = Date.now();
      const m = workerMessage(raw);
      if (!m) return;
      if (m.t === 'handoff') {
        if (handle) handoffs.route(slot, handle);
      } else if (m.t === 'adopted') {
        handoffs.answered(m.id, m.taken);
      } else if (m.t === 'room') {
        handoffs.report(slot, m.room);
        tellRoom();
      } else if (m.t === 'config?') send(worker, configAnswer(config));
      else if (m.t === 'hello') send(worker, { t: 'init', ticketKeys: ticketKeys.toString('hex') });
      else if (m.t === 'failed') slot.failure = m.reason;
      else if (m.t === 'ready') {
        clearTimeout(slot.readyTimer);
        slot.ready = true;
        markReady(slot, Date.now());
        if (!startup) announceServing();
        log.info({ 'worker.slot': slot.index, 'process.pid': worker.process.pid }, 'worker ready');
        if (startup && slots.every((s) => s.ready)) startup.resolve();
      } else if (m.t === 'stats') {
        pendingStats.get(m.id)?.(m.doc, worker);
      } else if (m.t === 'closed') {
        // Stopped alone (the whole stop has no watchdog): draining, within its own deadline.
        if (!stopping) slot.closedAt ??= Date.now();
        listenersClosed.closed(slot);
      }
      else if (m.t === 'secret-keep' || m.t === 'secret-recall' || m.t === 'secret-forget') {
        const answer = keys.handle(m);
        if (answer) send(worker, answer);
      }
    });
  };

  /** `slot`'s worker (`pid`; none if it never started) has ended, the server stopping or not. */
  function ended(slot: Slot, pid: number | undefined, code: number | null, signal: string | null): void {
    carriedCounters.exited(slot.index, pid);
    clearTimeout(slot.readyTimer);
    slot.worker = undefined;
    const wasServing = slot.ready;
    slot.ready = false;
    slot.roomElsewhere = undefined;
    handoffs.gone(slot);
    listenersClosed.gone(slot);
    // Stopping: the stop's drain judges the exits.
    if (stopping) return;
    tellRoom();
    if (wasServing && !startup) announceServing();
    const fields = {
      'worker.slot': slot.index, 'process.pid': pid, 'exit.code': code, 'exit.signal': signal,
      ...(slot.failure ? { 'error.message': slot.failure } : {}),
    };
    if (startup) {
      const failed = (): void => startup?.reject(new Error(slot.failure ?? `worker ${slot.index} exited (${signal ?? code}) before it was ready`));
      // If the primary's own stop begins meanwhile, this exit was part of it: the stop ends the process.
      // (A referenced timer: the start's outcome must still be said.)
      if (mayBeGroupStop(signal)) {
        setTimeout(() => {
          if (!stopping) failed();
        }, OTHERS_CLOSED_WAIT_MS);
      } else failed();
      return;
    }
    const next = afterExit(slot, slots, serving().length, Date.now());
    if ('giveUp' in next) {
      // Serving nothing while looking alive would hide the fault from the supervisor: exit 1 instead.
      failure = new Error(`${next.giveUp} (worker ${slot.index}: ${slot.failure ?? `exited (${signal ?? code})`})`);
      log.error(fields, `${next.giveUp}; exiting`);
      stopAll('no worker serving');
      return;
    }
    restarts++;
    log.error({ ...fields, 'restart.in_ms': next.restartInMs }, 'worker exited; starting a replacement');
    setTimeout(() => {
      if (!stopping) fork(slot);
    }, next.restartInMs);
  }

  cluster.on('exit', (worker, code, signal) => {
    const slot = slots.find((s) => s.worker === worker);
    if (slot) ended(slot, worker.process.pid, code, signal);
  });

  // A worker hung after its ready (its event loop blocked for good) would keep its agents, and with
  // SO_REUSEPORT be dealt new connections, forever: killed, it is replaced as a crashed one is.
  const silence = new SilenceWatch(Date.now(), config.server.timeouts.drainMs);
  watchdog = setInterval(() => {
    if (stopping) return;
    const now = Date.now();
    for (const s of silence.look(serving(), now)) {
      const silentMs = now - s.hungSince!;
      s.failure = `worker ${s.index} sent nothing for ${Math.round(silentMs / 1000)} s (hung)`;
      log.error({ 'worker.slot': s.index, 'process.pid': s.worker!.process.pid, 'watchdog.silent_ms': silentMs, 'watchdog.limit_ms': SILENT_LIMIT_MS },
        'worker sent nothing for too long (hung); killing it');
      s.worker!.process.kill('SIGKILL');
    }
  }, WATCHDOG_EVERY_MS);
  watchdog.unref();

  const ready = new Promise<void>((resolve, reject) => (startup = { resolve, reject }));
  for (const slot of slots) fork(slot);
  try {
    await ready;
    releaseStartUpTiering(log);
    if (stopping) return;
  } catch (err) {
    await failStart(err);
  } finally {
    startup = undefined;
  }

  /** Every ready worker's /stats, as many as answer within STATS_WAIT_MS. */
  const gather = async (asked: boolean): Promise<StatsDocument> => {
    // Workers share the primary's flags: without --expose-gc nobody collects, so nobody waits longer for it.
    const gc = asked && typeof (globalThis as { gc?: unknown }).gc === 'function';
    const live = slots.filter((s) => s.ready && s.worker);
    const answers = await Promise.all(live.map((slot) => new Promise<WorkerStats | undefined>((resolve) => {
      const id = ++nextStatsId;
      const timer = setTimeout(() => {
        pendingStats.delete(id);
        resolve(undefined);
      }, gc ? STATS_GC_WAIT_MS : STATS_WAIT_MS);
      pendingStats.set(id, (doc, worker) => {
        clearTimeout(timer);
        pendingStats.delete(id);
        resolve({ slot: slot.index, pid: worker.process.pid ?? 0, doc, seq: id });
      });
      send(slot.worker!, { t: 'stats', id, gc });
    })));
    // A worker that answered and then exited while others were awaited is counted by its exit (carried), not here too.
    const answered = carriedCounters.newest(answers.filter((a): a is WorkerStats => a !== undefined && slots.find((s) => s.index === a.slot)?.worker?.process.pid === a.pid));
    return clusterStats(processMetrics(), answered, { size, restarts }, carriedCounters.carry(answered));
  };
  metrics = config.http.enabled ? await startMetrics(config.http.host, config.http.port, ({ gc }) => gather(gc), log) : undefined;
  if (stopping) {
    metrics?.close();
    return;
  }

  // Ready once the metrics listener is too: whoever waits for this line may read the figures next.
  const pids = slots.map((s) => s.worker?.process.pid);
  log.info({ workers: size, pids, 'workers.nice': pids.map(niceOf) }, 'fleet-server workers ready');
}

/**
 * Fails as a listen would when something already listens on host:port. By connecting, not by listening:
 * a probe listener would take connections of agents reconnecting to a restarting server into its queue
 * and reset them when it closed (measured: 92 of 50,000 agents reconnecting after a restart).
 */
function ensurePortFree(host: string, port: number): Promise<void> {
  const target = host === '0.0.0.0' || host === '' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return new Promise((resolve, reject) => {
    const probe = net.connect({ host: target, port });
    const done = (inUse: boolean): void => {
      probe.destroy();
      if (!inUse) resolve();
      // Shaped as the listen's own error would be, so it is told the same way.
      else reject(Object.assign(new Error(`listen EADDRINUSE: address already in use ${host}:${port}`), { code: 'EADDRINUSE', errno: -98, syscall: 'listen', address: host, port }));
    };
    probe.setTimeout(1000, () => done(false));
    probe.once('connect', () => done(true));
    // Refused (nothing listens), or unreachable: the workers' own listen says what is wrong, if anything.
    probe.once('error', () => done(false));
  });
}
