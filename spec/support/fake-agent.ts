// A fake Elastic Agent: the gRPC side of the V2 control protocol with the real agent's rules — mTLS
// with a per-component certificate chosen by SNI, the first message within 5 s, the token on every
// stream, `init` first on Actions, one stream of each kind, expected messages only on the first
// check-in, while unsettled, or when a change is pushed, units in shuffled order, and the check-in
// timeout (30 s ticks, killed after three misses). It spawns the bundled program as the agent does.
import * as grpc from '@grpc/grpc-js';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { proto } from '../../src/control/generated/control';
import { wire } from '../../src/control/client';
import { fromStruct, toStruct } from '../../src/control/struct';
import { Authority } from './certs';
import { EsDouble } from './es-double/server';
import { DIST, removeDir, tempDir } from './fleet-server';
import { NODE_FLAGS } from './node-flags';

export interface FakeUnit {
  id: string;
  type: proto.UnitType;
  state: proto.State;
  configIdx: number;
  config: Record<string, unknown>;
  logLevel: proto.UnitLogLevel;
}

export interface ObservedUnit {
  id: string;
  type: proto.UnitType;
  state: proto.State;
  message: string;
  configIdx: number;
  payload?: Record<string, unknown>;
}

type Observed = { at: number; units: ObservedUnit[]; featuresIdx: number; componentIdx: number; versionInfo?: proto.ICheckinObservedVersionInfo };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class FakeAgent {
  readonly authority = new Authority();
  readonly serverName = randomBytes(16).toString('hex');
  readonly token = randomUUID();
  agentInfo: proto.IAgentInfo = { id: '', version: '9.6.0', snapshot: false, mode: proto.AgentManagedMode.MANAGED };
  units: FakeUnit[] = [];
  readonly observed: Observed[] = [];
  readonly errors: string[] = [];
  child: ChildProcess | undefined;
  stderr = '';
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }> | undefined;
  missed = 0;
  /** Check-in timeout tick (the real agent's is 30 s). */
  tickMs = 30_000;
  private server: grpc.Server | undefined;
  private port = 0;
  private checkin: grpc.ServerDuplexStream<proto.CheckinObserved, proto.ICheckinExpected> | undefined;
  private actions: grpc.ServerDuplexStream<proto.ActionResponse, proto.IActionRequest> | undefined;
  private firstCheckin = true;
  private lastCheckinAt = 0;
  private readonly waiting = new Map<string, (r: proto.ActionResponse) => void>();
  private tick: NodeJS.Timeout | undefined;
  readonly leaf = this.authority.leaf(this.serverName);

  async start(): Promise<void> {
    const server = new grpc.Server();
    server.register('/proto.ElasticAgent/CheckinV2', (call: grpc.ServerDuplexStream<proto.CheckinObserved, proto.ICheckinExpected>) => this.onCheckin(call),
      wire.encodeExpected, wire.decodeObserved, 'bidi');
    server.register('/proto.ElasticAgent/Actions', (call: grpc.ServerDuplexStream<proto.ActionResponse, proto.IActionRequest>) => this.onActions(call),
      wire.encodeRequest, wire.decodeResponse, 'bidi');
    // A default certificate for no name at all; the component's comes by SNI, as the agent selects it.
    const fallback = this.authority.leaf('no-sni.invalid');
    const creds = grpc.ServerCredentials.createSsl(Buffer.from(this.authority.ca.cert), [{ cert_chain: Buffer.from(fallback.cert), private_key: Buffer.from(fallback.key) }], true);
    const ctx = createSecureContext({ cert: this.leaf.cert, key: this.leaf.key, ca: this.authority.ca.cert });
    (creds as unknown as { serverConstructorOptions: Record<string, unknown> }).serverConstructorOptions['SNICallback'] = (name: string, cb: (err: Error | null, ctx?: unknown) => void) => {
      if (name === this.serverName) cb(null, ctx);
      else cb(new Error('no supported TLS certificate'));
    };
    this.port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', creds, (err, port) => (err ? reject(err) : resolve(port))));
    this.server = server;
  }

  /** Spawns the bundled program with the agent's command line and writes StartUpInfo to its stdin. */
  spawn(dataDir: string, extraArgs: string[] = [], opts: { info?: Partial<proto.IStartUpInfo>; command?: string[] } = {}): ChildProcess {
    const args = ['--agent-mode', '-E', 'logging.level=debug', '-E', 'logging.to_stderr=true', ...extraArgs, '-E', `path.data=${dataDir}`];
    const [cmd, ...pre] = opts.command ?? [process.execPath, ...NODE_FLAGS, DIST];
    const child = spawn(cmd!, [...pre, ...args], { cwd: dataDir, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, AGENT_COMPONENT_ID: 'fleet-server-default', AGENT_COMPONENT_TYPE: 'fleet-server' } });
    child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    child.stdout!.resume();
    this.exit = new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
    const info: proto.IStartUpInfo = {
      addr: `localhost:${this.port}`, serverName: this.serverName, token: this.token,
      caCert: Buffer.from(this.authority.ca.cert), peerCert: Buffer.from(this.leaf.cert), peerKey: Buffer.from(this.leaf.key),
      services: [proto.ConnInfoServices.CheckinV2], supports: [proto.ConnectionSupports.CheckinChunking], maxMessageSize: 104857600,
      agentInfo: this.agentInfo, ...opts.info,
    };
    child.stdin!.end(Buffer.from(proto.StartUpInfo.encode(info).finish()));
    this.child = child;
    this.lastCheckinAt = Date.now();
    this.tick = setInterval(() => this.onTick(), this.tickMs);
    return child;
  }

  private onTick(): void {
    if (Date.now() - this.lastCheckinAt < this.tickMs) {
      this.missed = 0;
      return;
    }
    this.missed++;
    if (this.missed >= 3) {
      this.errors.push(`missed ${this.missed} check-ins; killing`);
      this.child?.kill('SIGKILL');
      if (this.tick) clearInterval(this.tick);
    }
  }

  /**
   * The agent's rules for a new stream: one per kind, the first message within 5 s, carrying the
   * component's token; `first` may refuse it (returns false). `kind` names the stream in errors.
   */
  private accept<Req extends { token: string }, Res>(call: grpc.ServerDuplexStream<Req, Res>, kind: 'checkin' | 'actions', current: () => unknown,
    attach: (c: grpc.ServerDuplexStream<Req, Res> | undefined) => void, first: (m: Req) => boolean, each: (m: Req) => void): void {
    if (current()) {
      call.emit('error', { code: grpc.status.ALREADY_EXISTS, details: 'component already connected' });
      return;
    }
    let opened = false;
    const deadline = setTimeout(() => call.emit('error', { code: grpc.status.DEADLINE_EXCEEDED, details: `never sent initial ${kind} message` }), 5000);
    call.on('data', (m: Req) => {
      if (!opened) {
        clearTimeout(deadline);
        opened = true;
        if (m.token !== this.token) {
          this.errors.push(`${kind} with invalid token`);
          call.emit('error', { code: grpc.status.PERMISSION_DENIED, details: 'invalid token' });
          return;
        }
        if (!first(m)) return;
        attach(call);
      }
      each(m);
    });
    const gone = (): void => {
      clearTimeout(deadline);
      if (current() === call) attach(undefined);
    };
    call.on('end', () => {
      gone();
      call.end();
    });
    call.on('error', gone);
    call.on('cancelled', gone);
  }

  // ---- CheckinV2 ----

  private onCheckin(call: grpc.ServerDuplexStream<proto.CheckinObserved, proto.ICheckinExpected>): void {
    this.accept(call, 'checkin', () => this.checkin, (c) => (this.checkin = c), () => true, (m) => {
      this.lastCheckinAt = Date.now();
      const o: Observed = {
        at: Date.now(), featuresIdx: Number(m.featuresIdx), componentIdx: Number(m.componentIdx),
        units: m.units.map((u) => ({ id: u.id ?? '', type: u.type ?? proto.UnitType.INPUT, state: u.state ?? proto.State.STARTING, message: u.message ?? '', configIdx: Number(u.configStateIdx ?? 0), ...(u.payload ? { payload: fromStruct(u.payload) } : {}) })),
        ...(m.versionInfo ? { versionInfo: m.versionInfo } : {}),
      };
      this.observed.push(o);
      // The agent answers the first check-in of a process and any check-in that is not settled.
      if (this.firstCheckin || !this.settled(o)) this.send();
      this.firstCheckin = false;
      // Units the component reports STOPPED while expected STOPPED are removed, as the agent does.
      const done = this.units.filter((u) => u.state === proto.State.STOPPED && o.units.some((x) => x.id === u.id && x.type === u.type && x.state === proto.State.STOPPED));
      if (done.length) {
        this.units = this.units.filter((u) => !done.includes(u));
        this.send();
      }
    });
  }

  private settled(o: Observed): boolean {
    if (o.units.length !== this.units.length || o.featuresIdx !== 2 || o.componentIdx !== 2) return false;
    return this.units.every((u) => o.units.some((x) => x.id === u.id && x.type === u.type && x.configIdx === u.configIdx && x.state === u.state));
  }

  /** The expected message: configs only for units whose observed idx differs; units shuffled. */
  expected(): proto.ICheckinExpected {
    const last = this.observed[this.observed.length - 1];
    const units = this.units.map((u): proto.IUnitExpected => {
      const seen = last?.units.find((x) => x.id === u.id && x.type === u.type);
      return {
        id: u.id, type: u.type, state: u.state, configStateIdx: u.configIdx, logLevel: u.logLevel,
        ...(!seen || seen.configIdx !== u.configIdx ? { config: { source: toStruct(u.config), id: String(u.config['id'] ?? ''), type: String(u.config['type'] ?? '') } } : {}),
      };
    }).sort(() => Math.random() - 0.5);
    return {
      units, featuresIdx: 2, componentIdx: 2,
      features: { source: toStruct({ agent: { features: { fqdn: { enabled: false } } } }), fqdn: { enabled: false } },
      component: { limits: { source: toStruct({ go_max_procs: 0 }), goMaxProcs: 0 } },
      // The real agent sends agent_info only once it has an id.
      ...(this.agentInfo.id ? { agentInfo: this.agentInfo } : {}),
    };
  }

  /** Pushes the current expected state (a policy change, a stop, …). */
  send(): void {
    this.checkin?.write(this.expected());
  }

  /** Pushes the expected state in chunks, as the agent does with large messages: one unit per chunk, then a terminator. */
  sendChunked(): void {
    const whole = this.expected();
    const ts = { seconds: Math.floor(Date.now() / 1000), nanos: (Date.now() % 1000) * 1e6 };
    const [first, ...rest] = whole.units ?? [];
    this.checkin?.write({ ...whole, units: first ? [first] : [], unitsTimestamp: ts });
    for (const u of rest) this.checkin?.write({ units: [u], unitsTimestamp: ts });
    this.checkin?.write({ units: [], unitsTimestamp: ts });
  }

  /** Drops the CheckinV2 stream, as an agent restart of its server side would. */
  dropCheckin(): void {
    this.checkin?.emit('error', { code: grpc.status.UNAVAILABLE, details: 'dropped by the fake agent' });
    this.checkin = undefined;
  }

  lastObserved(): Observed | undefined {
    return this.observed[this.observed.length - 1];
  }

  /** Waits until an observed message satisfies `pred`. */
  async waitObserved(what: string, pred: (o: Observed) => boolean, timeoutMs = 30_000): Promise<Observed> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = [...this.observed].reverse().find((o) => pred(o));
      if (hit && hit === this.lastObserved()) return hit;
      if (Date.now() > deadline) {
        throw new Error(`timed out waiting for ${what}; last observed: ${JSON.stringify(this.lastObserved()?.units)}\n${this.stderr.split('\n').slice(-20).join('\n')}`);
      }
      await sleep(50);
    }
  }

  // ---- Actions ----

  private onActions(call: grpc.ServerDuplexStream<proto.ActionResponse, proto.IActionRequest>): void {
    this.accept(call, 'actions', () => this.actions, (c) => (this.actions = c), (m) => {
      if (m.id === 'init') return true;
      this.errors.push(`first Actions message was ${m.id}, not init`);
      call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details: 'initial response must be an init' });
      return false;
    }, (r) => {
      this.waiting.get(r.id)?.(r);
      this.waiting.delete(r.id);
    });
  }

  async action(req: Omit<proto.IActionRequest, 'id'>, timeoutMs = 20_000): Promise<proto.ActionResponse> {
    for (let i = 0; !this.actions && i < 100; i++) await sleep(50);
    if (!this.actions) throw new Error('no Actions stream');
    const id = randomUUID();
    const answered = new Promise<proto.ActionResponse>((resolve, reject) => {
      this.waiting.set(id, resolve);
      setTimeout(() => reject(new Error(`action ${id} not answered`)), timeoutMs);
    });
    this.actions.write({ ...req, id });
    return answered;
  }

  async stop(): Promise<void> {
    if (this.tick) clearInterval(this.tick);
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGKILL');
      await this.exit;
    }
    await new Promise<void>((r) => this.server ? this.server.tryShutdown(() => r()) : r());
    this.server?.forceShutdown();
  }
}

