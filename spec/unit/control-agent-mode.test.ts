// Agent mode's reconciliation with a fake control client, fake servers and timers moved by hand: a
// server that fails to start is dropped and restarted by a growing timer (not by the agent's repeated
// expected messages), a late re-test of an earlier bootstrap output decides nothing, a unit the
// agent expects in an unknown state keeps its FAILED, and a unit replacing the input gets the server's state.
import pino from 'pino';
import type { FleetServerConfig } from '../../src/config/config';
import { AgentMode, type ControlPort, type RunningServer } from '../../src/control/agent-mode';
import type { ControlHandlers } from '../../src/control/client';
import { proto } from '../../src/control/generated/control';
import { toStruct } from '../../src/control/struct';
import { RetryTimer, type Timers } from '../../src/control/timers';
import { reconcile, type Unit, type UnitKey } from '../../src/control/units';
import { SelfMonitor } from '../../src/fleet/self-monitor';

const S = proto.State;
type Obj = Record<string, unknown>;
// AgentMode sets the level from the units' configuration: the lines go nowhere instead.
const log = pino({}, { write: () => undefined });

/** Every fake resolves within microtasks: a few turns of the event loop let a reconciliation finish. */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
}

class ManualTimers implements Timers {
  private next = 1;
  readonly pending = new Map<number, { fn: () => void; ms: number }>();
  set(fn: () => void, ms: number): unknown {
    const id = this.next++;
    this.pending.set(id, { fn, ms });
    return id;
  }
  clear(handle: unknown): void {
    this.pending.delete(handle as number);
  }
  delays(): number[] {
    return [...this.pending.values()].map((t) => t.ms);
  }
  /** Fires every pending timer of `ms`. */
  fire(ms: number): void {
    const due = [...this.pending].filter(([, t]) => t.ms === ms);
    expect(due.length).toBeGreaterThan(0);
    for (const [id, t] of due) {
      this.pending.delete(id);
      t.fn();
    }
  }
}

class FakeServer implements RunningServer {
  readonly fleet = { health: new SelfMonitor(), setAgentHealthInput: (): Promise<void> => Promise.resolve() };
  stops = 0;
  constructor(readonly config: FleetServerConfig, private readonly startError?: Error) {}
  start(): Promise<void> {
    return this.startError ? Promise.reject(this.startError) : Promise.resolve();
  }
  stop(): Promise<never> {
    this.stops++;
    return Promise.resolve({} as never);
  }
}

class FakeClient implements ControlPort {
  agentInfo: proto.IAgentInfo | undefined = { id: 'agent-1', version: '9.6.0' };
  component: proto.IComponent | undefined;
  /** Every state reported, in order. */
  readonly reports: { unit: string; state: proto.State; message: string }[] = [];
  start(): void {}
  stop(): Promise<void> {
    return Promise.resolve();
  }
  registerDiagnostic(): void {}
  setState(unit: Unit, state: proto.State, message: string, payload?: Record<string, unknown>): void {
    if (unit.observed.state === state && unit.observed.message === message) return;
    unit.observed = payload ? { state, message, payload } : { state, message };
    this.reports.push({ unit: unit.id, state, message });
  }
}

const INPUT = { type: 'fleet-server', policy: { id: 'fs-policy' }, server: { host: '127.0.0.1', port: 8220 } };
const OUTPUT = { type: 'elasticsearch', hosts: ['http://es:9200'], service_token: 'token' };

/** Plays the agent: expected messages, reconciled as the control client does, handed to AgentMode. */
class Harness {
  readonly timers = new ManualTimers();
  readonly client = new FakeClient();
  readonly servers: FakeServer[] = [];
  readonly creates: number[] = [];
  /** What each create does next: a start error, a create error, or (none left) a clean start. */
  outcomes: ({ start: Error } | { create: Error })[] = [];
  readonly probes: { output: Obj; resolve: (v: string) => void; reject: (e: Error) => void }[] = [];
  readonly units = new Map<UnitKey, Unit>();
  readonly agent: AgentMode;
  private handlers!: ControlHandlers;
  input = { idx: 1, state: S.HEALTHY, config: INPUT as Obj };
  output = { idx: 1, state: S.HEALTHY, config: OUTPUT as Obj };
  /** The input unit's id: a Kibana-managed policy's input id is part of it. */
  inputId = 'fs-input';
  /** Input units sent besides the one above (a second valid unit of the same kind). */
  extraInputs: { id: string; idx: number; state: proto.State; config: Obj }[] = [];

