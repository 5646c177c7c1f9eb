// Fleet logic assembled over one store: the services the protocol edges call, and their lifecycle.
import type { Logger } from 'pino';
import type { FleetServerConfig } from '../config/config';
import type { Store } from '../store/port';
import { systemClock, type Clock } from '../util/clock';
import { TokenBucket } from '../util/token-bucket';
import { VERSION } from '../version';
import { AckService } from './acks';
import { ActionDispatcher } from './action-dispatcher';
import { agentHealth, type AgentHealthInput } from './agent-health';
import { AgentVersionPolicy } from './agent-version';
import { ArtifactService } from './artifacts';
import { Authenticator } from './auth';
import { Bookkeeper } from './bookkeeping';
import { CheckinService } from './checkin';
import { EnrollService } from './enroll';
import { FileDeliveryService } from './file-delivery';
import { GracefulUnenroll } from './graceful-unenroll';
import { OpampService } from './opamp';
import { OutputKeys, type KeyShare } from './output-keys';
import { PolicyMonitor } from './policy-monitor';
import { SelfMonitor } from './self-monitor';
import { UploadService } from './uploads';
import { ActionCache } from './action-cache';

const HEALTH_CHECK_MS = 5000;

/** What this process shares with the server's other processes (cluster workers); nothing by default. */
export interface FleetSharing {
  /** Plain output keys (Elasticsearch mode with workers: runtime/shared-secrets.ts). */
  keys?: KeyShare;
}

export class Fleet {
  readonly auth: Authenticator;
  readonly versions: AgentVersionPolicy;
  readonly enrollment: EnrollService;
  readonly checkins: CheckinService;
  readonly gracefulUnenroll: GracefulUnenroll;
  readonly acks: AckService;
  readonly policies: PolicyMonitor;
  readonly dispatcher: ActionDispatcher;
  readonly bookkeeper: Bookkeeper;
  readonly uploads: UploadService;
  readonly deliveries: FileDeliveryService;
  readonly artifacts: ArtifactService;
  readonly opamp: OpampService;
  readonly health = new SelfMonitor();
  private readonly abort = new AbortController();
  private healthTimer: NodeJS.Timeout | undefined;
  private gcTimer: NodeJS.Timeout | undefined;
  private opampTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  private agentHealthInput: AgentHealthInput | undefined;

  constructor(readonly store: Store, readonly config: FleetServerConfig, private readonly log: Logger,
    private readonly clock: Clock = systemClock, sharing: FleetSharing = {}) {
    const s = config.server;
    const routes = s.limits.routes;
    this.auth = new Authenticator(store, { ttlApiKeyMs: config.cache.ttlApiKeyMs, jitterApiKeyMs: config.cache.jitterApiKeyMs });
    this.versions = new AgentVersionPolicy(VERSION);
    this.enrollment = new EnrollService(store, this.auth, {
      staticPolicyTokens: s.staticPolicyTokens, pbkdf2: s.pbkdf2, ttlEnrollKeyMs: config.cache.ttlEnrollKeyMs,
    }, log);
    this.policies = new PolicyMonitor(store, log, config.monitor.pollTimeoutMs);
    this.dispatcher = new ActionDispatcher(store, new TokenBucket(routes.action.intervalMs, routes.action.burst), log, config.monitor.pollTimeoutMs);
    this.bookkeeper = new Bookkeeper(store, s.checkinFlushIntervalMs, log, clock);
    // policy_limit paces API-key work only where it costs a remote cluster something.
    const pacer = store.traits.remoteApiKeys ? new TokenBucket(routes.policy.intervalMs, routes.policy.burst) : undefined;
    const outputKeys = new OutputKeys(store, pacer, log, (policyId) => this.policies.latest(policyId), sharing.keys);
    // Upstream's one action cache, for acks and upgrade details alike.
    const actions = new ActionCache(store, config.cache.ttlActionMs, 10_000, clock);
    this.checkins = new CheckinService(store, this.policies, this.dispatcher, this.bookkeeper, outputKeys, actions, {
      longPollMs: s.timeouts.checkinLongPollMs,
      maxPollMs: s.timeouts.checkinMaxPollMs,
      jitterMs: s.timeouts.checkinJitterMs,
      timestampMs: s.timeouts.checkinTimestampMs,
      ignoreCheckinPolicyId: s.ignoreCheckinPolicyId,
    }, log, clock);
    this.acks = new AckService(store, this.auth, outputKeys, actions, log);
    this.gracefulUnenroll = new GracefulUnenroll(s.gracefulForceUnenroll, clock);
    this.uploads = new UploadService(store, { maxFileSize: s.maxFileStorageSize }, log, clock);
    this.deliveries = new FileDeliveryService(store);
    this.artifacts = new ArtifactService(store, this.policies, config.cache.ttlArtifactMs, clock);
    // A Collector enrolls on its first message: at enroll_limit's rate, as upstream's enrollment takes
    // its slot (a WebSocket's messages pass no route limiter after the handshake).
    this.opamp = new OpampService(store, this.bookkeeper, (policyId) => this.policies.latest(policyId), log, clock,
      Math.round(s.opampHeartbeatMs / 1000), new TokenBucket(routes.enroll.intervalMs, routes.enroll.burst));
    this.policies.onRevision((p) => this.opamp.onRevision(p));
  }

