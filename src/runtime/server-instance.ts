// One running Fleet Server: a store, the fleet logic over it, the HTTP listeners and the optional
// metrics listener, started and stopped together. Standalone mode runs one for the life of the process;
// agent mode replaces it when the agent's units change what it needs.
import type http from 'node:http';
import type { Logger } from 'pino';
import type { FleetServerConfig } from '../config/config';
import { Fleet, type FleetSharing } from '../fleet/fleet';
import { localStats, retireInstanceCounters, startMetrics } from '../http/metrics';
import { HttpService, type HttpOptions } from '../http/server';
import { openStore } from '../store/open';
import type { Store } from '../store/port';
import { Backoff, sleep } from '../util/backoff';
import { monotonicMs } from '../util/clock';
import { releaseStartUpTiering } from './start-up-tiering';

/** How long each step of a stop took, logged with its end (a drain near its deadline says which step to look at). */
export interface StopTimings {
  /** Answering the held polls (spread over most of the drain window when leaving for good). */
  'stop.answer_ms': number;
  /** Requests in flight after that, until every connection closed. */
  'stop.drain_ms': number;
  /**
   * Requests still in flight at the drain's deadline, their connections closed: slow bodies and readers
   * (every held poll is answered first, a second at least before it).
   */
  'stop.cut_requests': number;
  /** The monitors stopped and the last check-in records written. */
  'stop.write_ms': number;
  /** The store closed. */
  'stop.close_ms': number;
  /** A cluster worker: whether every worker's listeners were closed before it answered (false: it waited 1 s). */
  'stop.others_closed'?: boolean;
}

export interface StopOptions {
  /** Leaving for good: the answers spread over most of the drain window. */
  spread?: boolean;
  /**
   * Called once this server's listeners are closed; its held polls are answered when it resolves, to
   * whether every other listener was closed by then.
   */
  listenersClosed?: () => Promise<boolean>;
}

export class ServerInstance {
  private metrics: http.Server | undefined;
  private readonly stopping = new AbortController();
  private starting: Promise<void> | undefined;

  private constructor(readonly config: FleetServerConfig, readonly store: Store, readonly fleet: Fleet, readonly http: HttpService,
    private readonly log: Logger) {}

  /** Whether stop() was called: a start that ends after it serves nothing. */
  get stopRequested(): boolean {
    return this.stopping.signal.aborted;
  }

  /** `store`: one opened already (a cluster worker's proxy to the owner); else the one the configuration names. */
  static async create(config: FleetServerConfig, log: Logger, http: HttpOptions = {}, opened?: Store, sharing?: FleetSharing): Promise<ServerInstance> {
    const store = opened ?? await openStore(config, log, { server: true });
    const fleet = new Fleet(store, config, log, undefined, sharing);
    // A failing write (disk full, I/O error) makes the server DEGRADED until a write succeeds again.
    store.watchWrites?.((fault) => {
      if (fault !== undefined) log.error({ 'error.message': fault }, 'store write failed; DEGRADED until a write succeeds');
      else log.info('store writes succeed again');
      fleet.health.setWriteFault(fault);
    });
    return new ServerInstance(config, store, fleet, new HttpService(fleet, config, log, http), log);
  }

  /**
   * The embedded store is local and starts at once, before the listeners. Elasticsearch may be down or
   * refuse the token, so the listeners come up first, /api/status reports why the server is not yet
   * serving, and fleet logic starts once the cluster answers. `requireVersion` refuses older clusters.
   */
  start(opts: { requireVersion?: string; metrics?: boolean } = {}): Promise<void> {
    // Stopped before it started (a signal during the zero-config set-up): nothing to open.
    if (this.stopping.signal.aborted) return Promise.resolve();
    this.starting ??= this.startOnce(opts);
    return this.starting;
  }