  constructor() {
    this.agent = new AgentMode({}, proto.StartUpInfo.create({}), log, {
      client: (h) => {
        this.handlers = h;
        return this.client;
      },
      createServer: (config) => {
        this.creates.push(this.creates.length);
        const o = this.outcomes.shift();
        if (o && 'create' in o) return Promise.reject(o.create);
        const s = new FakeServer(config, o && 'start' in o ? o.start : undefined);
        this.servers.push(s);
        return Promise.resolve(s);
      },
      probe: (output) => new Promise((resolve, reject) => this.probes.push({ output, resolve, reject })),
      timers: this.timers,
    });
  }

  async send(): Promise<void> {
    const unit = (id: string, type: proto.UnitType, u: { idx: number; state: proto.State; config: Obj }): proto.IUnitExpected => ({
      id, type, state: u.state, configStateIdx: u.idx, logLevel: proto.UnitLogLevel.INFO,
      config: { id, type: String(u.config['type']), source: toStruct(u.config) },
    });
    const expected = proto.CheckinExpected.create({
      units: [
        unit(this.inputId, proto.UnitType.INPUT, this.input), unit('fs-output', proto.UnitType.OUTPUT, this.output),
        ...this.extraInputs.map((e) => unit(e.id, proto.UnitType.INPUT, e)),
      ],
    });
    this.handlers.onChange(reconcile(this.units, expected.units), expected);
    await settle();
  }

  observed(): { state: proto.State; message: string }[] {
    return [...this.units.values()].map((u) => ({ state: u.observed.state, message: u.observed.message }));
  }

  last(): FakeServer {
    return this.servers[this.servers.length - 1]!;
  }
}

const both = (state: proto.State, message: string): { state: proto.State; message: string }[] => [{ state, message }, { state, message }];

describe('a server that fails to start', () => {
  const EADDRINUSE = 'listen EADDRINUSE: address already in use 127.0.0.1:8220';

  test('is stopped and dropped, reports FAILED, and a timer restarts it after 2 s, then 4 s', async () => {
    const h = new Harness();
    h.outcomes = [{ start: new Error(EADDRINUSE) }, { start: new Error(EADDRINUSE) }];
    await h.send();
    expect(h.creates).toHaveLength(1);
    // What it opened is closed: its store, and (on SQLite) a fleet whose health checks had started.
    expect(h.servers[0]!.stops).toBe(1);
    expect(h.observed()).toEqual(both(S.FAILED, `Error - ${EADDRINUSE}`));
    expect(h.timers.delays()).toEqual([2000]);

    // The dropped server's health checks report nothing any more.
    h.servers[0]!.fleet.health.set('HEALTHY', 'Running on policy with Fleet Server integration: fs-policy');
    expect(h.observed()).toEqual(both(S.FAILED, `Error - ${EADDRINUSE}`));

    // The agent answers each observed message while a unit is unhealthy, with the same expected message.
    for (let i = 0; i < 3; i++) await h.send();
    expect(h.creates).toHaveLength(1);

    const before = h.client.reports.length;
    h.timers.fire(2000);
    await settle();
    expect(h.creates).toHaveLength(2);
    expect(h.servers[1]!.stops).toBe(1);
    // As upstream's restart: STARTING "Starting" again, then FAILED.
    expect(h.client.reports.slice(before).map((r) => `${S[r.state]} ${r.message}`)).toEqual([
      'STARTING Starting', 'STARTING Starting', `FAILED Error - ${EADDRINUSE}`, `FAILED Error - ${EADDRINUSE}`,
    ]);
    expect(h.timers.delays()).toEqual([4000]);

    h.timers.fire(4000);
    await settle();
    expect(h.creates).toHaveLength(3);
    expect(h.timers.delays()).toEqual([]);
    h.last().fleet.health.set('HEALTHY', 'Running on policy with Fleet Server integration: fs-policy');
    expect(h.observed()).toEqual(both(S.HEALTHY, 'Running on policy with Fleet Server integration: fs-policy'));
    // Running: identical expected messages change nothing.
    await h.send();
    expect(h.creates).toHaveLength(3);
    expect(h.last().stops).toBe(0);
  });

  test('a create that throws (service token file unreadable) does not retry per expected message', async () => {
    const h = new Harness();
    const error = new Error("ENOENT: no such file or directory, open '/etc/fleet/token'");
    h.outcomes = Array.from({ length: 10 }, () => ({ create: error }));
    await h.send();
    for (let i = 0; i < 5; i++) await h.send();
    expect(h.creates).toHaveLength(1);
    expect(h.observed()).toEqual(both(S.FAILED, `Error - ${error.message}`));
    expect(h.timers.delays()).toEqual([2000]);
  });

  test('a new configuration starts at once and cancels the pending restart; a STOPPED unit cancels it too', async () => {
    const h = new Harness();
    h.outcomes = [{ start: new Error(EADDRINUSE) }, { start: new Error(EADDRINUSE) }, { start: new Error(EADDRINUSE) }];
    await h.send();
    h.timers.fire(2000);
    await settle();
    expect(h.timers.delays()).toEqual([4000]);

    h.input = { ...h.input, idx: 2, config: { ...INPUT, server: { host: '127.0.0.1', port: 8230 } } };
    await h.send();
    expect(h.creates).toHaveLength(3);
    expect(h.last().config.server.port).toBe(8230);
    // The new configuration's first failure waits the shortest time again; the old timer is gone.
    expect(h.timers.delays()).toEqual([2000]);

    h.input = { ...h.input, state: S.STOPPED };
    await h.send();
    expect(h.timers.delays()).toEqual([]);
    expect(h.observed()).toEqual(both(S.STOPPED, 'Stopped'));
    expect(h.creates).toHaveLength(3);
  });

  test('shutdown cancels the pending restart', async () => {
    const h = new Harness();
    h.outcomes = [{ start: new Error(EADDRINUSE) }];
    await h.send();
    expect(h.timers.delays()).toEqual([2000]);
    await h.agent.shutdown();
    expect(h.timers.delays()).toEqual([]);
  });
});