  /** Starts what serves agents; a stop that comes meanwhile wins (nothing is left running after it). */
  async start(): Promise<void> {
    // A start that throws is retried from the top (ServerInstance.startWhenReady): the policy monitor's
    // start does nothing once its loop runs; the dispatcher's loop begins as its start ends, so a failed
    // one left none, and nothing after it throws (checkHealth catches).
    await this.policies.start(this.abort.signal);
    await this.dispatcher.start(this.abort.signal);
    if (this.stopping) return;
    this.bookkeeper.start();
    this.checkins.start();
    await this.checkHealth();
    if (this.stopping) return;
    // Every 5 s, and at once when a policy revision arrives (a Fleet Server input may have been added).
    this.policies.onRevision(() => void this.checkHealth());
    this.healthTimer = setInterval(() => void this.checkHealth(), HEALTH_CHECK_MS);
    this.healthTimer.unref();
    this.gcTimer = setInterval(() => void this.collectExpiredActions(), this.config.server.gc.scheduleIntervalMs);
    this.gcTimer.unref();
    // Collectors held on WebSockets are refreshed as held polls are (CheckinService's sweep).
    this.opampTimer = setInterval(() => this.opamp.refreshSessions(), this.config.server.timeouts.checkinTimestampMs);
    this.opampTimer.unref();
  }

  /**
   * Upstream's action GC: actions expired longer ago than cleanup_after_expired_interval are deleted.
   * Where the store has no file lifecycle of its own, abandoned uploads go on the same schedule.
   */
  async collectExpiredActions(): Promise<void> {
    try {
      const n = await this.store.deleteExpiredActions(new Date(this.clock.now() - this.config.server.gc.cleanupAfterExpiredMs));
      if (n > 0) this.log.info({ count: n }, 'deleted expired actions');
      if (!this.store.traits.filesExpire) {
        const u = await this.uploads.collectAbandoned();
        if (u > 0) this.log.info({ count: u }, 'deleted abandoned uploads');
      }
    } catch (err) {
      this.log.warn({ err }, 'expired action and upload clean-up failed; will retry');
    }
  }

  /** Agent mode: what the policy self monitor watches (changes with the hosting agent's id or the unit config). */
  setAgentHealthInput(input: AgentHealthInput): Promise<void> {
    this.agentHealthInput = input;
    return this.healthTimer ? this.checkHealth() : Promise.resolve();
  }

  private checkHealth(): Promise<void> {
    return this.agentHealthInput ? this.checkPolicy(this.agentHealthInput) : this.checkStore();
  }

  /** Upstream's agent-mode self monitor; a failed policy read leaves the reported state as it was (as upstream). */
  private async checkPolicy(input: AgentHealthInput): Promise<void> {
    try {
      const s = await agentHealth(this.store, input);
      if (this.stopping) return;
      this.health.set(s.state, s.message, s.payload);
    } catch {
      // Upstream's monitor fails internally here without changing what it reports.
    }
  }

  /**
   * Upstream's standalone self monitor: the policies readable → HEALTHY "Running"; a failed read keeps
   * a running server DEGRADED (it may still serve from caches) until the store answers again, and one
   * still starting STARTING.
   */
  private async checkStore(): Promise<void> {
    try {
      await this.store.healthCheck();
      if (this.stopping) return;
      this.health.set('HEALTHY', 'Running');
    } catch (err) {
      if (this.stopping) return;
      const state = this.health.current.state;
      const message = `Failed to request policies: ${err instanceof Error ? err.message : String(err)}`;
      // As upstream's self monitor: a server still starting stays STARTING; one that ran is DEGRADED.
      this.health.set(state === 'HEALTHY' || state === 'DEGRADED' ? 'DEGRADED' : state === 'STARTING' ? 'STARTING' : 'FAILED', message);
    }
  }

  /** What stop() is doing, for a drain that overruns its deadline to say where it was. */
  stopPhase: string | undefined;

  /**
   * Server stopping: answers every held check-in, spread over `windowMs` (0: all at once); check-ins that
   * come after are answered at once. The monitors keep running for the requests still in flight.
   */
  async releaseHeld(windowMs = 0): Promise<void> {
    this.stopping = true;
    if (this.healthTimer) clearInterval(this.healthTimer);
    if (this.gcTimer) clearInterval(this.gcTimer);
    if (this.opampTimer) clearInterval(this.opampTimer);
    this.health.set('STOPPING', 'Stopping');
    this.stopPhase = `answering ${this.checkins.heldCount} held check-ins`;
    this.bookkeeper.release();
    await this.checkins.releaseAll(windowMs);
    this.stopPhase = undefined;
  }

  /**
   * Stops the monitors and writes the check-in records still pending: after the requests have drained,
   * so that those answered during the drain are written too (releaseHeld first, if it was not called).
   */
  async stop(releaseWindowMs = 0): Promise<void> {
    if (!this.stopping) await this.releaseHeld(releaseWindowMs);
    this.abort.abort(new Error('fleet server stopping'));
    this.stopPhase = 'stopping the policy and action monitors';
    await Promise.allSettled([this.policies.stopped(), this.dispatcher.stopped()]);
    this.stopPhase = 'writing the last check-in records';
    await this.bookkeeper.stop();
    this.stopPhase = undefined;
    this.health.set('STOPPED', 'Stopped');
  }
}
