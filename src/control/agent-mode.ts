// `fleet-server --agent-mode`: Elastic Agent launches this process, writes the connection info on
// stdin, and configures it through two units (the fleet-server input and its Elasticsearch output).
// This reconciles those units into a running server, restarting only what a change needs, and reports
// the server's health on both units with upstream's states and messages.
import type { Logger } from 'pino';
import { buildConfig, type FleetServerConfig } from '../config/config';
import { warnNotApplied } from '../config/not-applied';
import { loadRawConfig, type RawConfig } from '../config/raw';
import { createLogger, normalizeLevel } from '../logging/logger';
import { ServerInstance, type StopTimings } from '../runtime/server-instance';
import { jsonEqual } from '../util/json-equal';
import { handleSignals } from '../runtime/signals';
import type { AgentHealthInput } from '../fleet/agent-health';
import type { HealthStatus, SelfMonitor } from '../fleet/self-monitor';
import { VERSION } from '../version';
import { ControlClient, type ControlHandlers } from './client';
import { diagnosticHooks } from './diagnostics';
import { proto } from './generated/control';
import { startMemoryTrim } from '../runtime/memory-trim';
import { readStartUpInfo } from './startup';
import { realTimers, RetryTimer, type Timers } from './timers';
import { configFromUnits, outputFromUnit, unitSource, type OutputChoice } from './unit-config';
import type { Unit, UnitChanges } from './units';

const BOOTSTRAP_RETRY_MS = 60_000;

type Obj = Record<string, unknown>;

/** What agent mode uses of a server (a ServerInstance). */
export interface RunningServer {
  readonly fleet: {
    readonly health: Pick<SelfMonitor, 'current' | 'onChange'>;
    setAgentHealthInput(input: AgentHealthInput): Promise<void>;
  };
  start(opts: { requireVersion?: string }): Promise<void>;
  stop(opts?: { spread?: boolean }): Promise<StopTimings>;
}

/** What agent mode uses of the control protocol client. */
export type ControlPort = Pick<ControlClient, 'start' | 'stop' | 'setState' | 'registerDiagnostic' | 'agentInfo' | 'component'>;

/** The real ones by default; tests drive AgentMode with fakes and a manual clock. */
export interface AgentModeDeps {
  client?: (handlers: ControlHandlers) => ControlPort;
  createServer?: (config: FleetServerConfig, log: Logger) => Promise<RunningServer>;
  /** Tests an Elasticsearch output (resolves with its version). */
  probe?: (output: Obj) => Promise<string>;
  timers?: Timers;
}

async function probeOutput(output: Obj): Promise<string> {
  const es = buildConfig({ output: { elasticsearch: output } }).elasticsearch!;
  const { probe } = await import('../store/elasticsearch/connection');
  return probe(es);
}

/** Units expected in a state other than these are FAILED "unknown unit state" (upstream) and keep it. */
const knownExpected = (u: Unit): boolean => u.expectedState === proto.State.HEALTHY || u.expectedState === proto.State.STOPPED;

/**
 * What needs a new server when it changes; log level, agent identity and policy id are applied in place.
 * Compared by value: the agent re-sends the input unit on every policy revision with its keys in another
 * order, and that alone must not restart the listeners (answering every held check-in).
 */
function restartParts(c: FleetServerConfig): unknown[] {
  const input = (Array.isArray(c.raw['inputs']) ? c.raw['inputs'][0] : {}) as Obj;
  return [c.raw['output'], input['server'], input['cache'], input['monitor'], c.raw['http'], c.raw['path']];
}

export class AgentMode {
  readonly client: ControlPort;
  private input: Unit | undefined;
  private output: Unit | undefined;
  /** Only a server whose start succeeded: one that failed is stopped and dropped (see startServer). */
  private server: RunningServer | undefined;
  private config: FleetServerConfig | undefined;
  private unsubscribeHealth: (() => void) | undefined;
  private queue: Promise<void> = Promise.resolve();
  private bootstrapTimer: unknown;
  private outputProbe: Promise<string> | undefined;
  private useBootstrap = false;
  /** The output (with its bootstrap) last tested, whose result `useBootstrap` holds. */
  private probed: OutputChoice | undefined;
  /** Counts the outputs chosen: a re-test of an earlier output that ends after a new one came decides nothing. */
  private outputGeneration = 0;
  private shuttingDown = false;
  private readonly createServer: (config: FleetServerConfig, log: Logger) => Promise<RunningServer>;
  private readonly probe: (output: Obj) => Promise<string>;
  private readonly timers: Timers;
  /** The restart of a server that failed to start. */
  private readonly restart: RetryTimer;