describe('the bootstrap output re-test', () => {
  const BOOTSTRAP = { hosts: ['http://localhost:9200'], service_token: 'bootstrap-token' };
  const withBootstrap = (host: string): Obj => ({ type: 'elasticsearch', hosts: [host], bootstrap: BOOTSTRAP });

  /** Output A unreachable (running on the bootstrap), its minute's re-test under way, then output B, unreachable too. */
  async function oldRetestInFlight(): Promise<Harness> {
    const h = new Harness();
    h.output = { ...h.output, config: withBootstrap('http://a:9200') };
    const sent = h.send();
    await settle();
    h.probes[0]!.reject(new Error('connect ECONNREFUSED a:9200'));
    await sent;
    await settle();
    expect(h.last().config.elasticsearch!.hosts).toEqual(['http://localhost:9200']);
    expect(h.timers.delays()).toEqual([60_000]);
    h.timers.fire(60_000);
    expect(h.probes).toHaveLength(2);
    expect(h.probes[1]!.output['hosts']).toEqual(['http://a:9200']);

    h.output = { ...h.output, idx: 2, config: withBootstrap('http://b:9200') };
    const sentB = h.send();
    await settle();
    expect(h.probes[2]!.output['hosts']).toEqual(['http://b:9200']);
    h.probes[2]!.reject(new Error('connect ECONNREFUSED b:9200'));
    await sentB;
    await settle();
    expect(h.timers.delays()).toEqual([60_000]);
    return h;
  }

  test("an earlier output's re-test that succeeds late does not switch the new output off its bootstrap", async () => {
    const h = await oldRetestInFlight();
    const creates = h.creates.length;
    h.probes[1]!.resolve('9.6.0');
    await settle();
    expect(h.creates).toHaveLength(creates);
    expect(h.last().config.elasticsearch!.hosts).toEqual(['http://localhost:9200']);
  });

  test("an earlier output's re-test that fails late starts no second chain of re-tests", async () => {
    const h = await oldRetestInFlight();
    h.probes[1]!.reject(new Error('connect ECONNREFUSED a:9200'));
    await settle();
    expect(h.timers.delays()).toEqual([60_000]);
    // The one left re-tests B, and its success moves the server to B.
    h.timers.fire(60_000);
    expect(h.probes[3]!.output['hosts']).toEqual(['http://b:9200']);
    h.probes[3]!.resolve('9.6.0');
    await settle();
    expect(h.last().config.elasticsearch!.hosts).toEqual(['http://b:9200']);
    expect(h.timers.delays()).toEqual([]);
  });
});