  private async startOnce(opts: { requireVersion?: string; metrics?: boolean }): Promise<void> {
    if (this.store.kind === 'sqlite') await this.fleet.start();
    // A cluster worker leaves the metrics listener to the primary, which sums the workers. Bound before
    // the API's listeners: a metrics port that is taken fails the start before "fleet-server listening"
    // is logged, not after agents were told to come.
    if (this.config.http.enabled && opts.metrics !== false) this.metrics = await startMetrics(this.config.http.host, this.config.http.port, localStats(this.fleet, this.http), this.log);
    try {
      await this.http.start();
    } catch (err) {
      this.metrics?.close();
      this.metrics = undefined;
      throw err;
    }
    releaseStartUpTiering(this.log);
    if (this.store.kind !== 'sqlite') void this.startWhenReady(opts.requireVersion);
  }

  /** Where a stop under way is (logged if the drain overruns its deadline). */
  get stopPhase(): string {
    if (this.phase === 'draining') return this.fleet.stopPhase ?? 'waiting for requests in flight';
    return this.phase === 'stopping' ? this.fleet.stopPhase ?? 'stopping' : this.phase;
  }

  private phase = 'waiting for the start to end';

  /**
   * Answers held polls, drains requests, writes what is pending and closes the store. Leaving for good
   * (`spread`), the answers are spread over most of the drain window so that agents move to the other
   * instances smoothly; a restart in place answers them at once.
   */
  async stop(opts: StopOptions = {}): Promise<StopTimings> {
    // A start still waiting for the store gives up; one mid-way is stopped by the fleet's stop below. A stop
    // that comes while the listeners are still opening (a signal just after the first log lines) waits
    // for them, so that it closes them.
    this.stopping.abort();
    await this.starting?.catch(() => undefined);
    const drainMs = this.config.server.timeouts.drainMs;
    this.phase = 'draining';
    const t0 = monotonicMs();
    let released = t0;
    let othersClosed: boolean | undefined;
    const cut = await this.http.stop(drainMs, async () => {
      othersClosed = await opts.listenersClosed?.();
      // Spread to 80 % of the window from the stop, whatever waiting for the other workers took.
      await this.fleet.releaseHeld(opts.spread ? Math.max(0, Math.floor(drainMs * 0.8 - (monotonicMs() - t0))) : 0);
      released = monotonicMs();
    });
    if (cut > 0) this.log.warn({ 'stop.cut_requests': cut, 'timeouts.drain_ms': drainMs }, 'requests still in flight at the drain deadline; their connections were closed');
    // Agent mode replaces an instance on a new configuration: the next one's counters go on from these.
    retireInstanceCounters(this.fleet, this.http);
    // With every connection closed: what is left is the store's (a deadline that cuts it resets no agent).
    this.phase = 'stopping';
    const t1 = monotonicMs();
    await this.fleet.stop();
    this.metrics?.close();
    this.phase = 'closing the store';
    const t2 = monotonicMs();
    await this.store.close();
    const ms = (a: number, b: number): number => Math.round(b - a);
    return { 'stop.answer_ms': ms(t0, released), 'stop.drain_ms': ms(released, t1), 'stop.cut_requests': cut, 'stop.write_ms': ms(t1, t2), 'stop.close_ms': ms(t2, monotonicMs()),
      ...(othersClosed === undefined ? {} : { 'stop.others_closed': othersClosed }) };
  }

  private async startWhenReady(requireVersion?: string): Promise<void> {
    const backoff = new Backoff({ initialMs: 1000, maxMs: 30_000 });
    const signal = this.stopping.signal;
    while (!signal.aborted) {
      try {
        await this.store.ready(requireVersion);
        if (signal.aborted) return;
        await this.fleet.start();
        if (!signal.aborted) this.log.info('fleet-server running');
        return;
      } catch (err) {
        // Stopped mid-way: the store closed under the start, which is no fault of the store's.
        if (signal.aborted) return;
        const message = err instanceof Error ? err.message : String(err);
        this.fleet.health.set('FAILED', `Error - ${message}`);
        const wait = backoff.next();
        this.log.error({ err, 'retry.in_ms': wait }, 'cannot start on the store; retrying');
        await sleep(wait, signal);
      }
    }
  }
}