/** The two units of a Fleet Server component as the agent builds them. */
export function fleetServerUnits(opts: { policyId: string; esHosts: string[]; serviceToken: string; port: number; internalPort: number; bootstrap?: boolean }): FakeUnit[] {
  const input: FakeUnit = {
    id: 'fleet-server-default-fleet-server', type: proto.UnitType.INPUT, state: proto.State.HEALTHY, configIdx: 1, logLevel: proto.UnitLogLevel.INFO,
    config: {
      id: 'fleet-server', type: 'fleet-server', name: 'fleet_server-1', revision: 1,
      policy: { id: opts.policyId },
      server: { host: '127.0.0.1', port: opts.port, internal_port: opts.internalPort },
      'server.timeouts.checkin_jitter': '0s',
    },
  };
  const output: FakeUnit = {
    id: 'fleet-server-default', type: proto.UnitType.OUTPUT, state: proto.State.HEALTHY, configIdx: 1, logLevel: proto.UnitLogLevel.INFO,
    config: opts.bootstrap
      ? { id: 'default', type: 'elasticsearch', hosts: ['localhost:1'], bootstrap: { protocol: 'http', hosts: opts.esHosts, service_token: opts.serviceToken } }
      : { id: 'default', type: 'elasticsearch', hosts: opts.esHosts, service_token: opts.serviceToken },
  };
  return [input, output];
}

export interface AgentEnv {
  dir: string;
  es: EsDouble;
  fake: FakeAgent;
}

/** Runs `fn` with a data directory, an Elasticsearch double and a started fake agent, and cleans up after. */
export async function withAgentEnv(fn: (env: AgentEnv) => Promise<void>): Promise<void> {
  const env: AgentEnv = { dir: tempDir(), es: await new EsDouble().start(), fake: new FakeAgent() };
  try {
    await env.fake.start();
    await fn(env);
  } finally {
    await env.fake.stop();
    await env.es.stop();
    removeDir(env.dir);
  }
}