test('a unit expected in an unknown state keeps FAILED "unknown unit state" over the running server\'s reports', async () => {
  const h = new Harness();
  await h.send();
  const RUNNING = 'Running on policy with Fleet Server integration: fs-policy';
  h.last().fleet.health.set('HEALTHY', RUNNING);
  expect(h.observed()).toEqual(both(S.HEALTHY, RUNNING));

  h.input = { ...h.input, state: S.DEGRADED };
  await h.send();
  const input = h.units.get(`${proto.UnitType.INPUT}/fs-input`)!;
  const output = h.units.get(`${proto.UnitType.OUTPUT}/fs-output`)!;
  expect(input.observed).toEqual({ state: S.FAILED, message: 'unknown unit state' });
  h.last().fleet.health.set('DEGRADED', 'Store write failed: ENOSPC');
  h.last().fleet.health.set('HEALTHY', RUNNING);
  expect(input.observed).toEqual({ state: S.FAILED, message: 'unknown unit state' });
  expect(output.observed).toEqual({ state: S.HEALTHY, message: RUNNING });

  // Expected HEALTHY again: the unit reports the server's state once more.
  h.input = { ...h.input, state: S.HEALTHY };
  await h.send();
  expect(input.observed).toEqual({ state: S.HEALTHY, message: RUNNING });
  expect(h.creates).toHaveLength(1);
});

describe('a replacement input unit with the same configuration', () => {
  const RUNNING = 'Running on policy with Fleet Server integration: fs-policy';

  async function healthy(): Promise<Harness> {
    const h = new Harness();
    await h.send();
    h.last().fleet.health.set('HEALTHY', RUNNING);
    expect(h.observed()).toEqual(both(S.HEALTHY, RUNNING));
    return h;
  }

  test('a new input id in place of the old one gets the running server\'s state, without a restart', async () => {
    const h = await healthy();
    h.inputId = 'fs-input-b';
    await h.send();
    const b = h.units.get(`${proto.UnitType.INPUT}/fs-input-b`)!;
    expect(b.observed).toEqual({ state: S.HEALTHY, message: RUNNING });
    expect(h.creates).toHaveLength(1);
    expect(h.last().stops).toBe(0);
  });

  test('a second valid input unit replaces the first, which is STOPPED; the new one reports the server\'s state', async () => {
    const h = await healthy();
    h.extraInputs = [{ id: 'fs-input-b', idx: 1, state: S.HEALTHY, config: INPUT as Obj }];
    await h.send();
    const a = h.units.get(`${proto.UnitType.INPUT}/fs-input`)!;
    const b = h.units.get(`${proto.UnitType.INPUT}/fs-input-b`)!;
    expect(a.observed).toEqual({ state: S.STOPPED, message: 'Stopped' });
    expect(b.observed).toEqual({ state: S.HEALTHY, message: RUNNING });
    expect(h.creates).toHaveLength(1);
  });
});

describe('RetryTimer', () => {
  test('waits 2 s, doubling to 30 s; reset returns to 2 s; one pending at most', () => {
    const timers = new ManualTimers();
    const r = new RetryTimer(timers);
    const waits = Array.from({ length: 6 }, () => r.arm(() => undefined));
    expect(waits).toEqual([2000, 4000, 8000, 16_000, 30_000, 30_000]);
    expect(timers.delays()).toEqual([30_000]);
    r.reset();
    expect(r.pending).toBe(false);
    expect(timers.delays()).toEqual([]);
    expect(r.arm(() => undefined)).toBe(2000);
  });

  test('a retry that fired is due until taken; cancel drops it', () => {
    const timers = new ManualTimers();
    const r = new RetryTimer(timers);
    let fired = 0;
    r.arm(() => fired++);
    expect(r.takeDue()).toBe(false);
    timers.fire(2000);
    expect(fired).toBe(1);
    expect(r.pending).toBe(false);
    expect(r.takeDue()).toBe(true);
    expect(r.takeDue()).toBe(false);
    r.arm(() => fired++);
    timers.fire(4000);
    r.cancel();
    expect(r.takeDue()).toBe(false);
  });
});