  constructor(private readonly cli: RawConfig, info: proto.StartUpInfo, private readonly log: Logger, deps: AgentModeDeps = {}) {
    const handlers: ControlHandlers = { onChange: (c) => this.onChange(c) };
    this.client = deps.client ? deps.client(handlers) : new ControlClient(info, handlers, log);
    this.createServer = deps.createServer ?? ((config, l) => ServerInstance.create(config, l));
    this.probe = deps.probe ?? probeOutput;
    this.timers = deps.timers ?? realTimers;
    this.restart = new RetryTimer(this.timers);
    for (const hook of diagnosticHooks(() => this.config, () => this.probeCurrentOutput())) this.client.registerDiagnostic(hook);
  }

  start(): void {
    this.client.start();
  }

  /** SIGTERM: report STOPPING, drain, stop the streams; the server's stop timings, if one was running. */
  async shutdown(): Promise<StopTimings | undefined> {
    this.shuttingDown = true;
    this.clearBootstrapTimer();
    this.restart.cancel();
    this.report({ state: 'STOPPING', message: 'Stopping' });
    await this.queue.catch(() => undefined);
    const timings = await this.stopServer({ spread: true });
    await this.client.stop();
    return timings;
  }

  private onChange(changes: UnitChanges): void {
    for (const u of changes.removed) {
      if (u === this.input) this.input = undefined;
      if (u === this.output) this.output = undefined;
    }
    // Upstream re-configures (CONFIGURING "Re-configuring") on any change to an owned unit, even one that
    // changes nothing Fleet Server reads (a new policy revision of the same settings). A unit newly taken
    // as the input or output counts too (upstream agent.go `unitAdded` calls `start`, which reconfigures
    // a running server): it still shows the client's STARTING "Starting", and the self-monitor reports
    // only changes, so without this it would never get the server's state.
    let touched = false;
    for (const u of changes.added) touched = this.adopt(u) || touched;
    if (changes.modified.some((m) => m.unit === this.input || m.unit === this.output)) touched = true;
    for (const m of changes.modified) {
      const s = m.unit.expectedState;
      if (m.state && s !== proto.State.HEALTHY && s !== proto.State.STOPPED) this.client.setState(m.unit, proto.State.FAILED, 'unknown unit state');
      // A unit that failed its type check may be fixed by a new config.
      if (m.config && m.unit !== this.input && m.unit !== this.output) touched = this.adopt(m.unit) || touched;
    }
    this.schedule(touched);
  }

  /**
   * Takes a new unit as the input or output; a second valid one of a kind replaces the first.
   * True when the unit is now owned.
   */
  private adopt(u: Unit): boolean {
    const type = u.config?.type ?? '';
    if (u.type === proto.UnitType.INPUT) {
      if (type !== 'fleet-server') {
        this.client.setState(u, proto.State.FAILED, `${type} is an unsupported input type`);
        return false;
      }
      if (this.input && this.input !== u) this.client.setState(this.input, proto.State.STOPPED, 'Stopped');
      this.input = u;
    } else {
      if (type !== 'elasticsearch') {
        this.client.setState(u, proto.State.FAILED, `${type} is an unsupported output type`);
        return false;
      }
      if (this.output && this.output !== u) this.client.setState(this.output, proto.State.STOPPED, 'Stopped');
      this.output = u;
    }
    return true;
  }

  /** Reconciliations run one at a time, in order. */
  private schedule(touched = false): void {
    this.queue = this.queue.then(() => this.reconcile(touched)).catch((err: unknown) => {
      this.log.error({ err }, 'agent mode: reconfiguration failed');
      this.report({ state: 'FAILED', message: `Error - ${(err as Error).message}` });
    });
  }

