// `fleet-server --agent-mode`: Elastic Agent launches this process, writes the connection info on
// stdin, and configures it through two units (the fleet-server input and its Elasticsearch output).
// This reconciles those units into a running server, restarting only what a change needs, and reports
// the server's health on both units with upstream's states and messages.
import type { Logger } from 'pino';
import { buildConfig, type FleetServerConfig } from '../config/config';
import { loadRawConfig, type RawConfig } from '../config/raw';
import { createLogger, normalizeLevel } from '../logging/logger';
import { ServerInstance, type StopTimings } from '../runtime/server-instance';
import { jsonEqual } from '../util/json-equal';
import { handleSignals } from '../runtime/signals';
import type { HealthStatus } from '../fleet/self-monitor';
import { VERSION } from '../version';
import { ControlClient } from './client';
import { diagnosticHooks } from './diagnostics';
import { proto } from './generated/control';
import { startMemoryTrim } from '../runtime/memory-trim';
import { readStartUpInfo } from './startup';
import { configFromUnits, outputFromUnit, unitSource, type OutputChoice } from './unit-config';
import type { Unit, UnitChanges } from './units';

const BOOTSTRAP_RETRY_MS = 60_000;

type Obj = Record<string, unknown>;

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
  readonly client: ControlClient;
  private input: Unit | undefined;
  private output: Unit | undefined;
  private server: ServerInstance | undefined;
  private config: FleetServerConfig | undefined;
  private unsubscribeHealth: (() => void) | undefined;
  private queue: Promise<void> = Promise.resolve();
  private bootstrapTimer: NodeJS.Timeout | undefined;
  private outputProbe: Promise<string> | undefined;
  private useBootstrap = false;
  /** The output (with its bootstrap) last tested, whose result `useBootstrap` holds. */
  private probed: OutputChoice | undefined;
  private shuttingDown = false;

  constructor(private readonly cli: RawConfig, info: proto.StartUpInfo, private readonly log: Logger) {
    this.client = new ControlClient(info, { onChange: (c) => this.onChange(c) }, log);
    for (const hook of diagnosticHooks(() => this.config, () => this.probeCurrentOutput())) this.client.registerDiagnostic(hook);
  }

  start(): void {
    this.client.start();
  }

  /** SIGTERM: report STOPPING, drain, stop the streams; the server's stop timings, if one was running. */
  async shutdown(): Promise<StopTimings | undefined> {
    this.shuttingDown = true;
    if (this.bootstrapTimer) clearTimeout(this.bootstrapTimer);
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
    for (const u of changes.added) this.adopt(u);
    // Upstream re-configures (CONFIGURING "Re-configuring") on any change to an owned unit, even one that
    // changes nothing Fleet Server reads (a new policy revision of the same settings).
    const touched = changes.modified.some((m) => m.unit === this.input || m.unit === this.output);
    for (const m of changes.modified) {
      const s = m.unit.expectedState;
      if (m.state && s !== proto.State.HEALTHY && s !== proto.State.STOPPED) this.client.setState(m.unit, proto.State.FAILED, 'unknown unit state');
      // A unit that failed its type check may be fixed by a new config.
      if (m.config && m.unit !== this.input && m.unit !== this.output) this.adopt(m.unit);
    }
    this.schedule(touched);
  }

  /** Takes a new unit as the input or output; a second valid one of a kind replaces the first. */
  private adopt(u: Unit): void {
    const type = u.config?.type ?? '';
    if (u.type === proto.UnitType.INPUT) {
      if (type !== 'fleet-server') {
        this.client.setState(u, proto.State.FAILED, `${type} is an unsupported input type`);
        return;
      }
      if (this.input && this.input !== u) this.client.setState(this.input, proto.State.STOPPED, 'Stopped');
      this.input = u;
    } else {
      if (type !== 'elasticsearch') {
        this.client.setState(u, proto.State.FAILED, `${type} is an unsupported output type`);
        return;
      }
      if (this.output && this.output !== u) this.client.setState(this.output, proto.State.STOPPED, 'Stopped');
      this.output = u;
    }
  }

  /** Reconciliations run one at a time, in order. */
  private schedule(touched = false): void {
    this.queue = this.queue.then(() => this.reconcile(touched)).catch((err: unknown) => {
      this.log.error({ err }, 'agent mode: reconfiguration failed');
      this.report({ state: 'FAILED', message: `Error - ${(err as Error).message}` });
    });
  }

  private report(s: HealthStatus): void {
    const state = proto.State[s.state as keyof typeof proto.State];
    for (const u of [this.input, this.output]) if (u) this.client.setState(u, state, s.message, s.payload);
  }

  private async reconcile(touched: boolean): Promise<void> {
    if (this.shuttingDown) return;
    const { input, output } = this;
    if (!input || !output) {
      await this.stopServer();
      if (input) this.client.setState(input, proto.State.STARTING, 'waiting for output unit');
      if (output) this.client.setState(output, proto.State.STARTING, 'waiting for input unit');
      return;
    }
    if (input.expectedState === proto.State.STOPPED || output.expectedState === proto.State.STOPPED) {
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
    if (same && this.server && !touched) return;
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
    this.report({ state: 'STARTING', message: 'Starting' });
    const server = await ServerInstance.create(config, this.log);
    server.fleet.setAgentHealthInput({ policyId: config.policyId, agentId: config.agent.id });
    this.unsubscribeHealth = server.fleet.health.onChange((s) => this.report(s));
    this.server = server;
    await server.start({ requireVersion: VERSION });
  }

  /**
   * Upstream tests the output (with bootstrap values filled in) and, when it cannot reach Elasticsearch,
   * runs on the bootstrap object alone, trying the output again every minute. An output already tested
   * is not tested again on every expected message; the minute's retry revisits the decision.
   */
  private async chooseOutput(choice: OutputChoice): Promise<void> {
    if (choice.bootstrap && this.probed && jsonEqual(choice, this.probed)) return;
    this.probed = choice.bootstrap ? choice : undefined;
    if (this.bootstrapTimer) clearTimeout(this.bootstrapTimer);
    this.bootstrapTimer = undefined;
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
      this.retryOutput(choice.merged);
    }
  }

  private retryOutput(merged: Obj): void {
    this.bootstrapTimer = setTimeout(() => {
      this.bootstrapTimer = undefined;
      void this.probe(merged).then(() => {
        this.useBootstrap = false;
        this.schedule();
      }, () => this.retryOutput(merged));
    }, BOOTSTRAP_RETRY_MS);
    this.bootstrapTimer.unref();
  }

  private async probe(output: Obj): Promise<string> {
    const es = buildConfig({ output: { elasticsearch: output } }).elasticsearch!;
    const { probe } = await import('../store/elasticsearch/connection');
    return probe(es);
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