  /**
   * The server's state, on each owned unit the agent expects HEALTHY or STOPPED: one it expects in another
   * state keeps its FAILED "unknown unit state" until the agent expects something Fleet Server knows.
   */
  private report(s: HealthStatus): void {
    const state = proto.State[s.state as keyof typeof proto.State];
    for (const u of [this.input, this.output]) if (u && knownExpected(u)) this.client.setState(u, state, s.message, s.payload);
  }

  private async reconcile(touched: boolean): Promise<void> {
    if (this.shuttingDown) return;
    const { input, output } = this;
    if (!input || !output) {
      this.restart.reset();
      await this.stopServer();
      if (input) this.client.setState(input, proto.State.STARTING, 'waiting for output unit');
      if (output) this.client.setState(output, proto.State.STARTING, 'waiting for input unit');
      return;
    }
    if (input.expectedState === proto.State.STOPPED || output.expectedState === proto.State.STOPPED) {
      this.restart.reset();
      if (this.server) {
        this.report({ state: 'STOPPING', message: 'Stopping' });
        await this.stopServer();
      }
      this.report({ state: 'STOPPED', message: 'Stopped' });
      return;
    }
    if (input.expectedState !== proto.State.HEALTHY || output.expectedState !== proto.State.HEALTHY) return;

    const choice = outputFromUnit(unitSource(output.config));
    await this.chooseOutput(choice);
    const agentInfo = this.client.agentInfo;
    const raw = configFromUnits(this.cli, {
      input: { config: input.config, logLevel: input.logLevel },
      output: { config: output.config, logLevel: output.logLevel },
      agent: { id: agentInfo?.id ?? '', version: agentInfo?.version ?? '' },
      elasticsearch: this.useBootstrap && choice.bootstrap ? choice.bootstrap : choice.merged,
      apm: this.client.component?.apmConfig?.elastic,
    });
    const config = buildConfig(raw);
    const prev = this.config;
    const same = prev !== undefined && jsonEqual(prev.raw, config.raw);
    // The agent answers every observed message while a unit is not healthy, with the same expected
    // message: that restarts nothing, and a server that failed to start waits for its restart timer
    // (a start per answer would loop as fast as the two processes can talk). Taken here, so that a
    // restart that came due while a change was queued is spent by the change's start, not run twice.
    const due = this.restart.takeDue();
    if (same && !touched && (this.server || (!due && this.restart.pending))) return;
    // A change from the agent starts at once; a new configuration that fails waits the shortest time again.
    if (same) this.restart.cancel();
    else {
      this.restart.reset();
      warnNotApplied(config, this.log);
    }
    this.config = config;
    this.log.level = normalizeLevel(config.logging.level);

    if (this.server && prev && jsonEqual(restartParts(prev), restartParts(config))) {
      // Log level, the agent's id or the policy id: applied in place, held check-ins stay held.
      this.report({ state: 'CONFIGURING', message: 'Re-configuring' });
      await this.server.fleet.setAgentHealthInput({ policyId: config.policyId, agentId: config.agent.id });
      this.report(this.server.fleet.health.current);
      return;
    }
    if (this.server) {
      this.report({ state: 'CONFIGURING', message: 'Re-configuring' });
      await this.stopServer();
    }
    await this.startServer(config);
  }

  /**
   * A server that fails to start (its port taken, a TLS file or the service token file missing, the
   * metrics socket not bindable) is stopped, with whatever it opened (its store; on SQLite a fleet
   * already started, whose health checks would report HEALTHY over the FAILED), and dropped. Upstream's
   * agent-mode `Run` loop re-runs the server 2 s after it fails; this waits 2 s, then longer (timers.ts).
   */
  private async startServer(config: FleetServerConfig): Promise<void> {
    this.report({ state: 'STARTING', message: 'Starting' });
    let server: RunningServer | undefined;
    try {
      server = await this.createServer(config, this.log);
      void server.fleet.setAgentHealthInput({ policyId: config.policyId, agentId: config.agent.id });
      this.unsubscribeHealth = server.fleet.health.onChange((s) => this.report(s));
      await server.start({ requireVersion: VERSION });
    } catch (err) {
      this.unsubscribeHealth?.();
      this.unsubscribeHealth = undefined;
      if (server) await server.stop().catch((e: unknown) => this.log.warn({ err: e }, 'agent mode: stopping the server that failed to start failed'));
      if (this.shuttingDown) return;
      const retryMs = this.restart.arm(() => this.schedule());
      this.log.error({ err, 'retry.in_ms': retryMs }, 'agent mode: the server failed to start; retrying');
      this.report({ state: 'FAILED', message: `Error - ${(err as Error).message}` });
      return;
    }
    this.server = server;
    this.restart.reset();
  }

  /**
   * Upstream tests the output (with bootstrap values filled in) and, when it cannot reach Elasticsearch,
   * runs on the bootstrap object alone, trying the output again every minute. An output already tested
   * is not tested again on every expected message; the minute's retry revisits the decision.
   */
  private async chooseOutput(choice: OutputChoice): Promise<void> {
    if (choice.bootstrap && this.probed && jsonEqual(choice, this.probed)) return;
    const generation = ++this.outputGeneration;
    this.probed = choice.bootstrap ? choice : undefined;
    this.clearBootstrapTimer();
    if (!choice.bootstrap) {
      this.useBootstrap = false;
      return;
    }
    try {
      await this.probe(choice.merged);
      this.useBootstrap = false;
    } catch (err) {
      if (!this.useBootstrap) this.log.warn({ err: (err as Error).message }, 'output unreachable; running on the bootstrap output and retrying every minute');
      this.useBootstrap = true;
      this.retryOutput(choice.merged, generation);
    }
  }

  /**
   * A re-test already under way when a new output comes would otherwise decide for the new output with
   * the old one's result, or (failing) start a second chain of re-tests whose timer no one can clear.
   */
  private retryOutput(merged: Obj, generation: number): void {
    const current = (): boolean => generation === this.outputGeneration && !this.shuttingDown;
    this.bootstrapTimer = this.timers.set(() => {
      this.bootstrapTimer = undefined;
      void this.probe(merged).then(() => {
        if (!current()) return;
        this.useBootstrap = false;
        this.schedule();
      }, () => {
        if (current()) this.retryOutput(merged, generation);
      });
    }, BOOTSTRAP_RETRY_MS);
  }

  private clearBootstrapTimer(): void {
    if (this.bootstrapTimer !== undefined) this.timers.clear(this.bootstrapTimer);
    this.bootstrapTimer = undefined;
  }

  private probeCurrentOutput(): Promise<string> {
    this.outputProbe ??= (async () => {
      try {
        const es = this.config?.elasticsearch;
        if (!es) throw new Error('no Elasticsearch output configured');
        const { probe } = await import('../store/elasticsearch/connection');
        return await probe(es, 30_000);
      } finally {
        this.outputProbe = undefined;
      }
    })();
    return this.outputProbe;
  }

  /** `spread` when leaving for good (see ServerInstance.stop); a reconfiguration restarts at once. */
  private async stopServer(opts: { spread?: boolean } = {}): Promise<StopTimings | undefined> {
    const server = this.server;
    if (!server) return undefined;
    this.server = undefined;
    this.unsubscribeHealth?.();
    this.unsubscribeHealth = undefined;
    return server.stop(opts);
  }
}

/** Entry point: -E settings are the base configuration (`-c` is ignored, as upstream); the rest comes from units. */
export async function runAgentMode(overrides: string[]): Promise<void> {
  const cli = loadRawConfig({ overrides });
  const log = createLogger(buildConfig(cli).logging);
  const info = await readStartUpInfo(process.stdin);
  log.info({ version: VERSION, 'agent.id': info.agentInfo?.id ?? '' }, 'fleet-server starting in agent mode');
  startMemoryTrim(log);
  const agent = new AgentMode(cli, info, log);
  agent.start();
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'fleet-server stopping');
    // The agent kills the process 25 s after SIGTERM; finish well before.
    setTimeout(() => process.exit(0), 20_000).unref();
    let timings: StopTimings | undefined;
    void agent.shutdown().then((t) => (timings = t)).finally(() => {
      log.info({ ...timings }, 'fleet-server stopped');
      log.flush();
      setImmediate(() => process.exit(0));
    });
  };
  handleSignals(log, stop);
}
